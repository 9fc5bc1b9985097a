"""The ``local`` endpoint: a real boto3 MTurk client answered in-process by a Marketplace, no moto.

Notifications (UpdateNotificationSettings) are sent to their SQS queue right after the call
or worker action that caused them, by ``delivery.NotificationDelivery``.

botocore builds, signs and parses every request as it would for MTurk; a ``before-send``
handler hands the request to ``protocol.handle`` instead of the network. Because the
Marketplace lives in a SQLite file, a client in one process (publish) and one in another
(collect, or the simulated crowd) see the same HITs and answers.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from . import protocol
from .delivery import attach_delivery
from .faults import FaultPlan
from .service import Marketplace

LOCAL_ENDPOINT = "https://mturk-local.invalid"


class _RawBody(io.BytesIO):
    """The raw-response object botocore reads a body from."""

    def stream(self, **_: Any):
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()


def open_marketplace(db_path: str | Path, clock: Callable[[], datetime] | None = None,
                     deliver_notifications: bool = True) -> Marketplace:
    """The Marketplace stored at ``db_path`` (created if missing); for the crowd and the worker pages.

    Notification messages it queues are sent to their SQS queue / SNS topic right after the
    change that caused them (at least once: an unreachable queue keeps them queued).
    """
    if str(db_path) != ":memory:":
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    market = Marketplace(db_path, clock=clock)
    if deliver_notifications:
        attach_delivery(market)
    return market


def attach(client: Any, market: Marketplace, faults: FaultPlan | None = None) -> None:
    """Answer every request of a boto3 mturk ``client`` with ``market`` instead of the network."""

    def answer(request: Any, **_: Any) -> AWSResponse:
        target = request.headers.get("X-Amz-Target")
        if isinstance(target, bytes):
            target = target.decode()
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        status, headers, payload = protocol.handle(market, target, body, faults)
        return AWSResponse(request.url, status, headers, _RawBody(payload))

    client.meta.events.register("before-send.mturk", answer)
    attach_delivery(market)  # no-op if the marketplace already has a deliverer
    client.meta.local_marketplace = market  # keeps it alive with the client; handy in tests


def local_client(
    db_path: str | Path,
    *,
    clock: Callable[[], datetime] | None = None,
    marketplace: Marketplace | None = None,
    faults: FaultPlan | None = None,
    **client_kwargs: Any,
) -> Any:
    """A boto3 ``mturk`` client whose requests are answered by the Marketplace in ``db_path``.

    ``client_kwargs`` go to ``boto3.client`` (e.g. ``config=``); credentials and the endpoint
    default to dummies, since nothing leaves the process. Pass ``marketplace`` to share an
    already open Marketplace instead of opening ``db_path``; ``faults`` makes a share of the
    calls throttle or fail, as MTurk sometimes does.
    """
    market = marketplace if marketplace is not None else open_marketplace(db_path, clock=clock)
    kwargs = {
        "region_name": "us-east-1",
        "endpoint_url": LOCAL_ENDPOINT,
        "aws_access_key_id": "LOCALMARKETPLACEKEY",
        "aws_secret_access_key": "local-marketplace-secret",
        **client_kwargs,
    }
    client = boto3.client("mturk", **kwargs)
    attach(client, market, faults)
    return client
