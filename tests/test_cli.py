"""The CLI, command by command, as a user runs it (CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mturk_tune.cli import cli

COMMANDS = ["init", "status", "generate", "publish", "collect", "aggregate", "tune", "demo"]


def run(*args: str, workspace: Path | None = None):
    prefix = ["-w", str(workspace)] if workspace else []
    return CliRunner().invoke(cli, [*prefix, *args], catch_exceptions=False)


def test_help_lists_every_command_with_an_example():
    result = run("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output
    for name in cli.commands:
        help_text = run(name, "--help").output
        assert "Example" in help_text, f"'{name} --help' has no example"


def test_init_then_status(tmp_path):
    ws = tmp_path / "ws"
    assert run("init", str(ws), "--model", "builtin:tiny", "--endpoint", "local").exit_code == 0
    assert (ws / "mturk-tune.toml").exists() and (ws / "state.db").exists()
    assert 'name = "builtin:tiny"' in (ws / "mturk-tune.toml").read_text()
    status = json.loads(run("status", "--json", workspace=ws).output)
    assert status["rounds"][0]["round"] == 0 and status["rounds"][0]["items"] == 0


def test_commands_outside_a_workspace_say_how_to_start(tmp_path):
    result = run("status", workspace=tmp_path / "nothing")
    assert result.exit_code == 2
    assert "mturk-tune init" in result.output


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"Write a short review of a {t}."}) + "\n"
                for i, t in enumerate(["hotel", "movie", "park"])),
        encoding="utf-8",
    )
    return path


def test_one_round_through_the_cli(workspace, prompts_file, tmp_path):
    ws = workspace.root
    out = run("generate", str(prompts_file), "-n", "2", "--max-new-tokens", "12", workspace=ws)
    assert out.exit_code == 0, out.output
    assert "6 texts" in out.output

    out = run("publish", "--items-per-hit", "3", "--assignments", "2", workspace=ws)
    assert out.exit_code == 0, out.output
    assert "published 2 HITs" in out.output
    # Publishing again creates nothing: every item already belongs to a HIT.
    assert "nothing to do" in run("publish", workspace=ws).output

    assert run("simulate", "--workers", "3", workspace=ws).exit_code == 0
    first = run("collect", workspace=ws)
    assert first.exit_code == 0, first.output
    assert "4 new assignments, 12 ratings" in first.output
    second = run("collect", workspace=ws)
    assert "0 new assignments, 0 ratings" in second.output

    out = run("aggregate", "--method", "mean", workspace=ws)
    assert out.exit_code == 0, out.output
    assert (ws / "exports" / "scores-round0-mean.parquet").exists()

    out = run("tune", "--epochs", "1", workspace=ws)
    assert out.exit_code == 0, out.output
    status = json.loads(run("status", "--json", workspace=ws).output)["rounds"]
    assert [r["round"] for r in status] == [0, 1]
    assert status[0] | {"model": None} == {
        "round": 0, "model": None, "batches": 1, "items": 6, "hits": 2, "assignments": 4,
        "ratings": 12, "scores": 6, "checkpoints": 1,
    }
    assert Path(status[1]["model"]).is_dir()
    trace = run("status", "--round", "0", workspace=ws)
    assert trace.exit_code == 0, trace.output
    assert "ratings 12" in trace.output and "checkpoint" in trace.output


@pytest.mark.parametrize("endpoint", [
    "production", "https://mturk-requester.us-east-1.amazonaws.com", "HTTPS://MTURK-REQUESTER.us-east-1.amazonaws.com./",
])
def test_production_without_flag_makes_no_call(workspace, prompts_file, monkeypatch, endpoint):
    import mturk_tune.requester as requester

    def no_client(*args, **kwargs):
        raise AssertionError("a client was created")

    monkeypatch.setattr(requester, "make_client", no_client)
    monkeypatch.setattr(requester.boto3, "client", no_client)
    result = run("publish", "--endpoint", endpoint, workspace=workspace.root)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--production" in lines[0]


def test_budget_cap_refuses_before_creating_anything(workspace, prompts_file):
    ws = workspace.root
    run("generate", str(prompts_file), "-n", "2", "--max-new-tokens", "8", workspace=ws)
    result = run("publish", "--reward", "5.00", "--assignments", "3", "--max-cost", "1.00", workspace=ws)
    assert result.exit_code == 2
    assert "over the cap" in result.output
    assert json.loads(run("status", "--json", workspace=ws).output)["rounds"][0]["hits"] == 0


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["generate", "missing.jsonl"], "missing.jsonl: prompts file not found"),
        ("bad.jsonl", ["generate", "{dir}/bad.jsonl"], "bad.jsonl:2: not valid JSON"),
        ("good.jsonl", ["generate", "{dir}/good.jsonl", "--model", "/no/such/model"], "/no/such/model"),
        ("config", ["status"], "[publish] assignments must be an integer"),
    ],
)
def test_bad_input_is_one_line_exit_2(workspace, tmp_path, setup, args, message):
    if setup == "bad.jsonl":
        (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n{"prompt": nope\n')
    if setup == "good.jsonl":
        (tmp_path / "good.jsonl").write_text('{"prompt": "ok"}\n')
    if setup == "config":
        path = workspace.root / "mturk-tune.toml"
        path.write_text(path.read_text().replace("assignments = 3", 'assignments = "three"'))
    result = CliRunner().invoke(cli, ["-w", str(workspace.root), *[a.format(dir=tmp_path) for a in args]])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_aggregate_any_csv_outside_a_workspace(tmp_path):
    answers = tmp_path / "answers.csv"
    answers.write_text("task,worker,label\nt1,w1,5\nt1,w2,4\nt1,w3,5\nt2,w1,1\nt2,w2,2\n")
    out = tmp_path / "scores.csv"
    result = run("aggregate", "--answers", str(answers), "--out", str(out), "--method", "mean")
    assert result.exit_code == 0, result.output
    import pandas as pd

    scores = pd.read_csv(out).set_index("task")
    assert list(scores.columns[:2]) == ["label", "confidence"]
    assert scores.loc["t1", "label"] == pytest.approx(14 / 3)
    assert scores.loc["t2", "n"] == 2


def test_an_unreachable_endpoint_fails_in_seconds(workspace, monkeypatch):
    import time

    workspace.store.add_batch("b", 0, "m", {}, [{"id": "i1", "prompt_id": "p", "prompt": "x", "text": "t", "model": "m"}])
    started = time.monotonic()
    # Port 9 on loopback: nothing listens, so the connection is refused at once.
    result = run("publish", "--endpoint", "http://127.0.0.1:9", workspace=workspace.root)
    assert result.exit_code == 1
    assert "could not reach" in result.output and len(result.output.strip().splitlines()) == 1
    assert time.monotonic() - started < 20
    assert json.loads(run("status", "--json", workspace=workspace.root).output)["rounds"][0]["hits"] == 0


@pytest.mark.parametrize("value", ["production", "https://mturk-requester.us-east-1.amazonaws.com"])
def test_production_from_config_or_env_is_refused_too(workspace, monkeypatch, value):
    monkeypatch.setenv("MTURK_TUNE_PUBLISH_ENDPOINT", value)
    workspace.store.add_batch("b", 0, "m", {}, [{"id": "i1", "prompt_id": "p", "prompt": "x", "text": "t", "model": "m"}])
    for command in (["publish"], ["review"], ["extend", "--threshold", "1"]):
        result = run(*command, workspace=workspace.root)
        assert result.exit_code == 2 and "--production" in result.output, (command, result.output)


def test_checkpoints_are_recorded_as_absolute_paths(tmp_path, monkeypatch):
    from mturk_tune.workspace import init_workspace

    monkeypatch.chdir(tmp_path)
    ws = init_workspace("relative-ws", model="builtin:tiny")
    assert ws.root.is_absolute() and ws.checkpoints_dir.is_absolute()
