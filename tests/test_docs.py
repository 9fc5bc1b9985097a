"""The README documents every command, and every command's help has an example."""

from pathlib import Path

from mturk_tune.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_command_is_in_the_readme():
    missing = [name for name in cli.commands if f"mturk-tune {name}" not in README and f"### {name}" not in README]
    assert not missing, f"commands not described in README.md: {missing}"


def test_quick_start_commands_are_the_ones_ci_runs():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    test_command = "pip install torch==2.13.0 && pip install -e '.[test]' && python -m pytest -q"
    assert test_command in README and test_command in ci
    assert "pip install torch==2.13.0 && pip install . && mturk-tune demo" in README
