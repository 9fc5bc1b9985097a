"""Commands registered on the main `mturk-tune` group (see cli.py); each is a thin layer over the library."""

from __future__ import annotations

from pathlib import Path

import click

EXPORT_CHOICES = ("ratings", "assignments", "scores", "workers")  # exporting.EXPORTS, without importing pandas


@click.command("export")
@click.argument("what", type=click.Choice(EXPORT_CHOICES))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--round", "round_", type=int, help="Only this round (default: all).")
@click.option("--raw-worker-ids", is_flag=True,
              help="Keep MTurk worker ids as they are (personal data) instead of salted hashes.")
@click.pass_context
def export_command(ctx: click.Context, what: str, out: Path, round_: int | None, raw_worker_ids: bool) -> None:
    """Write ratings, assignments, scores or the worker table to .csv, .jsonl or .parquet.

    Worker ids are replaced by a salted hash, the same in every export of this workspace (so the
    tables still join) and different in other workspaces; --raw-worker-ids keeps the real ids.

    \b
    Example:
      mturk-tune export ratings ratings.parquet
      mturk-tune export workers workers.csv --round 0
    """
    from .cli import _workspace
    from .exporting import export

    ws = _workspace(ctx)
    result = export(ws.store, what, out, raw_worker_ids=raw_worker_ids, round_=round_)
    ids = "raw worker ids" if not result.pseudonymised else "worker ids hashed"
    click.echo(f"wrote {result.rows} {what} rows to {result.path} ({ids})")


# Every click command in this list is added to the main group.
COMMANDS: list[click.Command] = [export_command]
