"""Publishing speed: a plain sequential loop against `mturk-tune publish --concurrency 16`, same run.

The marketplace is served over HTTP by a separate process (``mturk_tune.marketplace.server``,
SigV4-checked like MTurk) with 50 ms of injected latency per requester call, roughly a
cross-continent round trip. Both contestants create ``--hits`` HITs (default 1,000) with one
rendered item page each:

1. sequential: a plain boto3 loop, one ``CreateHITWithHITType`` after another (the way MTurk's
   example code publishes), nothing recorded anywhere;
2. concurrent: the real command, ``python -m mturk_tune.cli -w WS publish --concurrency 16`` as a
   subprocess, timed from launch to exit (so its ~1 s of start-up counts against it), claiming
   every HIT in the state store before creating it and recording each result durably.

Duplicates are counted on the marketplace afterwards: HITs whose RequesterAnnotation (the
request token) appears more than once. Items are inserted straight into the store (no model).

    python benchmarks/publish.py              # 1,000 HITs (about 70 s: the sequential loop is ~55 s)
    python benchmarks/publish.py --hits 200   # quicker

The last line printed is one JSON object: {"sequential_s", "concurrent_s", "ratio", "duplicates"},
ratio = concurrent over sequential (target: at most 0.15), duplicates (target: 0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402

from mturk_tune.hits import HitItem, html_question, render_hit_page  # noqa: E402
from mturk_tune.marketplace.server import create_requester_key  # noqa: E402
from mturk_tune.workspace import init_workspace  # noqa: E402

SERVER = """
import sys
from mturk_tune.marketplace.faults import FaultPlan
from mturk_tune.marketplace.server import serve
serve(sys.argv[1], faults=FaultPlan(latency_s=float(sys.argv[2])), announce=lambda line: print(line, flush=True))
"""


def start_server(db: Path, latency_s: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(db), str(latency_s)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("serving the marketplace on "):
            return process, line.split(" on ", 1)[1].strip()
    raise SystemExit("the marketplace server did not start")


def sequential(url: str, key: str, secret: str, texts: list[str]) -> float:
    client = boto3.client("mturk", region_name="us-east-1", endpoint_url=url,
                          aws_access_key_id=key, aws_secret_access_key=secret)
    begin = time.perf_counter()
    hit_type = client.create_hit_type(Title="Rate short texts", Description="Rate each text from 1 to 5",
                                      Reward="0.05", AssignmentDurationInSeconds=1800,
                                      AutoApprovalDelayInSeconds=259200)["HITTypeId"]
    for n, text in enumerate(texts):
        page = render_hit_page([HitItem(id=f"s{n}", text=text, prompt="Write a line.")])
        client.create_hit_with_hit_type(HITTypeId=hit_type, MaxAssignments=3, LifetimeInSeconds=86400,
                                        Question=html_question(page))
    return time.perf_counter() - begin


def concurrent(url: str, key: str, secret: str, texts: list[str], work: Path, concurrency: int) -> tuple[float, str]:
    ws = init_workspace(work / "ws", model="builtin:tiny", settings={"publish": {
        "endpoint": url, "items_per_hit": 1, "assignments": 3, "reward": "0.05", "max_cost": "100000.00"}})
    ws.store.add_batch("bench", 0, "builtin:tiny", {}, [
        {"id": f"c{n}", "prompt_id": "p", "prompt": "Write a line.", "text": text, "model": "builtin:tiny"}
        for n, text in enumerate(texts)])
    ws.store.close()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    begin = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mturk_tune.cli", "-w", str(ws.root), "publish",
                           "--concurrency", str(concurrency)], cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - begin
    if done.returncode != 0:
        raise SystemExit(f"publish failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout.strip().splitlines()[-1]


def count_duplicates(url: str, key: str, secret: str) -> tuple[int, int]:
    """(HITs carrying a request token, how many of them repeat an earlier token)."""
    client = boto3.client("mturk", region_name="us-east-1", endpoint_url=url,
                          aws_access_key_id=key, aws_secret_access_key=secret)
    tokens = Counter()
    for page in client.get_paginator("list_hits").paginate(PaginationConfig={"PageSize": 100}):
        tokens.update(h["RequesterAnnotation"] for h in page["HITs"] if h.get("RequesterAnnotation"))
    return sum(tokens.values()), sum(n - 1 for n in tokens.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hits", type=int, default=1000, help="HITs each contestant creates (default 1000).")
    parser.add_argument("--latency", type=float, default=0.05, help="Injected seconds per API call (default 0.05).")
    parser.add_argument("--concurrency", type=int, default=16, help="publish --concurrency (default 16).")
    args = parser.parse_args()
    texts = [f"Generated text number {n}: the weather was <b>fine</b> & the tea was warm." for n in range(args.hits)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key, secret = create_requester_key(work / "market.db")
        server, url = start_server(work / "market.db", args.latency)
        try:
            sequential_s = sequential(url, key, secret, texts)
            concurrent_s, summary = concurrent(url, key, secret, texts, work, args.concurrency)
            tokened, duplicates = count_duplicates(url, key, secret)
        finally:
            server.terminate()
            server.wait(timeout=10)
    if tokened != args.hits:
        raise SystemExit(f"publish created {tokened} HITs, expected {args.hits}")
    ratio = concurrent_s / sequential_s
    print(f"{args.hits} HITs over HTTP, {args.latency * 1000:.0f} ms injected latency per call")
    print(f"{'contestant':<44}{'wall s':>8}{'HITs/s':>9}")
    print(f"{'sequential boto3 loop':<44}{sequential_s:>8.1f}{args.hits / sequential_s:>9.1f}")
    label = f"mturk-tune publish --concurrency {args.concurrency}"
    print(f"{label:<44}{concurrent_s:>8.1f}{args.hits / concurrent_s:>9.1f}")
    print(f"publish said: {summary}")
    print(f"ratio {ratio:.3f} (target <= 0.15), duplicate HITs {duplicates}")
    print(json.dumps({"sequential_s": round(sequential_s, 2), "concurrent_s": round(concurrent_s, 2),
                      "ratio": round(ratio, 3), "duplicates": duplicates}))


if __name__ == "__main__":
    main()
