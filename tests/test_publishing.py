"""Publishing HITs at most once: claims, lost responses, crashes, the 24-hour token window, hostile text."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mturk_tune.config import PublishSection
from mturk_tune.errors import SafetyError
from mturk_tune.marketplace import Marketplace, local_client
from mturk_tune.marketplace.crowd import read_form
from mturk_tune.marketplace.faults import FaultPlan
from mturk_tune.publishing import check_budget, plan_publish, publish
from mturk_tune.requester import SharedBackoff, make_client, resolve_endpoint, retry_config, run_pool
from mturk_tune.store import Store

LOCAL = resolve_endpoint("local")


class Clock:
    """A settable 'now' shared by the marketplace and the test."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def new_store(tmp_path: Path, texts: list[str]) -> Store:
    store = Store.create(tmp_path / "state.db", model="m")
    store.add_batch("b1", 0, "m", {}, [
        {"id": f"i{n:03d}", "prompt_id": f"p{n}", "prompt": "Write a line.", "text": text, "model": "m"}
        for n, text in enumerate(texts)
    ])
    return store


def settings(**overrides) -> PublishSection:
    return PublishSection(**{"endpoint": "local", "items_per_hit": 2, "assignments": 2, "reward": "0.05",
                             "concurrency": 4, **overrides})


def remote_hits(market: Marketplace) -> list[dict]:
    hits, token = [], None
    while True:
        page = market.list_hits(**({"NextToken": token} if token else {}), MaxResults=100)
        hits += page["HITs"]
        token = page.get("NextToken")
        if not token:
            return hits


def assert_each_item_in_one_hit(store: Store, market: Marketplace, n_items: int) -> None:
    hits = remote_hits(market)
    annotations = [h["RequesterAnnotation"] for h in hits]
    assert len(annotations) == len(set(annotations)), "a HIT was created twice"
    created = store.hits()
    assert {h["HITId"] for h in hits} == {row["hit_id"] for row in created}
    assert store.pending_hit_intents() == []
    items = [i for row in created for i in store.items_of_hit(row["hit_id"])]
    assert sorted(items) == [f"i{n:03d}" for n in range(n_items)]


@pytest.fixture
def quick_retries(monkeypatch):
    """botocore's backoff schedule, each wait shrunk 50x (a 4th retry may otherwise sleep 16 s)."""
    import types

    import botocore.endpoint

    waits: list[float] = []
    shim = types.SimpleNamespace(**{k: getattr(time, k) for k in ("time", "monotonic", "perf_counter")})
    shim.sleep = lambda seconds: (waits.append(seconds), time.sleep(seconds / 50))
    monkeypatch.setattr(botocore.endpoint, "time", shim)
    return waits


@pytest.fixture
def market(tmp_path):
    clock = Clock()
    market = Marketplace(tmp_path / "market.db", clock=clock)
    market.clock_control = clock
    yield market
    market.close()


def test_publish_creates_each_hit_once_and_a_rerun_creates_nothing(tmp_path, market):
    store = new_store(tmp_path, [f"text {n}" for n in range(9)])
    client = local_client(market.db_path, marketplace=market, config=retry_config())
    plan = plan_publish(store, LOCAL, settings(), "b1")
    assert [len(h) for h in plan.new_hits] == [2, 2, 2, 2, 1] and plan.pending_tokens == []
    result = publish(store, client, LOCAL, settings(), plan)
    assert (result.created, result.recovered) == (5, 0)
    assert_each_item_in_one_hit(store, market, 9)
    again = plan_publish(store, LOCAL, settings(), "b1")
    assert again.hit_count == 0


def test_lost_responses_are_adopted_through_the_token(tmp_path, market, quick_retries):
    # Half of the calls are applied and their answer lost: the retry meets HitAlreadyExists.
    store = new_store(tmp_path, [f"text {n}" for n in range(40)])
    client = local_client(market.db_path, marketplace=market, config=retry_config(),
                          faults=FaultPlan(drop=0.5, seed=4))
    publish(store, client, LOCAL, settings(), plan_publish(store, LOCAL, settings(), "b1"))
    assert_each_item_in_one_hit(store, market, 40)
    assert len(quick_retries) >= 10  # the drops were retried, not avoided


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing on the way catches it."""


def crash_after_remote_creates(monkeypatch, survivors: int) -> None:
    """The process 'dies' once `survivors` HITs were recorded: later HITs exist remotely only."""
    import mturk_tune.publishing as publishing

    real = publishing._mark_created
    recorded = {"n": 0}

    def mark(store, pairs):
        if recorded["n"] + len(pairs) > survivors:
            raise Crash()
        recorded["n"] += len(pairs)
        real(store, pairs)

    monkeypatch.setattr(publishing, "_mark_created", mark)


@pytest.mark.parametrize("hours_later", [0, 25])
def test_a_crash_between_create_and_record_is_recovered_by_annotation(tmp_path, market, monkeypatch, hours_later):
    store = new_store(tmp_path, [f"text {n}" for n in range(30)])
    client = local_client(market.db_path, marketplace=market, config=retry_config())
    crash_after_remote_creates(monkeypatch, survivors=3)
    with pytest.raises(Crash):
        publish(store, client, LOCAL, settings(concurrency=1), plan_publish(store, LOCAL, settings(), "b1"))
    assert len(store.hits()) <= 3 and len(store.pending_hit_intents()) >= 12
    assert len(remote_hits(market)) > len(store.hits())  # created remotely, never recorded
    monkeypatch.undo()

    # After MTurk's 24 hours the token no longer protects: the store's claims still do.
    market.clock_control.now += timedelta(hours=hours_later)
    plan = plan_publish(store, LOCAL, settings(), "b1")
    assert plan.new_hits == [] and len(plan.pending_tokens) == 15 - len(store.hits())
    result = publish(store, client, LOCAL, settings(), plan)
    assert result.recovered >= 1
    assert_each_item_in_one_hit(store, market, 30)


def test_the_token_alone_would_duplicate_after_24_hours(tmp_path, market):
    """Why the store keeps its own record: MTurk forgets a UniqueRequestToken after 24 hours."""
    client = local_client(market.db_path, marketplace=market)
    hit_type = client.create_hit_type(Title="t", Description="d", Reward="0.05", AssignmentDurationInSeconds=600)
    question = ('<HTMLQuestion xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/'
                'HTMLQuestion.xsd"><HTMLContent><![CDATA[<form><input name="assignmentId"></form>]]></HTMLContent>'
                '<FrameHeight>0</FrameHeight></HTMLQuestion>')
    args = dict(HITTypeId=hit_type["HITTypeId"], MaxAssignments=1, LifetimeInSeconds=3600, Question=question,
                UniqueRequestToken="same-token")
    client.create_hit_with_hit_type(**args)
    market.clock_control.now += timedelta(hours=25)
    client.create_hit_with_hit_type(**args)
    assert len(remote_hits(market)) == 2


def test_a_crash_while_claiming_leaves_no_half_claimed_plan(tmp_path, market, monkeypatch):
    store = new_store(tmp_path, [f"text {n}" for n in range(10)])
    client = local_client(market.db_path, marketplace=market)
    plan = plan_publish(store, LOCAL, settings(), "b1")
    import mturk_tune.publishing as publishing

    def dies_inside_the_claim(store_, intents):
        with store_.transaction() as conn:
            conn.execute("INSERT INTO hits (request_token, hit_id, state, batch_id, round, endpoint, hit_type_id,"
                         " max_assignments, reward, created_at) VALUES ('half', NULL, 'intent', 'b1', 0, 'local',"
                         " 'x', 1, '0.05', 'now')")
            raise Crash()

    monkeypatch.setattr(publishing, "_claim_hits", dies_inside_the_claim)
    with pytest.raises(Crash):
        publish(store, client, LOCAL, settings(), plan)
    assert store.pending_hit_intents() == [] and remote_hits(market) == []
    monkeypatch.undo()
    publish(store, client, LOCAL, settings(), plan_publish(store, LOCAL, settings(), "b1"))
    assert_each_item_in_one_hit(store, market, 10)


def test_hostile_text_is_shown_as_text_on_the_hit_page(tmp_path, market):
    texts = [
        '<script>alert("x")</script> & <b>bold</b>',
        "]]> closes CDATA early <![CDATA[ and opens again",
        "quotes \" ' and a tab and \u202e right-to-left override and emoji \U0001F600",
        "{{ 7*7 }} {% if true %}jinja{% endif %}",
        "<img src=x onerror=alert(1)>",
        "ends with a backslash \\",
    ]
    store = new_store(tmp_path, texts)
    client = local_client(market.db_path, marketplace=market)
    hostile = settings(items_per_hit=3, title='Rate </title><script>alert(1)</script>')
    publish(store, client, LOCAL, hostile, plan_publish(store, LOCAL, hostile, "b1"))
    shown = {}
    for hit in remote_hits(market):
        html = market.get_question_html(hit["HITId"])
        assert "<script>alert" not in html and "<img src=x" not in html and "</title><script>" not in html
        shown.update({item.item_id: item.text for item in read_form(html).items})
    # A worker reads exactly the generated text: nothing dropped, nothing evaluated.
    assert shown == {f"i{n:03d}": text for n, text in enumerate(texts)}


def test_the_cost_cap_is_checked_before_any_call(tmp_path):
    store = new_store(tmp_path, [f"text {n}" for n in range(100)])
    plan = plan_publish(store, LOCAL, settings(reward="1.00", assignments=3), "b1")
    with pytest.raises(SafetyError, match=r"would cost \$180.00 .* over the cap of \$25.00"):
        check_budget(plan, "25.00")


def test_endpoint_urls_with_credentials_are_refused():
    with pytest.raises(SafetyError, match="holds credentials"):
        resolve_endpoint("https://AKID:secret@example.com")
    assert resolve_endpoint("http://127.0.0.1:8000/").label == "http://127.0.0.1:8000"


# ------------------------------------------------------------------------------ pool and backoff


def test_the_pool_overlaps_calls_and_stops_after_the_first_failure():
    started = []

    def slow(n: int) -> int:
        started.append(n)
        time.sleep(0.05)
        if n == 3:
            raise ValueError("no")
        return n * n

    begin = time.monotonic()
    assert run_pool(lambda n: (time.sleep(0.05), n)[1], range(16), concurrency=16) == list(range(16))
    assert time.monotonic() - begin < 0.5  # 16 x 50 ms in parallel, not 0.8 s in a row
    with pytest.raises(ValueError):
        run_pool(slow, range(100), concurrency=4)
    assert len(started) < 20  # items queued after the failure never started


def test_threads_of_one_client_back_off_together_after_a_throttle():
    now = {"t": 100.0}
    slept: list[float] = []
    backoff = SharedBackoff(base_s=0.1, cap_s=1.0, clock=lambda: now["t"], sleep=slept.append, rand=lambda: 1.0)
    backoff.after_attempt(parsed_response={"Error": {"Code": "ThrottlingException"}})
    assert backoff.pause_left() == pytest.approx(0.1)
    backoff.after_attempt(parsed_response={"Error": {"Code": "ThrottlingException"}})
    assert backoff.pause_left() == pytest.approx(0.2)  # the pause grows with the streak
    for _ in range(3):  # any thread's next attempt waits out the same pause
        backoff.before_attempt()
    assert slept == [pytest.approx(0.2)] * 3
    backoff.after_attempt(parsed_response={"ResponseMetadata": {}})
    backoff.after_attempt(parsed_response={"Error": {"Code": "ServiceFault"}})  # not throttling: no pause
    now["t"] += 1.0
    assert backoff.pause_left() == 0 and backoff.throttled == 2


def test_a_throttled_client_pauses_its_other_threads(tmp_path, quick_retries):
    client = make_client(LOCAL, marketplace_db=tmp_path / "m.db", faults=FaultPlan(throttle=0.2, seed=1))
    backoff = client.meta.shared_backoff
    results = []
    threads = [threading.Thread(target=lambda: results.append(client.get_account_balance())) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and backoff.throttled >= 1 and backoff.waited_s > 0
