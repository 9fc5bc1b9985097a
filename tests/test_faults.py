"""A failing marketplace: 30% of calls throttled, failed or applied-but-unanswered. Every operation
still completes, nothing is done twice, and the balance moves by exactly the expected spend."""

from __future__ import annotations

import random
import time
import types
from decimal import Decimal

import pandas as pd
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError
from click.testing import CliRunner

from mturk_tune.collecting import collect
from mturk_tune.config import PublishSection
from mturk_tune.marketplace import Marketplace
from mturk_tune.marketplace.crowd import SimulatedCrowd, make_crowd
from mturk_tune.marketplace.faults import FaultPlan
from mturk_tune.marketplace.server import run_in_thread
from mturk_tune.money import bonus_cost, hit_cost, parse_dollars
from mturk_tune.publishing import plan_publish, publish
from mturk_tune.requester import DEFAULT_MAX_ATTEMPTS, describe_remote_error, make_client, resolve_endpoint
from mturk_tune.reviewing import ExtensionPlan, apply_extension, apply_review
from mturk_tune.store import Store
from support import all_pages

KEY, SECRET = "AKIDFAULTTEST", "fault-test-secret"
START_BALANCE = Decimal("10000.00")
N_ITEMS, ITEMS_PER_HIT, ASSIGNMENTS, REWARD = 40, 2, 3, "0.05"


@pytest.fixture
def quick_retries(monkeypatch):
    """botocore's backoff schedule with each wait shrunk 50x: a 5th attempt may otherwise wait 16 s."""
    import botocore.endpoint

    waits: list[float] = []
    shim = types.SimpleNamespace(time=time.time, monotonic=time.monotonic, perf_counter=time.perf_counter,
                                 sleep=lambda seconds: (waits.append(seconds), time.sleep(seconds / 50)))
    monkeypatch.setattr(botocore.endpoint, "time", shim)
    # The shared pause after throttling, shrunk alike (not counted: it is not a retry).
    monkeypatch.setattr("mturk_tune.requester.time", types.SimpleNamespace(
        time=time.time, monotonic=time.monotonic, sleep=lambda seconds: time.sleep(seconds / 50)))
    return waits


def serve(tmp_path, faults: FaultPlan):
    url, stop = run_in_thread(tmp_path / "market.db", credentials={KEY: SECRET}, faults=faults)
    endpoint = resolve_endpoint(url)
    client = make_client(endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET)
    return endpoint, client, stop


def new_store(tmp_path, n_items: int = N_ITEMS) -> Store:
    store = Store.create(tmp_path / "state.db", model="m")
    store.add_batch("b1", 0, "m", {}, [{"id": f"i{n:03d}", "prompt_id": "p", "prompt": "Say something kind.",
                                        "text": f"a good and kind text {n}", "model": "m"} for n in range(n_items)])
    return store


def decisions_for(assignments: pd.DataFrame) -> pd.DataFrame:
    """Approve most, reject every fifth, a bonus for every third approval, hard-block one worker."""
    rows = []
    blocked = sorted(assignments["worker"])[0]
    for n, a in enumerate(assignments.sort_values("assignment_id").itertuples()):
        reject = n % 5 == 1
        rows.append({"assignment_id": a.assignment_id, "hit_id": a.hit_id, "worker": a.worker,
                     "action": "reject" if reject else "approve", "reason": "test policy",
                     "feedback": "rejected by the test" if reject else "", "bonus": "" if reject or n % 3 else "0.10",
                     "block": "hard" if a.worker == blocked else ""})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("throttle, fault, drop", [(0.1, 0.1, 0.1), (0.3, 0, 0), (0, 0.3, 0), (0, 0, 0.3)],
                         ids=["mixed", "throttled", "faults", "lost-responses"])
def test_every_operation_completes_with_30_percent_of_calls_failing(tmp_path, quick_retries, throttle, fault, drop):
    faults = FaultPlan(throttle=throttle, fault=fault, drop=drop, latency_s=0.002, seed=7)
    endpoint, client, stop = serve(tmp_path, faults)
    store = new_store(tmp_path)
    market = Marketplace(tmp_path / "market.db")  # the workers' side, beside the server
    settings = PublishSection(endpoint=endpoint.label, items_per_hit=ITEMS_PER_HIT, assignments=ASSIGNMENTS,
                              reward=REWARD, concurrency=8)
    try:
        publish(store, client, endpoint, settings, plan_publish(store, endpoint, settings, "b1"))
        SimulatedCrowd(market, make_crowd(6, {"careful": 1.0}, seed=5), seed=5).work()
        result = collect(store, client, endpoint, concurrency=8)
        assert (result.new_assignments, result.parse_errors) == (N_ITEMS // ITEMS_PER_HIT * ASSIGNMENTS, 0)

        decisions = decisions_for(store.assignments_frame())
        review = apply_review(store, client, decisions, concurrency=8)
        assert review.failed == 0
        extend = ExtensionPlan(hits={row["hit_id"]: ASSIGNMENTS for row in store.hits()[:4]}, items=[],
                               extra_per_hit=1, cost=Decimal("0"))
        assert apply_extension(store, client, extend) == 4
    finally:
        stop()
    assert quick_retries, "no call was retried: the faults did not happen"

    # No HIT twice; the store knows every HIT and its size.
    hits = all_pages(market, "list_hits", "HITs")
    assert len(hits) == len({h["RequesterAnnotation"] for h in hits}) == N_ITEMS // ITEMS_PER_HIT
    assert {h["HITId"]: h["MaxAssignments"] for h in hits} == {r["hit_id"]: r["max_assignments"] for r in store.hits()}
    # Every submitted assignment stored once, with its ratings, and reviewed as decided.
    remote = {a["AssignmentId"]: a["AssignmentStatus"] for h in hits
              for a in all_pages(market, "list_assignments_for_hit", "Assignments", HITId=h["HITId"])}
    stored = store.assignments_frame().set_index("assignment_id")
    assert set(remote) == set(stored.index) and len(store.ratings_frame()) == len(remote) * ITEMS_PER_HIT
    wanted = decisions.set_index("assignment_id")["action"].map({"approve": "Approved", "reject": "Rejected"})
    assert remote == wanted.to_dict() == stored["status"].to_dict()
    # Each bonus paid exactly once; the blocked worker blocked.
    paid = {a: all_pages(market, "list_bonus_payments", "BonusPayments", AssignmentId=a) for a in remote}
    bonused = set(decisions.loc[decisions["bonus"] != "", "assignment_id"])
    assert {a for a, p in paid.items() if p} == bonused and all(len(p) <= 1 for p in paid.values())
    assert [b["WorkerId"] for b in market.list_worker_blocks()["WorkerBlocks"]] == [sorted(decisions["worker"])[0]]
    # The balance moved by exactly: rewards and fees of every slot not rejected, plus bonuses and fees.
    rejected = pd.Series([a for a, s in remote.items() if s == "Rejected"]).map(stored["hit_id"]).value_counts()
    reward = parse_dollars(REWARD)
    spent = sum((hit_cost(reward, h["MaxAssignments"]) / h["MaxAssignments"] * (h["MaxAssignments"] - rejected.get(h["HITId"], 0))
                 for h in hits), Decimal("0"))
    spent += sum((bonus_cost(Decimal("0.10")) for _ in bonused), Decimal("0"))
    assert Decimal(market.get_account_balance()["AvailableBalance"]) == START_BALANCE - spent
    market.close()


def test_dropped_connections_after_the_call_applied_duplicate_nothing(tmp_path, quick_retries):
    """The request reaches the marketplace and is applied, then the connection dies before the
    answer: botocore sees ConnectionClosedError and retries; tokens keep it to one HIT, one bonus."""
    endpoint, client, stop = serve(tmp_path, FaultPlan())
    session, rng, dropped = client._endpoint.http_session, random.Random(3), []

    def send_then_drop(request, **kwargs):
        if rng.random() < 0.4:
            session.send(request)
            dropped.append(request.url)
            raise ConnectionClosedError(endpoint_url=request.url)
        return None

    client.meta.events.register_first("before-send.mturk", send_then_drop)
    store = new_store(tmp_path, 20)
    market = Marketplace(tmp_path / "market.db")
    settings = PublishSection(endpoint=endpoint.label, items_per_hit=2, assignments=1, reward=REWARD, concurrency=4)
    try:
        publish(store, client, endpoint, settings, plan_publish(store, endpoint, settings, "b1"))
        SimulatedCrowd(market, make_crowd(3, {"careful": 1.0}, seed=1), seed=1).work()
        collect(store, client, endpoint)
        decisions = decisions_for(store.assignments_frame()).assign(action="approve", bonus="0.25", block="")
        assert apply_review(store, client, decisions).failed == 0
    finally:
        stop()
    assert len(dropped) >= 5
    hits = all_pages(market, "list_hits", "HITs")
    assert len(hits) == len({h["RequesterAnnotation"] for h in hits}) == 10
    bonuses = [b for h in hits for b in all_pages(market, "list_bonus_payments", "BonusPayments", HITId=h["HITId"])]
    assert sorted(b["AssignmentId"] for b in bonuses) == sorted(decisions["assignment_id"])
    market.close()


def test_when_retries_run_out_the_error_says_so(tmp_path, quick_retries):
    endpoint, client, stop = serve(tmp_path, FaultPlan(throttle=1.0))
    try:
        with pytest.raises(ClientError) as excinfo:
            client.get_account_balance()
    finally:
        stop()
    assert len(quick_retries) == DEFAULT_MAX_ATTEMPTS - 1  # bounded: so many attempts, then it gives up
    message = describe_remote_error(excinfo.value)
    assert message.startswith(f"retries exhausted after {DEFAULT_MAX_ATTEMPTS} attempts") and "re-run" in message


def test_the_cli_prints_one_line_when_retries_run_out(tmp_path, quick_retries, monkeypatch):
    from mturk_tune.cli import cli
    from mturk_tune.workspace import init_workspace

    url, stop = run_in_thread(tmp_path / "market.db", credentials={KEY: SECRET}, faults=FaultPlan(throttle=1.0))
    ws = init_workspace(tmp_path / "ws", model="m", settings={"publish": {"endpoint": url}})
    ws.store.add_batch("b1", 0, "m", {}, [{"id": "i1", "prompt_id": "p", "prompt": "", "text": "t", "model": "m"}])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    try:
        result = CliRunner().invoke(cli, ["-w", str(ws.root), "publish"])
    finally:
        stop()
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert "ThrottlingException" in last and f"retries exhausted after {DEFAULT_MAX_ATTEMPTS} attempts" in last
    assert "Traceback" not in result.output


def test_a_review_over_its_cost_cap_makes_no_call(tmp_path):
    from mturk_tune.errors import SafetyError

    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"{name} was called")

    store = new_store(tmp_path, 2)
    decisions = pd.DataFrame([{"assignment_id": f"A{n}", "hit_id": "H", "worker": f"W{n}", "action": "approve",
                               "reason": "", "feedback": "", "bonus": "1.00", "block": ""} for n in range(3)])
    with pytest.raises(SafetyError, match=r"\$3.60 with MTurk fees, over the cap of \$2.00"):
        apply_review(store, NoCalls(), decisions, max_cost="2.00")
    assert store.actions_frame().empty
