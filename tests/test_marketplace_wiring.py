"""The CLI's notification path and the demo rated by a person, end to end."""

from __future__ import annotations

import random
import re
import threading

import boto3
from click.testing import CliRunner

from mturk_tune.cli import cli
from mturk_tune.workspace import init_workspace


def answer_every_hit(market, worker: str, rating=lambda: "4") -> int:
    """Accept and submit every open HIT the way a worker's form would."""
    submitted = 0
    for hit in market.list_available_hits(worker):
        item_ids = re.findall(r'name="rating__([^"]+)" value="1"', market.get_question_html(hit["HITId"]))
        assignment = market.accept_hit(hit["HITId"], worker)
        market.submit_assignment(assignment, worker, {f"rating__{i}": rating() for i in item_ids})
        submitted += 1
    return submitted


def test_publish_notify_then_collect_from_queue(tmp_path, mock_mturk):
    from mturk_tune.marketplace.moto_backend import backend_marketplace

    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="events")["QueueUrl"]
    ws = init_workspace(tmp_path / "ws", model="builtin:tiny")
    ws.store.add_batch("b", 0, "m", {}, [
        {"id": f"i{k}", "prompt_id": "p", "prompt": "x", "text": f"t{k}", "model": "m"} for k in range(4)])
    runner = CliRunner()
    published = runner.invoke(cli, ["-w", str(ws.root), "publish", "--endpoint", "sandbox", "--items-per-hit", "2",
                                    "--assignments", "1", "--notify", queue])
    assert published.exit_code == 0, published.output

    assert answer_every_hit(backend_marketplace(), "AWORKER") == 2
    collected = runner.invoke(cli, ["-w", str(ws.root), "collect", "--endpoint", "sandbox", "--from-queue", queue,
                                    "--wait", "0"])
    assert collected.exit_code == 0, collected.output
    assert "2 new assignments, 4 ratings" in collected.output

    refused = runner.invoke(cli, ["-w", str(ws.root), "collect", "--endpoint", "sandbox", "--from-queue", queue,
                                  "--round", "0"])
    assert refused.exit_code == 2


def test_demo_served_to_a_person(tmp_path, tiny_model_dir):
    from mturk_tune.demo import run_demo
    from mturk_tune.marketplace.service import Marketplace

    lines: list[str] = []
    link_shown = threading.Event()

    def echo(line: str) -> None:
        lines.append(line)
        if "rate in your browser" in line:
            link_shown.set()

    def person() -> None:
        link_shown.wait(timeout=120)
        answer_every_hit(Marketplace(tmp_path / "demo" / "marketplace.db"), "ARATER",
                         rating=lambda: str(random.randint(1, 5)))

    threading.Thread(target=person, daemon=True).start()
    summary = run_demo(tmp_path / "demo", n_prompts=3, echo=echo, serve=True, port=0)
    assert summary["assignments"] >= 1
    assert summary["ratings"] == summary["items"]
