"""Let people do the open HITs in their browser: serve the worker pages until they have done them.

``serve_to_people`` is the person-facing counterpart of the simulated crowd: it invites each
worker id, prints the invite links, serves the marketplace over HTTP and returns once every
invited worker has nothing left to do (no HIT they may still accept, none in progress), or when
the person presses Ctrl-C. What was submitted stays in the marketplace for ``collect``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .server import DEFAULT_PORT, create_invite, invite_link, make_server, remember_server_url
from .service import REVIEWABLE_ASSIGNMENT_STATUSES, Marketplace


@dataclass(frozen=True)
class PeopleRun:
    url: str
    links: dict[str, str]  # worker id -> invite link
    submitted: int  # assignments the invited workers submitted while the server ran
    finished: bool  # True: every invited worker ran out of HITs; False: stopped early (Ctrl-C or ``stop``)


def _submitted(market: Marketplace, worker_ids: Sequence[str]) -> int:
    return sum(a["AssignmentStatus"] in REVIEWABLE_ASSIGNMENT_STATUSES
               for w in worker_ids for a in market.list_worker_assignments(w))


def _has_work_left(market: Marketplace, worker_id: str) -> bool:
    if market.list_available_hits(worker_id, limit=1):
        return True
    return any(a["AssignmentStatus"] == "Accepted" for a in market.list_worker_assignments(worker_id))


def serve_to_people(
    db_path: str | Path,
    workers: Sequence[str] = ("ARATER",),
    host: str = "127.0.0.1",
    port: int | None = None,
    public_url: str | None = None,
    announce: Callable[[str], None] = print,
    on_ready: Callable[[str, dict[str, str]], None] | None = None,
    stop: threading.Event | None = None,
    poll_s: float = 0.5,
) -> PeopleRun:
    """Serve ``db_path``'s marketplace to the invited ``workers`` until they are done; see the module doc.

    ``port`` None tries 8765 and falls back to any free port. ``on_ready(url, links)`` is called
    once the server listens (tests use it to drive a browser); setting ``stop`` ends the run early.
    The requester API stays closed (no key is made): publish and collect go through the file.
    """
    try:
        server = make_server(db_path, host, DEFAULT_PORT if port is None else port, credentials={},
                             public_url=public_url)
    except OSError:
        if port is not None:
            raise
        server = make_server(db_path, host, 0, credentials={}, public_url=public_url)
    market = server.market
    remember_server_url(db_path, server.url)
    links = {w: invite_link(server.url, create_invite(db_path, w)) for w in workers}
    before = _submitted(market, workers)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="marketplace-for-people", daemon=True)
    thread.start()
    for worker_id, link in links.items():
        announce(f"rate in your browser as {worker_id}: {link}")
    announce(f"(serving the marketplace on {server.url}; it stops by itself when the HITs are done, "
             "Ctrl-C stops it early and keeps what was submitted)")
    if on_ready is not None:
        on_ready(server.url, links)
    finished = False
    try:
        while not (stop is not None and stop.is_set()):
            if not any(_has_work_left(market, w) for w in workers):
                finished = True
                announce("every HIT is done; closing the worker pages in a moment")
                time.sleep(2.0)  # let the last "Submitted" page reach the browser before closing
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        announce("stopped: keeping what was submitted so far")
    finally:
        submitted = _submitted(market, workers) - before
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        market.close()
    return PeopleRun(url=server.url, links=links, submitted=submitted, finished=finished)
