"""Exports keep worker ids private by default; credentials never reach the store, files or output."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from mturk_tune.cli import cli
from mturk_tune.exporting import export, pseudonym, worker_salt
from mturk_tune.marketplace import Marketplace
from mturk_tune.marketplace.crowd import SimulatedCrowd, make_crowd
from mturk_tune.marketplace.server import run_in_thread
from mturk_tune.store import Store
from mturk_tune.workspace import init_workspace

KEY = "AKIDEXPORT" + secrets.token_hex(4).upper()
SECRET = "export-test-secret-" + secrets.token_hex(12)


def run(ws: Path, *args: str):
    return CliRunner().invoke(cli, ["-w", str(ws), *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def rated(tmp_path_factory):
    """A workspace that published, collected, reviewed and aggregated over HTTP with real-looking keys."""
    tmp = tmp_path_factory.mktemp("export")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    url, stop = run_in_thread(tmp / "market.db", credentials={KEY: SECRET})
    ws = init_workspace(tmp / "ws", model="m", settings={"publish": {"endpoint": url}})
    ws.store.add_batch("b1", 0, "m", {}, [{"id": f"i{n}", "prompt_id": "p", "prompt": "Say something.",
                                           "text": f"a kind and good text {n}", "model": "m"} for n in range(8)])
    outputs = []
    try:
        outputs.append(run(ws.root, "publish", "--items-per-hit", "2", "--assignments", "3"))
        market = Marketplace(tmp / "market.db")
        SimulatedCrowd(market, make_crowd(5, {"careful": 0.6, "spammer": 0.4}, seed=3), seed=3).work()
        market.close()
        for args in (["collect"], ["review"], ["aggregate", "--method", "mean"],
                     ["export", "ratings", str(tmp / "out" / "ratings.parquet")],
                     ["export", "assignments", str(tmp / "out" / "assignments.jsonl")],
                     ["export", "workers", str(tmp / "out" / "workers.csv")],
                     ["export", "scores", str(tmp / "out" / "scores.csv")],
                     ["export", "ratings", str(tmp / "out" / "ratings-raw.csv"), "--raw-worker-ids"]):
            outputs.append(run(ws.root, *args))
    finally:
        stop()
        monkeypatch.undo()
    for result in outputs:
        assert result.exit_code == 0, result.output
    yield ws, tmp / "out", outputs
    ws.store.close()


def test_exports_replace_worker_ids_with_one_salted_hash(rated):
    ws, out, _ = rated
    raw_ids = set(ws.store.ratings_frame()["worker"])
    assert len(raw_ids) >= 3
    ratings = pd.read_parquet(out / "ratings.parquet")
    assignments = pd.read_json(out / "assignments.jsonl", lines=True)
    workers = pd.read_csv(out / "workers.csv")
    salt = worker_salt(ws.store)
    expected = {pseudonym(w, salt) for w in raw_ids}
    for table in (ratings, assignments, workers):
        assert set(table["worker"]) == expected  # the same pseudonym everywhere: the tables still join
        assert all(w.startswith("W") and len(w) == 17 for w in table["worker"])
    assert len(ratings) == len(ws.store.ratings_frame())
    # Nothing in the files gives a raw id away.
    for name in ("ratings.parquet", "assignments.jsonl", "workers.csv", "scores.csv"):
        data = (out / name).read_bytes()
        assert not [w for w in raw_ids if w.encode() in data], name
    assert set(pd.read_csv(out / "ratings-raw.csv")["worker"]) == raw_ids  # --raw-worker-ids opts out


def test_aggregate_exports_carry_no_worker_ids(rated):
    ws, _, _ = rated
    files = list(ws.exports_dir.glob("scores-*"))
    assert {f.suffix for f in files} == {".parquet", ".jsonl"}
    raw_ids = set(ws.store.ratings_frame()["worker"])
    for path in files:
        assert not [w for w in raw_ids if w.encode() in path.read_bytes()], path.name
    columns = json.loads((ws.exports_dir / "scores-round0-mean.jsonl").read_text().splitlines()[0])
    assert "worker" not in columns and "worker_id" not in columns


def test_credentials_never_reach_the_store_files_or_output(rated):
    ws, out, outputs = rated
    files = [p for p in [*ws.root.rglob("*"), *out.rglob("*")] if p.is_file()]
    assert any(p.name.startswith("state.db") for p in files)
    for path in files:
        data = path.read_bytes()
        assert SECRET.encode() not in data and KEY.encode() not in data, path
    for result in outputs:
        assert SECRET not in result.output and KEY not in result.output


def test_the_salt_is_made_once_per_workspace(tmp_path):
    first = Store.create(tmp_path / "a.db", model="m")
    salt = worker_salt(first)
    assert len(salt) == 32 and worker_salt(Store.open(tmp_path / "a.db")) == salt
    other = worker_salt(Store.create(tmp_path / "b.db", model="m"))
    assert other != salt and pseudonym("A1WORKER", salt) != pseudonym("A1WORKER", other)


def test_an_unknown_format_is_one_line_naming_the_fix(tmp_path):
    ws = init_workspace(tmp_path / "ws", model="m")
    result = CliRunner().invoke(cli, ["-w", str(ws.root), "export", "ratings", str(tmp_path / "r.xlsx")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and ".csv, .jsonl, .parquet" in result.output
    with pytest.raises(Exception, match="end the file name with"):
        export(ws.store, "ratings", tmp_path / "ratings")
    assert not list(tmp_path.glob("*ratings*"))
