"""Commands registered on the main `mturk-tune` group (see cli.py); each is a thin layer over the library."""

from __future__ import annotations

import click

# Every click command in this list is added to the main group.
COMMANDS: list[click.Command] = []
