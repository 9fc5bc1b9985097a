"""The marketplace over HTTP: MTurk's requester API for boto3, and web pages for invited workers.

Requester API: ``POST /`` with ``X-Amz-Target: MTurkRequesterServiceV20170117.<Op>``, SigV4
signed for service ``mturk-requester`` with a configured key; boto3 works unchanged with
``endpoint_url=<server url>``. Unsigned or wrongly signed requests get HTTP 403.

Worker pages (a worker is whoever opened their invite link, which sets a signed cookie):

- ``GET /join?token=...``: redeem an invite, set the cookie, go to the HIT list;
- ``GET /``: available HITs, the worker's HITs in progress and recent submissions;
- ``GET /task?hitId=...&assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE``: preview with an Accept button;
  ``GET /task?hitId=...&assignmentId=<id>``: the accepted HIT, with Return;
- ``POST /accept``, ``POST /return``;
- ``GET /frame?assignmentId=&hitId=&turkSubmitTo=&workerId=``: the HIT's HTMLContent, as MTurk
  shows it, in a sandboxed frame under a strict CSP;
- ``POST {turkSubmitTo}/mturk/externalSubmit``: the HIT form's answers -> submit_assignment.
  turkSubmitTo carries a per-assignment signed path (``/s/<token>``) because the sandboxed frame
  has an opaque origin and sends no cookie; the token names the assignment and its worker.

Notifications (UpdateNotificationSettings) are sent to their SQS queue / SNS topic by a
background thread (``delivery.NotificationDelivery``), at least once.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from . import protocol
from .delivery import NotificationDelivery
from .errors import MTurkError
from .faults import FaultPlan
from .pages import render
from .service import Marketplace, check_worker_id
from .sigv4 import AuthFailure, verify

PREVIEW_ASSIGNMENT_ID = "ASSIGNMENT_ID_NOT_AVAILABLE"
COOKIE = "mturk_tune_worker"
MAX_API_BODY = 2 * 1024 * 1024
MAX_FORM_BODY = 1024 * 1024
_WORKER_ERROR_STATUS = {
    "AWS.MechanicalTurk.WorkerBlocked": 403,
    "AWS.MechanicalTurk.QualificationRequirementNotMet": 403,
    "AWS.MechanicalTurk.AssignmentNotOwned": 403,
    "AWS.MechanicalTurk.HITDoesNotExist": 404,
    "AWS.MechanicalTurk.AssignmentDoesNotExist": 404,
}
# Worker pages: no script at all, frames only from here, forms only to here.
PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def frame_csp(origin: str) -> str:
    """The requester's HIT page may run inline script and post its form here, nothing else: no
    fetch/XHR, no frames, no plugins; sandboxed into an opaque origin, it cannot reach the worker's
    cookie or the surrounding page."""
    return ("sandbox allow-scripts allow-forms allow-top-navigation-by-user-activation; default-src 'none'; "
            "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: https:; font-src data:; "
            f"form-action {origin}; base-uri 'none'; frame-ancestors 'self'")


class MarketplaceServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], market: Marketplace, credentials: dict[str, str],
                 public_url: str | None, faults: FaultPlan | None):
        super().__init__(address, _Handler)
        self.market = market
        self.credentials = credentials
        self.secret = market.server_secret()
        self.public_url = public_url.rstrip("/") if public_url else None
        self.faults = faults
        self.delivery = NotificationDelivery(market)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return self.public_url or f"http://{host}:{port}"

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self.delivery.start()
        try:
            super().serve_forever(poll_interval)
        finally:
            self.delivery.stop()

    # -- signed values: worker cookie and per-assignment submit path --------------------------

    def _mac(self, purpose: str, value: str) -> str:
        digest = hmac.new(self.secret, f"{purpose}\x1f{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:20]).decode().rstrip("=")

    def sign(self, purpose: str, value: str) -> str:
        return f"{value}.{self._mac(purpose, value)}"

    def unsign(self, purpose: str, signed: str | None) -> str | None:
        if not signed or "." not in signed:
            return None
        value, mac = signed.rsplit(".", 1)
        return value if hmac.compare_digest(mac, self._mac(purpose, value)) else None


class _Handler(BaseHTTPRequestHandler):
    server: MarketplaceServer
    server_version = "mturk-tune-marketplace"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle plus the client's
        # delayed ACK stall every keep-alive response by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet by default; the requester API answers carry request ids

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def market(self) -> Marketplace:
        return self.server.market

    def _origin(self) -> str:
        if self.server.public_url:
            parts = urlsplit(self.server.public_url)
            return f"{parts.scheme}://{parts.netloc}"
        return f"http://{self.headers.get('Host') or '%s:%s' % self.server.server_address[:2]}"

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _page(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._send(status, body, "text/html; charset=utf-8",
                   {"Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY", **(headers or {})})

    def _message(self, status: int, heading: str, message: str, error: bool = True, framed: bool = False) -> None:
        body = render("message.html", heading=heading, message=message, error=error, worker_id=self._worker())
        if framed:  # the answer to a HIT form shows inside the HIT's frame
            csp = PAGE_CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'")
            return self._page(status, body, {"Content-Security-Policy": csp, "X-Frame-Options": "SAMEORIGIN"})
        self._page(status, body)

    def _redirect(self, location: str, headers: dict[str, str] | None = None) -> None:
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": location, **(headers or {})})

    def _read_body(self, limit: int) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > limit:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"request body too large", "text/plain",
                       {"Connection": "close"})
            self.close_connection = True
            return None
        return self.rfile.read(length)

    def _query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))

    def _worker(self) -> str | None:
        cookies = self.headers.get("Cookie") or ""
        for part in cookies.split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return self.server.unsign("worker", value)
        return None

    def _csrf(self, worker_id: str) -> str:
        return self.server._mac("csrf", worker_id)

    def _same_origin_post(self) -> bool:
        origin = self.headers.get("Origin")
        return origin in (None, "null") or origin == self._origin()

    # -- routing ------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        route = urlsplit(self.path).path
        try:
            if route == "/join":
                return self._join()
            if route in ("/", "/hits"):
                return self._hits()
            if route == "/task":
                return self._task()
            if route == "/frame":
                return self._frame()
            if route == "/healthz":
                return self._send(200, b"ok", "text/plain")
            if route == "/favicon.ico":
                return self._send(204, b"", "image/x-icon")
            self._message(404, "Not found", "There is no page at this address.")
        except MTurkError as err:
            self._worker_error(err)

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802
        route = urlsplit(self.path).path
        if self.headers.get("X-Amz-Target") is not None:
            return self._requester_api()
        try:
            if route == "/accept":
                return self._accept()
            if route == "/return":
                return self._return()
            if route == "/mturk/externalSubmit":
                return self._external_submit(None)
            if route.startswith("/s/") and route.endswith("/mturk/externalSubmit"):
                return self._external_submit(route[len("/s/"):-len("/mturk/externalSubmit")])
            self._message(404, "Not found", "There is nothing to post to at this address.")
        except MTurkError as err:
            self._worker_error(err)

    def _worker_error(self, err: MTurkError) -> None:
        status = _WORKER_ERROR_STATUS.get(err.turk_error_code or "", 409 if err.code == "RequestError" else 500)
        self._message(status, "That did not work", err.message)

    # -- requester API ------------------------------------------------------------------------

    def _requester_api(self) -> None:
        body = self._read_body(MAX_API_BODY)
        if body is None:
            return
        try:
            verify(self.command, self.path, dict(self.headers.items()), body, self.server.credentials)
        except AuthFailure as failure:
            payload = json.dumps({"__type": failure.code, "Message": failure.message,
                                  "message": failure.message}).encode()
            return self._send(403, payload, protocol.CONTENT_TYPE)
        status, headers, payload = protocol.handle(self.market, self.headers.get("X-Amz-Target"), body,
                                                   self.server.faults)
        headers.pop("Content-Length", None)
        content_type = headers.pop("Content-Type", protocol.CONTENT_TYPE)
        self._send(status, payload, content_type, headers)

    # -- worker pages -------------------------------------------------------------------------

    def _require_worker(self) -> str | None:
        worker_id = self._worker()
        if worker_id is None:
            self._message(403, "Invitation needed", "Open the invite link you were given to start working here.")
        return worker_id

    def _join(self) -> None:
        worker_id = self.market.redeem_invite(self._query().get("token", ""))
        if worker_id is None:
            return self._message(403, "Invitation not valid", "This invite link is unknown; ask for a new one.")
        secure = "; Secure" if self._origin().startswith("https://") else ""
        cookie = (f"{COOKIE}={self.server.sign('worker', worker_id)}; Path=/; HttpOnly; SameSite=Lax; "
                  f"Max-Age={180 * 24 * 3600}{secure}")
        self._redirect("/", {"Set-Cookie": cookie})

    def _hits(self) -> None:
        worker_id = self._require_worker()
        if worker_id is None:
            return
        hits = self.market.list_available_hits(worker_id)
        for h in hits:
            h["minutes"] = round(h["AssignmentDurationInSeconds"] / 60)
            h["link"] = "/task?" + urlencode({"hitId": h["HITId"], "assignmentId": PREVIEW_ASSIGNMENT_ID})
        mine = self.market.list_worker_assignments(worker_id)
        in_progress = []
        for a in mine:
            if a["AssignmentStatus"] == "Accepted":
                title = self.market.get_hit(HITId=a["HITId"])["HIT"]["Title"]
                in_progress.append({"title": title, "deadline": _when(a["Deadline"]),
                                    "link": "/task?" + urlencode({"hitId": a["HITId"],
                                                                  "assignmentId": a["AssignmentId"]})})
        submitted = [dict(a, SubmitTime=_when(a["SubmitTime"])) for a in mine
                     if a["AssignmentStatus"] in ("Submitted", "Approved", "Rejected")][:20]
        self._page(200, render("hits.html", worker_id=worker_id, hits=hits, in_progress=in_progress,
                               submitted=submitted))

    def _task(self) -> None:
        worker_id = self._require_worker()
        if worker_id is None:
            return
        query = self._query()
        hit = self.market.get_hit(HITId=query.get("hitId", ""))["HIT"]
        assignment_id = query.get("assignmentId", PREVIEW_ASSIGNMENT_ID)
        working, deadline = False, None
        submit_to = self._origin()
        if assignment_id != PREVIEW_ASSIGNMENT_ID:
            assignment = self.market.get_worker_assignment(assignment_id, worker_id)
            if assignment["HITId"] != hit["HITId"] or assignment["AssignmentStatus"] != "Accepted":
                return self._message(409, "Not in progress", f"Assignment {assignment_id} is "
                                     f"{assignment['AssignmentStatus']}; it can no longer be worked on.")
            working, deadline = True, _when(assignment["Deadline"])
            token = self.server.sign("submit", f"{assignment_id}:{worker_id}")
            submit_to = f"{self._origin()}/s/{quote(token, safe='')}"
        frame_src = "/frame?" + urlencode({"assignmentId": assignment_id, "hitId": hit["HITId"],
                                           "turkSubmitTo": submit_to, "workerId": worker_id})
        self._page(200, render("task.html", worker_id=worker_id, hit=hit, working=working, deadline=deadline,
                               assignment_id=assignment_id, csrf=self._csrf(worker_id), frame_src=frame_src))

    def _frame(self) -> None:
        worker_id = self._require_worker()
        if worker_id is None:
            return
        query = self._query()
        assignment_id = query.get("assignmentId", PREVIEW_ASSIGNMENT_ID)
        if assignment_id != PREVIEW_ASSIGNMENT_ID:
            self.market.get_worker_assignment(assignment_id, worker_id)  # refuses others' assignments
        question = self.market.get_question(query.get("hitId", ""))
        if question.html is None:
            return self._message(415, "Cannot show this HIT", f"This HIT is a {question.kind}; only HTMLQuestion "
                                 "HITs can be worked on here.")
        self._send(200, question.html.encode("utf-8"), "text/html; charset=utf-8",
                   {"Content-Security-Policy": frame_csp(self._origin()), "X-Frame-Options": "SAMEORIGIN"})

    def _form(self) -> list[tuple[str, str]] | None:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in ("application/x-www-form-urlencoded", ""):
            self._message(415, "Unsupported form", "Forms must be posted as application/x-www-form-urlencoded.")
            return None
        body = self._read_body(MAX_FORM_BODY)
        if body is None:
            return None
        return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)

    def _checked_post(self) -> tuple[str, dict[str, str]] | None:
        worker_id = self._require_worker()
        if worker_id is None:
            return None
        form = self._form()
        if form is None:
            return None
        fields = dict(form)
        if not self._same_origin_post() or not hmac.compare_digest(fields.get("csrf", ""), self._csrf(worker_id)):
            self._message(403, "Refused", "This form did not come from this marketplace's pages.")
            return None
        return worker_id, fields

    def _accept(self) -> None:
        checked = self._checked_post()
        if checked is None:
            return
        worker_id, fields = checked
        hit_id = fields.get("hitId", "")
        assignment_id = self.market.accept_hit(hit_id, worker_id)
        self._redirect("/task?" + urlencode({"hitId": hit_id, "assignmentId": assignment_id}))

    def _return(self) -> None:
        checked = self._checked_post()
        if checked is None:
            return
        worker_id, fields = checked
        self.market.return_assignment(fields.get("assignmentId", ""), worker_id)
        self._redirect("/")

    def _external_submit(self, token: str | None) -> None:
        if token is not None:
            signed = self.server.unsign("submit", unquote(token))
            if signed is None:
                return self._message(403, "Submission refused", "This submission link is not valid.", framed=True)
            token_assignment, _, worker_id = signed.partition(":")
        else:
            token_assignment, worker_id = None, self._worker()
            if worker_id is None:
                return self._message(403, "Submission refused", "Only invited workers can submit answers.", framed=True)
        form = self._form()
        if form is None:
            return
        assignment_id = next((value for name, value in form if name == "assignmentId"), "")
        if not assignment_id or assignment_id == PREVIEW_ASSIGNMENT_ID:
            return self._message(400, "Nothing to submit", "Accept the HIT before submitting answers.", framed=True)
        if token_assignment is not None and token_assignment != assignment_id:
            return self._message(403, "Submission refused", "The answers name a different assignment.", framed=True)
        try:
            self.market.submit_assignment(assignment_id, worker_id, _merge_repeated(form))
        except MTurkError as err:
            status = _WORKER_ERROR_STATUS.get(err.turk_error_code or "", 409)
            return self._message(status, "Submission refused", err.message, framed=True)
        self._message(200, "Submitted", "Thank you: your answers were recorded.", error=False, framed=True)


def _merge_repeated(form: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One answer per field name, in first-seen order; repeated names (checkboxes) joined with '|' as MTurk does."""
    merged: dict[str, list[str]] = {}
    for name, value in form:
        merged.setdefault(name, []).append(value)
    return [(name, "|".join(values)) for name, values in merged.items()]


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


# ------------------------------------------------------------------------------------------ API


def create_requester_key(db_path: str | Path) -> tuple[str, str]:
    """Make a requester API key pair the server will accept; returns (access key id, secret)."""
    with Marketplace(db_path) as market:
        return market.add_requester_key()


def ensure_requester_key(db_path: str | Path, new: bool = False) -> tuple[list[str], tuple[str, str] | None]:
    """The access key ids the server accepts, and the pair made now (if none existed, or ``new``).

    The secret of a new pair is returned this once, for the person to copy; it is never shown again.
    """
    with Marketplace(db_path) as market:
        created = market.add_requester_key() if new or not market.requester_keys() else None
        return sorted(market.requester_keys()), created


SERVER_URL_SETTING = "server_url"
DEFAULT_PORT = 8765


def remember_server_url(db_path: str | Path, url: str) -> None:
    """Where the server was last reachable: ``invite`` builds its links on it."""
    with Marketplace(db_path) as market:
        market.set_setting(SERVER_URL_SETTING, url)


def server_url(db_path: str | Path) -> str:
    """The URL the marketplace was last served at (default http://127.0.0.1:8765)."""
    with Marketplace(db_path) as market:
        return market.get_setting(SERVER_URL_SETTING) or f"http://127.0.0.1:{DEFAULT_PORT}"


def create_invite(db_path: str | Path, worker_id: str, country: str | None = "US") -> str:
    """Register a worker and return a fresh invite token (put it in ``invite_link``)."""
    check_worker_id(worker_id)
    token = secrets.token_urlsafe(24)
    with Marketplace(db_path) as market:
        market.register_worker(worker_id, country=country)
        market.add_invite(worker_id, token)
    return token


def invite_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/join?{urlencode({'token': token})}"


def make_server(
    db_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    credentials: dict[str, str] | None = None,
    *,
    public_url: str | None = None,
    clock: Callable[[], datetime] | None = None,
    faults: FaultPlan | None = None,
) -> MarketplaceServer:
    """A server bound to (host, port) but not yet serving. ``credentials`` (access key -> secret)
    defaults to the keys stored in the database (``create_requester_key``)."""
    market = Marketplace(db_path, clock=clock)
    keys = dict(credentials) if credentials is not None else market.requester_keys()
    return MarketplaceServer((host, port), market, keys, public_url, faults)


def serve(
    db_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    credentials: dict[str, str] | None = None,
    *,
    public_url: str | None = None,
    faults: FaultPlan | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until interrupted. Without credentials and with none stored, one key pair is made and announced."""
    if credentials is None:
        with Marketplace(db_path) as market:
            if not market.requester_keys():
                key, secret = market.add_requester_key()
                announce(f"requester key created: AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY={secret}")
    server = make_server(db_path, host, port, credentials, public_url=public_url, faults=faults)
    announce(f"serving the marketplace on {server.url}")
    serve_until_interrupted(server)


def serve_until_interrupted(server: MarketplaceServer) -> None:
    """Serve (and deliver notifications) until Ctrl-C; then close the server and its database."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.market.close()


def run_in_thread(
    db_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    credentials: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[str, Callable[[], None]]:
    """Start a server in a background thread; returns (base url, stop)."""
    server = make_server(db_path, host, port, credentials, **kwargs)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="marketplace-server", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        server.market.close()

    return server.url, stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mturk_tune.marketplace.server",
                                     description="Serve the embedded MTurk-compatible marketplace over HTTP.")
    parser.add_argument("--db", required=True, help="SQLite file of the marketplace (created if missing).")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    parser.add_argument("--port", type=int, default=0, help="Port (default: any free port, printed).")
    parser.add_argument("--public-url", help="URL workers reach the server at, if behind a proxy (e.g. https://...).")
    parser.add_argument("--invite", metavar="WORKER_ID", action="append", default=[],
                        help="Print an invite link for this worker id before serving (repeatable).")
    args = parser.parse_args(argv)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    server = make_server(args.db, args.host, args.port, None, public_url=args.public_url)
    if not server.credentials:
        key, secret = server.market.add_requester_key()
        server.credentials[key] = secret
        print(f"requester key created: AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY={secret}", flush=True)
    for worker_id in args.invite:
        print(f"invite for {worker_id}: {invite_link(server.url, create_invite(args.db, worker_id))}", flush=True)
    print(f"serving the marketplace on {server.url}", flush=True)
    serve_until_interrupted(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
