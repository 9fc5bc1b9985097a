"""Kill `publish`, `collect` and `review` with SIGKILL at 50 random moments, then run them to completion.

The marketplace is served over HTTP from this process; each command is a real
`python -m mturk_tune.cli` subprocess with requester keys in its environment. A kill is armed on
the server: when the k-th API request of that run arrives (k random), SIGKILL follows after a
random 0-15 ms, so the process dies with calls in flight, between a remote change and the store's
record of it, inside store transactions, or while planning. Between kills the simulated crowd
submits answers. Afterwards: every item is in exactly one HIT, no HIT exists twice, every
submitted assignment is stored exactly once, no bonus is paid twice, and the balance moved by
exactly the expected spend.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from mturk_tune.marketplace import Marketplace
from mturk_tune.marketplace.crowd import SimulatedCrowd, default_preference, make_crowd, read_form
from mturk_tune.marketplace.faults import FaultPlan
from mturk_tune.marketplace.server import create_requester_key, run_in_thread
from mturk_tune.money import bonus_cost, hit_cost, parse_dollars
from mturk_tune.store import Store
from mturk_tune.workspace import init_workspace
from support import all_pages

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

N_HITS = 60  # one generated item and one gold item per HIT
ASSIGNMENTS = 2
REWARD, BONUS = "0.05", "0.10"
KILLS = {"publish": 20, "collect": 15, "review": 15}
GOLD_TEXTS = [
    "The room was clean and lovely and the staff was friendly and helpful.",
    "The food was delicious and fresh and the waiter was kind and polite.",
    "The coffee was bitter and stale and the barista was rude.",
    "The train was late and dirty and the seats were cold and noisy.",
    "The park was green and peaceful and beautiful.",
    "The book was boring and slow and dull.",
]


class KillSwitch(FaultPlan):
    """Counts the requester API requests the server receives; kills the armed process at the k-th."""

    def __init__(self, latency_s: float):
        super().__init__(latency_s=latency_s)
        self.lock = threading.Lock()
        self.requests = 0
        self.armed: tuple[int, float, subprocess.Popen] | None = None

    def arm(self, after: int, jitter_s: float, process: subprocess.Popen) -> None:
        with self.lock:
            self.requests = 0
            self.armed = (after, jitter_s, process)

    def disarm(self) -> None:
        with self.lock:
            self.armed = None

    def draw(self) -> str | None:
        with self.lock:
            self.requests += 1
            if self.armed is not None and self.requests >= self.armed[0]:
                _, jitter_s, process = self.armed
                self.armed = None
                threading.Timer(jitter_s, _sigkill, args=(process,)).start()
        return super().draw()


def _sigkill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)


@dataclass
class Harness:
    root: Path
    url: str
    env: dict
    switch: KillSwitch
    market: Marketplace
    crowd: SimulatedCrowd
    rng: random.Random
    kills: Counter = field(default_factory=Counter)
    logs: list[Path] = field(default_factory=list)
    seconds: Counter = field(default_factory=Counter)

    @property
    def ws(self) -> Path:
        return self.root / "ws"

    def start(self, command: str) -> subprocess.Popen:
        log = self.root / "logs" / f"{len(self.logs):03d}-{command}.log"
        log.parent.mkdir(exist_ok=True)
        self.logs.append(log)
        with open(log, "wb") as out:
            return subprocess.Popen([sys.executable, "-m", "mturk_tune.cli", "-w", str(self.ws), command],
                                    stdout=out, stderr=subprocess.STDOUT, env=self.env)

    def complete(self, command: str) -> str:
        begin = time.monotonic()
        process = self.start(command)
        assert process.wait(timeout=120) == 0, self.logs[-1].read_text()
        self.seconds[command] += time.monotonic() - begin
        return self.logs[-1].read_text()

    def kill_during(self, command: str, expected_requests: int) -> bool:
        """Run `command`, SIGKILL it at a random moment of its first `expected_requests` API
        requests; False if it finished first."""
        begin = time.monotonic()
        process = self.start(command)
        after = self.rng.randint(1, max(1, expected_requests))
        self.switch.arm(after, self.rng.uniform(0.0, 0.015), process)
        code = process.wait(timeout=120)
        self.switch.disarm()
        self.seconds[command] += time.monotonic() - begin
        if code == -signal.SIGKILL:
            self.kills[command] += 1
            return True
        assert code == 0, self.logs[-1].read_text()
        return False

    def remote_hits(self) -> list[dict]:
        return all_pages(self.market, "list_hits", "HITs")


@pytest.fixture
def harness(tmp_path):
    market_db = tmp_path / "market.db"
    key, secret = create_requester_key(market_db)
    switch = KillSwitch(latency_s=0.005)
    url, stop = run_in_thread(market_db, faults=switch)
    gold = tmp_path / "ws" / "gold.jsonl"
    ws = init_workspace(tmp_path / "ws", model="m", settings={
        "publish": {"endpoint": url, "items_per_hit": 2, "assignments": ASSIGNMENTS, "reward": REWARD,
                    "concurrency": 4, "gold_file": "gold.jsonl", "gold_rate": 0.5, "max_cost": "100.00"},
        "quality": {"gold_tolerance": 1.0, "min_gold_answers": 3, "min_gold_accuracy": 0.7,
                    "bonus_min_gold_accuracy": 0.9, "bonus_amount": BONUS},
    })
    gold.write_text("".join(json.dumps({"id": f"g{i}", "text": t, "label": round(1 + 4 * default_preference(t))}) + "\n"
                            for i, t in enumerate(GOLD_TEXTS)))
    words = ["kind", "good", "rude", "dull", "lovely", "broken", "calm", "awful"]
    ws.store.add_batch("b1", 0, "m", {}, [
        {"id": f"i{n:03d}", "prompt_id": f"p{n % 7}", "prompt": "Write a short review.",
         "text": f"It was {words[n % 8]} and {words[(n * 3 + 1) % 8]}, item {n}.", "model": "m"}
        for n in range(N_HITS)])
    ws.store.close()
    market = Marketplace(market_db)  # the workers' side of the marketplace, beside the server
    crowd = SimulatedCrowd(market, make_crowd(8, {"careful": 0.75, "spammer": 0.25}, seed=11), seed=11)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "PYTHONUNBUFFERED": "1"}
    h = Harness(tmp_path, url, env, switch, market, crowd, random.Random(20260930))
    h.secret = secret
    yield h
    stop()
    market.close()


def test_killed_fifty_times_nothing_lost_nothing_twice(harness):
    h = harness
    store = Store.open(h.ws / "state.db")
    dangerous_windows = Counter()

    def phase(command: str, kills: int, expected_requests, between=lambda: None) -> int:
        """Kill `command` `kills` times (fewer if it finishes first); returns the kills left over."""
        goal = h.kills[command] + kills
        while h.kills[command] < goal:
            if not h.kill_during(command, expected_requests()):
                break
            between()
        return goal - h.kills[command]

    def after_publish_kill() -> None:
        if len(h.remote_hits()) > len(store.hits()):
            dangerous_windows["publish"] += 1  # HITs exist remotely that the store has not recorded
        h.crowd.work(max_assignments=h.rng.randint(0, 4))

    def open_reviews() -> int:
        frame = store.assignments_frame()
        return int(frame["status"].eq("Submitted").sum())

    # publish, killed 20 times; the crowd answers what is already out between kills
    # (a run makes 2-3 requests before its first CreateHIT, then keeps 4 in flight)
    left = phase("publish", KILLS["publish"], lambda: 5, after_publish_kill)
    h.complete("publish")
    # collect, killed 15 times while answers keep arriving
    left = phase("collect", KILLS["collect"] + left, lambda: N_HITS,
                 lambda: h.crowd.work(max_assignments=h.rng.randint(0, 12)))
    h.crowd.work(max_assignments=N_HITS * ASSIGNMENTS - 20 - len(store.assignments_frame()))
    h.complete("collect")  # some slots stay open until the middle of the review phase
    # review, killed 15 times; halfway, the last answers arrive and are collected
    left = phase("review", KILLS["review"] // 2 + left, lambda: min(2 * open_reviews() + 2, 8))
    h.crowd.work()
    h.complete("collect")
    left = phase("review", KILLS["review"] - KILLS["review"] // 2 + left, lambda: min(2 * open_reviews() + 2, 8))
    print(f"\nkills {dict(h.kills)}; seconds {dict((k, round(v, 1)) for k, v in h.seconds.items())}; "
          f"runs {len(h.logs)}; kills between a remote create and its record: {dangerous_windows['publish']}")
    assert left == 0 and sum(h.kills.values()) == sum(KILLS.values()), h.kills
    h.complete("review")

    # -- every command again: nothing left to do
    assert "nothing to do" in h.complete("publish")
    assert "0 new assignments, 0 ratings" in h.complete("collect")
    assert "no submitted assignments waiting for review" in h.complete("review")

    # Every item in exactly one HIT; no HIT twice; the pages hold what the store says.
    hits = h.remote_hits()
    assert len(hits) == N_HITS and len({hit["RequesterAnnotation"] for hit in hits}) == N_HITS
    created = {row["hit_id"]: row for row in store.hits()}
    assert set(created) == {hit["HITId"] for hit in hits} and store.pending_hit_intents() == []
    on_pages = Counter()
    for hit in hits:
        items = [item.item_id for item in read_form(h.market.get_question_html(hit["HITId"])).items]
        assert items == store.items_of_hit(hit["HITId"])
        on_pages.update(items)
    generated = store.items_frame().query("kind == 'generated'")["id"]
    assert all(on_pages[i] == 1 for i in generated) and max(on_pages.values()) == 1

    # Every submitted assignment stored exactly once, with one rating per item.
    remote = {a["AssignmentId"]: a for hit in hits
              for a in all_pages(h.market, "list_assignments_for_hit", "Assignments", HITId=hit["HITId"])}
    assert len(remote) == N_HITS * ASSIGNMENTS
    stored = store.assignments_frame()
    assert sorted(stored["assignment_id"]) == sorted(remote)
    ratings = store.ratings_frame()
    assert len(ratings) == 2 * len(remote) and not ratings.duplicated(["assignment_id", "task"]).any()
    assert stored["parse_error"].isna().all()

    # Every decision applied once: the store and the marketplace agree on each assignment.
    assert stored.set_index("assignment_id")["status"].to_dict() == {a: r["AssignmentStatus"] for a, r in remote.items()}
    actions = store.actions_frame()
    assert (actions["state"] == "done").all() and actions["request_token"].is_unique
    decided = actions[actions["kind"] == "review"]
    assert len(decided) == len(remote)

    # No bonus paid twice, and exactly the bonuses decided.
    bonuses = [b for hit in hits for b in all_pages(h.market, "list_bonus_payments", "BonusPayments", HITId=hit["HITId"])]
    paid = Counter(b["AssignmentId"] for b in bonuses)
    assert paid and max(paid.values()) == 1
    decided_bonus = {json.loads(p)["assignment_id"] for p in decided["params"] if json.loads(p)["bonus"]}
    assert set(paid) == decided_bonus

    # The balance moved by exactly the rewards and fees of the slots not rejected, plus bonuses.
    rejected = Counter(r["HITId"] for r in remote.values() if r["AssignmentStatus"] == "Rejected")
    per_slot = hit_cost(parse_dollars(REWARD), ASSIGNMENTS) / ASSIGNMENTS
    spent = sum((per_slot * (ASSIGNMENTS - rejected[hit["HITId"]]) for hit in hits), Decimal("0"))
    spent += len(paid) * bonus_cost(Decimal(BONUS))
    assert Decimal(h.market.get_account_balance()["AvailableBalance"]) == Decimal("10000.00") - spent

    # No credential in the workspace's files or in anything the commands printed.
    for path in [*h.ws.rglob("*"), *h.logs]:
        if path.is_file():
            assert h.secret.encode() not in path.read_bytes(), path
    assert dangerous_windows["publish"] >= 1, "no kill landed between a remote create and the store's record"


# ------------------------------------------------------------------ in-process crashes past MTurk's 24 hours


class Crash(BaseException):
    """The process dying right after a remote call went through, before the store heard of it."""


@pytest.fixture
def reviewed_market(tmp_path):
    """Two HITs answered and collected on a local marketplace whose clock the test moves."""
    from datetime import datetime, timedelta, timezone

    from mturk_tune.collecting import collect
    from mturk_tune.config import PublishSection
    from mturk_tune.marketplace import local_client
    from mturk_tune.publishing import plan_publish, publish
    from mturk_tune.requester import resolve_endpoint

    now = {"t": datetime.now(timezone.utc)}
    market = Marketplace(tmp_path / "market.db", clock=lambda: now["t"])
    client = local_client(market.db_path, marketplace=market)
    store = Store.create(tmp_path / "state.db", model="m")
    store.add_batch("b1", 0, "m", {}, [{"id": f"i{n}", "prompt_id": "p", "prompt": "", "text": f"a kind text {n}",
                                        "model": "m"} for n in range(2)])
    local, settings = resolve_endpoint("local"), PublishSection(endpoint="local", items_per_hit=1, assignments=2)
    publish(store, client, local, settings, plan_publish(store, local, settings, "b1"))
    SimulatedCrowd(market, make_crowd(2, {"careful": 1.0}, seed=1), seed=1).work()
    collect(store, client, local)

    def a_day_later() -> None:
        now["t"] += timedelta(hours=25)

    yield store, market, client, a_day_later
    market.close()


def test_a_bonus_paid_before_a_crash_is_not_paid_again_a_day_later(reviewed_market, monkeypatch):
    from mturk_tune.quality import QualityPolicy
    from mturk_tune.reviewing import _Reviewer, apply_review, plan_review

    store, market, client, a_day_later = reviewed_market
    assignments = store.assignments_frame()
    first = assignments.iloc[0]
    decision = {"assignment_id": first["assignment_id"], "hit_id": first["hit_id"], "worker": first["worker"],
                "action": "approve", "reason": "gold accuracy 1.00", "feedback": "", "bonus": "0.50", "block": ""}
    real_finish = _Reviewer._finish

    def dies_after_the_bonus(self, step, *args):
        if step.kind == "bonus":
            raise Crash()
        return real_finish(self, step, *args)

    monkeypatch.setattr(_Reviewer, "_finish", dies_after_the_bonus)
    import pandas as pd

    with pytest.raises(Crash):
        apply_review(store, client, pd.DataFrame([decision]), concurrency=1)
    monkeypatch.undo()
    a_day_later()  # MTurk has forgotten the bonus's UniqueRequestToken by now

    # The next run finishes the recorded decision as recorded, whatever the policy says now.
    plan = plan_review(store, QualityPolicy(bonus_amount="0.00"), round_=None)
    assert plan.set_index("assignment_id").loc[first["assignment_id"], "bonus"] == "0.50"
    result = apply_review(store, client, plan)
    assert result.failed == 0
    paid = market.list_bonus_payments(AssignmentId=first["assignment_id"])["BonusPayments"]
    assert [p["BonusAmount"] for p in paid] == ["0.50"]
    assert plan_review(store, QualityPolicy(), round_=None).empty


def test_an_extension_bought_before_a_crash_is_not_bought_again_a_day_later(reviewed_market, monkeypatch):
    from mturk_tune.reviewing import ExtensionPlan, apply_extension, plan_extension

    store, market, client, a_day_later = reviewed_market
    hit_id = store.hits()[0]["hit_id"]

    def dies(*args):
        raise Crash()

    monkeypatch.setattr(store, "set_hit_max_assignments", dies)
    with pytest.raises(Crash):
        apply_extension(store, client, ExtensionPlan(hits={hit_id: 2}, items=[], extra_per_hit=1, cost=Decimal("0")))
    monkeypatch.undo()
    a_day_later()
    plan = plan_extension(store, "mean", threshold=0.0, max_extra_assignments=0)
    assert plan.hits == {hit_id: 2}  # the unfinished extension comes back whatever the scores say
    assert apply_extension(store, client, plan) == 1
    assert market.get_hit(HITId=hit_id)["HIT"]["MaxAssignments"] == 3
    assert store.hits()[0]["max_assignments"] == 3
    assert plan_extension(store, "mean", threshold=0.0, max_extra_assignments=0).hits == {}
