"""Bad input anywhere in the CLI: one line naming the problem, exit code 2, nothing claimed or spent."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mturk_tune.cli import cli


def run(ws, *args):
    return CliRunner().invoke(cli, ["-w", str(ws), *args])


@pytest.fixture
def ws_with_items(workspace):
    workspace.store.add_batch("b", 0, "m", {}, [
        {"id": f"i{k}", "prompt_id": "p", "prompt": "x", "text": f"t{k}", "model": "m"} for k in range(4)])
    return workspace


def gold_file(tmp_path, label) -> str:
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps({"id": "g1", "text": "fine", "label": label}) + "\n")
    return str(path)


@pytest.mark.parametrize(
    "args, message",
    [
        (lambda tmp: ["publish", "--gold", gold_file(tmp, 0.9), "--gold-rate", "0.5"], "not on the rating scale"),
        (lambda tmp: ["publish", "--gold", gold_file(tmp, "NaN"), "--gold-rate", "0.5"], "not on the rating scale"),
        (lambda tmp: ["publish", "--gold", gold_file(tmp, 5), "--gold-rate", "0.5", "--items-per-hit", "1"],
         "at least 2 items per HIT"),
        (lambda tmp: ["publish", "--gold", str(tmp), "--gold-rate", "0.5"], "gold file not found"),
        (lambda tmp: ["publish", "--endpoint", "http://"], "no valid host"),
        (lambda tmp: ["publish", "--endpoint", "https://x y"], "no valid host"),
        (lambda tmp: ["aggregate", "--answers", str(tmp / "a.csv"), "--out", str(tmp / "o.txt")], "a.csv"),
    ],
)
def test_one_line_and_nothing_claimed(ws_with_items, tmp_path, args, message):
    result = run(ws_with_items.root, *args(tmp_path))
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and message in lines[0], result.output
    assert ws_with_items.store.hits(created_only=False) == []


def test_unknown_template_stops_before_any_claim(ws_with_items):
    config = ws_with_items.root / "mturk-tune.toml"
    config.write_text(config.read_text().replace('template = "likert.html"', 'template = "nope.html"'))
    result = run(ws_with_items.root, "publish")
    assert result.exit_code == 2 and "nope.html" in result.output
    assert ws_with_items.store.hits(created_only=False) == []


def test_a_launch_command_with_unbalanced_quotes(ws_with_items):
    import pandas as pd

    ws_with_items.store.save_scores(0, "mean", pd.DataFrame({
        "task": ["i0", "i1"], "label": [5.0, 1.0], "confidence": [1.0, 1.0], "n": [3, 3], "spread": [0.0, 0.0]}))
    result = run(ws_with_items.root, "tune", "--launch", '"unbalanced')
    assert result.exit_code == 2 and "quotes" in result.output


def test_a_bad_init_can_be_fixed_by_running_init_again(tmp_path):
    target = tmp_path / "fresh"
    assert CliRunner().invoke(cli, ["init", str(target), "--endpoint", "bogus"]).exit_code == 2
    fixed = CliRunner().invoke(cli, ["init", str(target), "--endpoint", "local"])
    assert fixed.exit_code == 0, fixed.output
    assert 'endpoint = "local"' in (target / "mturk-tune.toml").read_text()


def test_aggregate_writes_the_format_its_suffix_names(tmp_path):
    import pandas as pd

    answers = tmp_path / "a.csv"
    answers.write_text("task,worker,label\nt1,w1,5\nt1,w2,4\n")
    out = tmp_path / "o.parquet"
    assert CliRunner().invoke(cli, ["aggregate", "--answers", str(answers), "--out", str(out)]).exit_code == 0
    assert pd.read_parquet(out)["label"].tolist() == [4.5]
