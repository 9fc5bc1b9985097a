"""The marketplace over HTTP: signed requester API, invited workers' pages, crash safety, faults."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mturk_tune.marketplace import Marketplace, local_client
from mturk_tune.marketplace.documents import parse_answer_xml
from mturk_tune.marketplace.faults import FaultPlan
from mturk_tune.marketplace.server import create_invite, create_requester_key, invite_link, run_in_thread

KEY, SECRET = "AKIDSERVERTEST", "server-test-secret"
PAGE = ('<!DOCTYPE html><form method="post"><input type="hidden" name="assignmentId" value="">'
        '<div data-item-id="i1"><p class="item-text">Some text</p>'
        '<input type="radio" name="rating__i1" value="1"><input type="radio" name="rating__i1" value="5"></div>'
        '<input type="checkbox" name="flags" value="a"><input type="checkbox" name="flags" value="b">'
        "<button>Submit</button></form>")
QUESTION = ('<HTMLQuestion xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/'
            f'HTMLQuestion.xsd"><HTMLContent><![CDATA[{PAGE}]]></HTMLContent><FrameHeight>0</FrameHeight>'
            "</HTMLQuestion>")


def requester(url: str, key: str = KEY, secret: str = SECRET, **kwargs):
    return boto3.client("mturk", region_name="us-east-1", endpoint_url=url, aws_access_key_id=key,
                        aws_secret_access_key=secret, **kwargs)


def new_hit(client, max_assignments: int = 2) -> str:
    return client.create_hit(Title="Rate a text", Description="One text", Reward="0.10",
                             AssignmentDurationInSeconds=600, LifetimeInSeconds=3600,
                             MaxAssignments=max_assignments, Question=QUESTION)["HIT"]["HITId"]


class Browser:
    """A worker's browser: keeps cookies, follows redirects, reads pages."""

    def __init__(self, base_url: str):
        self.base = base_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def get(self, path: str) -> tuple[int, str, dict]:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, fields: list[tuple[str, str]] | dict, headers: dict | None = None) -> tuple[int, str, dict]:
        request = urllib.request.Request(self.base + path, data=urlencode(fields).encode(), headers=headers or {})
        return self._open(request)

    def _open(self, request: urllib.request.Request) -> tuple[int, str, dict]:
        try:
            with self.opener.open(request) as response:
                return response.status, response.read().decode(), dict(response.headers) | {"url": response.url}
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), dict(err.headers)

    def join(self, db: Path, worker_id: str) -> None:
        """Open a fresh invite link, as the worker would from an e-mail."""
        link = invite_link(self.base, create_invite(db, worker_id))
        status, body, _ = self.get(link[len(self.base):])
        assert status == 200 and "Available HITs" in body

    def accept(self, hit_id: str) -> dict[str, str]:
        """Preview, press Accept; returns the task frame's query (assignmentId, turkSubmitTo, ...)."""
        status, body, _ = self.get("/task?" + urlencode({"hitId": hit_id, "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"}))
        assert status == 200 and "Accept" in body
        csrf = re.search(r'name="csrf" value="([^"]+)"', body).group(1)
        status, body, _ = self.post("/accept", {"hitId": hit_id, "csrf": csrf})
        assert status == 200, body
        frame = re.search(r'<iframe src="([^"]+)"', body).group(1).replace("&amp;", "&")
        return dict(parse_qsl(urlsplit(frame).query)) | {"frame": frame}


def anonymous_post(url: str, fields: list[tuple[str, str]]) -> tuple[int, str]:
    """What the sandboxed HIT frame sends: no cookie, Origin null."""
    request = urllib.request.Request(url, data=urlencode(fields).encode(), headers={"Origin": "null"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def server(tmp_path):
    db = tmp_path / "market.db"
    url, stop = run_in_thread(db, credentials={KEY: SECRET})
    yield url, db
    stop()


# ------------------------------------------------------------------ requester API authentication


def test_requests_must_carry_a_valid_signature(server):
    url, _ = server
    assert requester(url).get_account_balance()["AvailableBalance"] == "10000.00"
    for client, code in [(requester(url, secret="wrong"), "InvalidSignatureException"),
                         (requester(url, key="AKIDUNKNOWN"), "UnrecognizedClientException")]:
        with pytest.raises(ClientError) as excinfo:
            client.get_account_balance()
        assert excinfo.value.response["Error"]["Code"] == code
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    unsigned = urllib.request.Request(url + "/", data=b"{}", headers={
        "X-Amz-Target": "MTurkRequesterServiceV20170117.GetAccountBalance",
        "Content-Type": "application/x-amz-json-1.1"})
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(unsigned)
    assert excinfo.value.code == 403
    assert json.loads(excinfo.value.read())["__type"] == "MissingAuthenticationTokenException"


def test_a_tampered_body_fails_the_signature(server):
    url, _ = server
    client = requester(url)

    def tamper(request, **_):
        request.body = request.body.replace(b'"0.10"', b'"9.99"')

    client.meta.events.register_last("before-send.mturk.CreateHIT", tamper)
    with pytest.raises(ClientError) as excinfo:
        new_hit(client)
    assert excinfo.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_keys_stored_in_the_database_are_used_by_default(tmp_path):
    db = tmp_path / "market.db"
    key, secret = create_requester_key(db)
    url, stop = run_in_thread(db)
    try:
        assert requester(url, key, secret).get_account_balance()["AvailableBalance"] == "10000.00"
    finally:
        stop()


# ------------------------------------------------------------------ worker pages


def test_an_invited_worker_previews_accepts_and_submits_through_the_pages(server):
    url, db = server
    client = requester(url)
    hit_id = new_hit(client)
    stranger = Browser(url)
    status, body, _ = stranger.get("/")
    assert status == 403 and "invite" in body.lower()

    worker = Browser(url)
    worker.join(db, "AWEBWORKER")
    status, body, headers = worker.get("/")
    assert hit_id in body and "Rate a text" in body
    assert "script-src" not in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"

    task = worker.accept(hit_id)
    assert task["workerId"] == "AWEBWORKER" and task["hitId"] == hit_id
    assert task["turkSubmitTo"].startswith(url + "/s/")
    status, html, headers = worker.get(task["frame"])
    assert status == 200 and html == PAGE  # the requester's page, unchanged
    assert headers["Content-Security-Policy"].startswith("sandbox allow-scripts allow-forms")
    assert f"form-action {url}" in headers["Content-Security-Policy"]

    submit_url = task["turkSubmitTo"] + "/mturk/externalSubmit"
    fields = [("assignmentId", task["assignmentId"]), ("rating__i1", "5"), ("flags", "a"), ("flags", "b")]
    status, body = anonymous_post(submit_url, fields)
    assert status == 200 and "recorded" in body
    status, body = anonymous_post(submit_url, fields)
    assert status == 409 and "already submitted" in body  # answers are never overwritten

    [assignment] = client.list_assignments_for_hit(HITId=hit_id)["Assignments"]
    assert assignment["WorkerId"] == "AWEBWORKER"
    assert parse_answer_xml(assignment["Answer"]) == [("rating__i1", "5"), ("flags", "a|b")]


def test_submissions_need_the_workers_own_assignment(server):
    url, db = server
    client = requester(url)
    hit_id = new_hit(client)
    alice, bob = Browser(url), Browser(url)
    alice.join(db, "AALICE")
    bob.join(db, "ABOB")
    task = alice.accept(hit_id)
    answer = [("assignmentId", task["assignmentId"]), ("rating__i1", "1")]

    assert bob.post("/mturk/externalSubmit", answer)[0] == 403  # Bob's cookie, Alice's assignment
    assert anonymous_post(url + "/mturk/externalSubmit", answer)[0] == 403  # no cookie, no signed path
    forged = task["turkSubmitTo"][:-4] + "AAAA/mturk/externalSubmit"
    assert anonymous_post(forged, answer)[0] == 403
    assert bob.get(task["frame"])[0] == 403  # Bob cannot open Alice's task either
    preview = [("assignmentId", "ASSIGNMENT_ID_NOT_AVAILABLE"), ("rating__i1", "1")]
    assert alice.post("/mturk/externalSubmit", preview)[0] == 400
    assert client.list_assignments_for_hit(HITId=hit_id)["Assignments"] == []

    status, body, _ = alice.post("/mturk/externalSubmit", answer)  # her own cookie works too
    assert status == 200 and "recorded" in body


def test_accept_and_return_need_the_pages_csrf_token(server):
    url, db = server
    hit_id = new_hit(requester(url), max_assignments=1)
    worker = Browser(url)
    worker.join(db, "ACSRF")
    assert worker.post("/accept", {"hitId": hit_id})[0] == 403
    assert worker.post("/accept", {"hitId": hit_id, "csrf": "x"}, headers={"Origin": "https://evil.example"})[0] == 403
    task = worker.accept(hit_id)
    status, body, _ = worker.get("/")
    assert "in progress" in body and task["assignmentId"] in body
    csrf = re.search(r'name="csrf" value="([^"]+)"', worker.get(
        "/task?" + urlencode({"hitId": hit_id, "assignmentId": task["assignmentId"]}))[1]).group(1)
    status, body, _ = worker.post("/return", {"assignmentId": task["assignmentId"], "csrf": csrf})
    assert status == 200 and hit_id in body  # returned: the HIT is available again


def test_blocked_workers_see_why_they_cannot_accept(server):
    url, db = server
    client = requester(url)
    hit_id = new_hit(client)
    worker = Browser(url)
    worker.join(db, "ABLOCKED")
    client.create_worker_block(WorkerId="ABLOCKED", Reason="spam")
    status, body, _ = worker.get("/")
    assert hit_id not in body
    status, body, _ = worker.get("/task?" + urlencode({"hitId": hit_id, "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"}))
    csrf = re.search(r'name="csrf" value="([^"]+)"', body).group(1)
    status, body, _ = worker.post("/accept", {"hitId": hit_id, "csrf": csrf})
    assert status == 403 and "blocked" in body


# ------------------------------------------------------------------ crash safety


def _start(db: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "mturk_tune.marketplace.server", "--db", str(db)],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("serving the marketplace on "):
            return process, line.split(" on ", 1)[1].strip()
    process.kill()
    raise AssertionError("the server did not start")


def test_a_killed_server_restarts_on_the_same_database_and_the_assignment_completes(tmp_path):
    db = tmp_path / "market.db"
    key, secret = create_requester_key(db)
    process, url = _start(db)
    try:
        client = requester(url, key, secret)
        hit_id = new_hit(client, max_assignments=2)
        other_id = new_hit(client, max_assignments=1)
        client.create_worker_block(WorkerId="ASPAMMER", Reason="random answers")
        worker = Browser(url)
        worker.join(db, "AKILLTEST")
        task = worker.accept(hit_id)
        before = {h["HITId"]: h for h in client.list_hits()["HITs"]}
        balance = client.get_account_balance()["AvailableBalance"]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    process, url = _start(db)
    try:
        client = requester(url, key, secret)
        # Everything recorded before the kill is there, field for field: HITs, their counts, the money held.
        assert {h["HITId"]: h for h in client.list_hits()["HITs"]} == before
        assert before[hit_id]["NumberOfAssignmentsPending"] == 1
        assert client.get_account_balance()["AvailableBalance"] == balance
        worker.base = url  # the cookie is signed with a key kept in the database, so it still works
        status, page, _ = worker.get("/")
        assert status == 200 and "in progress" in page and task["assignmentId"] in page
        submit_url = url + urlsplit(task["turkSubmitTo"]).path + "/mturk/externalSubmit"
        status, body = anonymous_post(submit_url, [("assignmentId", task["assignmentId"]), ("rating__i1", "5")])
        assert status == 200, body
        after = {h["HITId"]: h for h in client.list_hits()["HITs"]}
        assert set(after) == set(before) == {hit_id, other_id}
        assert [(b["Title"], b["MaxAssignments"]) for b in before.values()] == [
            (a["Title"], a["MaxAssignments"]) for a in after.values()]
        [assignment] = client.list_assignments_for_hit(HITId=hit_id)["Assignments"]
        assert assignment["WorkerId"] == "AKILLTEST" and "rating__i1" in assignment["Answer"]
        assert client.list_worker_blocks()["WorkerBlocks"] == [{"WorkerId": "ASPAMMER", "Reason": "random answers"}]
        assert worker.get("/")[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


# ------------------------------------------------------------------ fault injection


def test_throttling_is_retried_by_botocore(tmp_path, monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr("botocore.endpoint.time.sleep", sleeps.append)  # keep botocore's backoff, skip the wait
    client = local_client(tmp_path / "m.db", faults=FaultPlan(throttle=0.5, seed=3),
                          config=Config(retries={"mode": "standard", "max_attempts": 10}))
    assert client.get_account_balance()["AvailableBalance"] == "10000.00"
    retried = [client.list_hits()["ResponseMetadata"]["RetryAttempts"] for _ in range(20)]
    assert sum(retried) > 5 and len(sleeps) >= sum(retried)  # about half the calls were throttled; none failed


def test_a_lost_response_is_recovered_through_the_unique_request_token(tmp_path):
    market = Marketplace(tmp_path / "m.db")
    client = local_client(tmp_path / "m.db", marketplace=market, faults=FaultPlan(drop=1.0),
                          config=Config(retries={"mode": "standard", "max_attempts": 2}))
    with pytest.raises(ClientError) as excinfo:
        client.create_hit(Title="T", Description="D", Reward="0.10", AssignmentDurationInSeconds=60,
                          LifetimeInSeconds=600, Question=QUESTION, UniqueRequestToken="once")
    # The first attempt created the HIT and lost the answer; the retry met the token.
    assert excinfo.value.response["TurkErrorCode"] == "AWS.MechanicalTurk.HitAlreadyExists"
    [hit] = market.list_hits()["HITs"]
    assert hit["HITId"] in excinfo.value.response["Error"]["Message"]
