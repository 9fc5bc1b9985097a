"""Closing a round: tune from the round's scores, in-process or under a launcher; bad input is one line."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from mturk_tune.cli import cli
from mturk_tune.rounds import tune_round

TEXTS = ["The room was clean and the staff was kind.", "The food was cold.", "The park was green and quiet.",
         "The train was late and dirty.", "The book was gripping.", "The phone was slow."]


def scored_workspace(workspace, scores=(5, 1, 4, 2, 5, 1)):
    store = workspace.store
    store.add_batch("b1", 0, "builtin:tiny", {}, [
        {"id": f"i{k}", "prompt_id": f"p{k}", "prompt": "Write a short review.", "text": t, "model": "builtin:tiny"}
        for k, t in enumerate(TEXTS)])
    store.save_scores(0, "mean", pd.DataFrame({
        "task": [f"i{k}" for k in range(len(TEXTS))], "label": list(scores), "confidence": [0.9] * len(TEXTS),
        "n": [3] * len(TEXTS), "spread": [0.5] * len(TEXTS)}))
    return workspace


def test_tune_under_a_launcher_opens_the_next_round(workspace):
    ws = scored_workspace(workspace)
    result = tune_round(ws, {"epochs": 1, "eval_prompts": 1}, launcher=sys.executable)
    assert ws.store.current_round() == 1
    assert ws.store.round_model() == str(result.checkpoint)
    record = json.loads((result.checkpoint / "run_record.json").read_text())
    assert record["provenance"]["round"] == 0 and record["data"]["rated_items"] == len(TEXTS)


@pytest.mark.parametrize(
    "case, args, message",
    [
        ("no scores", ["tune"], "no 'mean' scores to tune on"),
        ("all zero", ["tune", "--scheme", "normalized"], "weight"),
        ("reference", ["tune", "--reference", "missing.jsonl"], "missing.jsonl"),
        ("model", ["tune"], "/no/such/model"),
    ],
)
def test_bad_tune_input_is_one_line_exit_2(workspace, case, args, message):
    if case != "no scores":
        scored_workspace(workspace, scores=(1, 1, 1, 1, 1, 1) if case == "all zero" else (5, 1, 4, 2, 5, 1))
    if case == "all zero":  # every item at the bottom of a 1-5 scale: nothing to learn from
        config = workspace.root / "mturk-tune.toml"
        config.write_text(config.read_text().replace("# score_range = (unset)", "score_range = [1, 5]"))
    if case == "model":
        workspace.store.set_round_model(0, "/no/such/model")
    result = CliRunner().invoke(cli, ["-w", str(workspace.root), *args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and message in lines[0], result.output
