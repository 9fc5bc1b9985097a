"""The HTML report: self-contained (nothing loaded from anywhere), plots present, every text escaped."""

from __future__ import annotations

import html
import json
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pandas as pd
import pytest
from click.testing import CliRunner

from mturk_tune.cli import cli
from mturk_tune.report import nice_ticks, render_report, write_report
from mturk_tune.workspace import init_workspace

HOSTILE = '<script src="https://evil.example/x.js"></script></table><img src=x onerror="alert(1)">'
HOSTILE_WORKER = 'W<b onmouseover="alert(2)">'


@pytest.fixture
def reported(tmp_path):
    """A workspace with one rated, reviewed and tuned round, written by hand through the store."""
    ws = init_workspace(tmp_path / "ws", model="builtin:tiny", settings={"publish": {"endpoint": "local"}})
    store = ws.store
    texts = {"i1": HOSTILE, "i2": "The room was clean and lovely.", "i3": "The bed was dirty.", "i4": "A plain text."}
    items = [{"id": i, "prompt_id": f"p{n}", "prompt": f"Review {HOSTILE}", "text": t, "model": "builtin:tiny"}
             for n, (i, t) in enumerate(texts.items())]
    items.append({"id": "g1", "kind": "gold", "prompt_id": "gold-1", "prompt": "", "text": "Lovely and clean.",
                  "model": "gold", "gold_label": 5.0})
    store.add_batch("r0-batch", 0, "builtin:tiny", {}, items)
    store.record_hit_intent("tok-1", "r0-batch", 0, "local", "HT1", 3, "0.05", [i["id"] for i in items])
    store.mark_hit_created("tok-1", "HIT1")
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    answers = {
        "W1": ({"i1": 2, "i2": 5, "i3": 1, "i4": 3, "g1": 5}, "Approved"),
        "W2": ({"i1": 2, "i2": 4, "i3": 2, "i4": 3, "g1": 5}, "Approved"),
        HOSTILE_WORKER: ({"i1": 5, "i2": 1, "i3": 5, "i4": 1, "g1": 1}, "Rejected"),
    }
    for n, (worker, (ratings, status)) in enumerate(answers.items()):
        assignment = f"A{n}"
        store.save_raw_assignment({"AssignmentId": assignment, "HITId": "HIT1", "WorkerId": worker,
                                   "AssignmentStatus": status, "AcceptTime": start,
                                   "SubmitTime": start + timedelta(seconds=100), "Answer": "<kept/>"})
        store.save_ratings(assignment, worker, ratings)
    kept = store.ratings_frame(round_=0)
    kept = kept[kept["worker"] != HOSTILE_WORKER].groupby("task")["label"].mean()
    store.save_scores(0, "mean", pd.DataFrame({"task": kept.index, "label": kept.values, "confidence": 0.8,
                                               "n": 2, "spread": 0.5}))
    record = {"samples": [{"prompt": HOSTILE, "before": HOSTILE, "after": "<b>after</b>"}], "provenance": {"round": 0}}
    store.add_checkpoint(0, str(ws.checkpoints_dir / "round0"), "builtin:tiny", record)
    store.start_round(str(ws.checkpoints_dir / "round0"))
    store.add_batch("r1-batch", 1, "round0", {}, [{"id": "j1", "prompt_id": "p0", "prompt": "Review", "text": "clean",
                                                  "model": "round0"}])
    for round_, values in {0: {"true_reward": 0.3, "rated_reward": 0.35, "cost": 0.12, "alpha": 0.2},
                           1: {"true_reward": 0.5}}.items():
        for name, value in values.items():
            store.set_metric(round_, name, value)
    store.set_meta_once("loop.preference", "target_words:clean,lovely")
    yield ws
    store.close()


class Tags(HTMLParser):
    """Every real tag and attribute of a page (escaped text is text, not tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data


def test_the_report_loads_nothing_from_anywhere(reported, tmp_path):
    page = write_report(reported, tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    parsed = Tags()
    parsed.feed(page)
    names = {tag for tag, _ in parsed.tags}
    assert not names & {"script", "link", "iframe", "img", "object", "embed", "image", "use", "a", "form", "base"}
    # No attribute that fetches or navigates anywhere, whatever the URL, and no inline handlers.
    attributes = {name for _, attrs in parsed.tags for name in attrs}
    assert not {a for a in attributes if a in ("src", "href", "action", "xlink:href", "srcset") or a.startswith("on")}
    assert "url(" not in parsed.style and "@import" not in parsed.style
    # The only 'https://' left is inside escaped text the hostile sample brought in.
    assert page.count("https://") == page.count(html.escape(HOSTILE))


def test_the_report_draws_the_plots(reported):
    page = render_report(reported)
    for heading in ("Reward per round", "Cost per round", "Agreement per batch", "Worker quality",
                    "Score distributions", "Sample texts", "How to read this report"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count("<svg") == 5
    # The reward plot has one dot per round and series; the worker plot one per worker with agreement.
    assert page.count("true reward: ") == 2


def test_every_text_is_escaped(reported):
    page = render_report(reported)
    assert HOSTILE not in page
    assert html.escape(HOSTILE) in page
    assert HOSTILE_WORKER not in page and html.escape(HOSTILE_WORKER) in page
    assert "<b>after</b>" not in page and "&lt;b&gt;after&lt;/b&gt;" in page
    # The generations table shows the hidden preference of each text.
    assert "The room was clean and lovely." in page


def test_an_empty_workspace_still_gets_a_report(tmp_path):
    ws = init_workspace(tmp_path / "empty", model="builtin:tiny")
    page = render_report(ws)
    assert "No round metrics yet" in page and "<svg" not in page
    ws.store.close()


def test_report_command_writes_the_file(reported, tmp_path):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["-w", str(reported.root), "report", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert out.exists() and f"wrote {out}" in result.output
    default = CliRunner().invoke(cli, ["-w", str(reported.root), "report"], catch_exceptions=False)
    assert default.exit_code == 0 and (reported.root / "report.html").exists()


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (0.12, 0.87), (-0.3, 1.0), (3.0, 3.0), (0.0, 17.28)])
def test_ticks_cover_the_range_with_round_steps(low, high):
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1 and 2 <= len(ticks) <= 8
    assert json.dumps(ticks)  # plain floats
