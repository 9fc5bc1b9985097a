"""Sending the marketplace's notification messages to SQS queues (and SNS topics), at least once.

MTurk delivered event notifications to the requester's SQS queue or SNS topic "at least once":
a message could arrive twice, or out of order, and receivers de-duplicate on ``EventDocId``.
The Marketplace only queues messages in its SQLite outbox; a ``NotificationDelivery`` sends
them with boto3 and removes a message from the outbox only after ``send_message`` (or
``publish``) succeeded, so a crash or an unreachable queue delays a message but never loses it.

How each transport delivers:

- moto (``moto_backend``): synchronously after each state change, with boto3 clients that
  moto's ``mock_aws`` answers, so events land in moto's SQS in the same mock;
- ``local`` (``local.py``): synchronously after each state change, to the real queue URL (or
  any SQS-compatible endpoint named by the URL);
- HTTP server (``server.py``): a background thread woken after each state change and every
  ``interval_s`` (which also picks up messages queued by other processes on the same file).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .service import Marketplace

log = logging.getLogger(__name__)

# https://sqs.us-east-1.amazonaws.com/123456789012/name (also the legacy us-east-1.queue.amazonaws.com)
_AWS_SQS_HOST = re.compile(r"^(?:sqs\.(?P<region>[a-z0-9-]+)|(?P<legacy>[a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$")
# arn:aws:sns:us-east-1:123456789012:topic
_SNS_ARN = re.compile(r"^arn:aws[a-z-]*:sns:(?P<region>[a-z0-9-]+):\d{12}:[\w-]+$")
RETRY_AFTER_S = 5.0  # a failed send waits this long before the next try (per message)

Sender = Callable[[str, str, str], None]  # (transport, destination, message body); raises on failure


class Undeliverable(Exception):
    """A message that can never be delivered (e.g. Transport Email): it is given up, not retried."""


@dataclass(frozen=True)
class DeliveryReport:
    sent: int
    failed: int
    given_up: int


def _client_config():
    from botocore.config import Config

    # Short timeouts and one retry: an unreachable queue must not stall the marketplace call
    # that triggered delivery; the message stays queued and is tried again later.
    return Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})


def sqs_client_for(queue_url: str, **client_kwargs: Any) -> Any:
    """A boto3 SQS client that reaches the queue at ``queue_url``.

    AWS queue URLs (``https://sqs.<region>.amazonaws.com/<account>/<name>``) get a client for that
    region; any other URL (ElasticMQ, LocalStack, moto's server) is used as the endpoint itself.
    Credentials come from the usual AWS chain unless given in ``client_kwargs``.
    """
    import boto3

    parts = urlsplit(queue_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{queue_url!r} is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)")
    match = _AWS_SQS_HOST.match(parts.hostname or "")
    kwargs = {
        "region_name": (match["region"] or match["legacy"]) if match else "us-east-1",
        "endpoint_url": None if match else f"{parts.scheme}://{parts.netloc}",
        "config": _client_config(),
        **client_kwargs,
    }
    return boto3.client("sqs", **kwargs)


class Boto3Sender:
    """Delivers one message the way MTurk did: SQS SendMessage or SNS Publish.

    Clients are made on first use and kept per destination host, by this sender only (a client
    made outside a moto mock would not be mocked, so none is shared across marketplaces).
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _client(self, service: str, destination: str) -> Any:
        key = (service, urlsplit(destination).netloc if service == "sqs" else destination.split(":")[3])
        with self._lock:
            if key not in self._clients:
                if service == "sqs":
                    self._clients[key] = sqs_client_for(destination)
                else:
                    import boto3

                    self._clients[key] = boto3.client("sns", region_name=key[1], config=_client_config())
            return self._clients[key]

    def __call__(self, transport: str, destination: str, body: str) -> None:
        if transport == "SQS":
            self._client("sqs", destination).send_message(QueueUrl=destination, MessageBody=body)
        elif transport == "SNS":
            if _SNS_ARN.match(destination) is None:
                raise Undeliverable(f"{destination!r} is not an SNS topic ARN")
            self._client("sns", destination).publish(TopicArn=destination, Message=body)
        else:
            raise Undeliverable(f"the embedded marketplace cannot send {transport} notifications; use SQS or SNS")


class NotificationDelivery:
    """Empties a Marketplace's notification outbox through ``send`` (boto3 by default).

    ``deliver()`` sends everything pending now, oldest first, and returns what happened. A
    message is marked delivered only after ``send`` returned; a failed one stays queued and is
    retried after ``retry_after_s`` (the next ``deliver()`` after that). Safe to call from several
    threads: one delivers, the others ask it to go round once more.
    """

    def __init__(self, market: Marketplace, send: Sender | None = None,
                 retry_after_s: float = RETRY_AFTER_S, batch: int = 100):
        self.market = market
        self.send = send if send is not None else Boto3Sender()
        self.retry_after_s = retry_after_s
        self.batch = batch
        self._lock = threading.Lock()
        self._again = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- synchronous ----------------------------------------------------------------------

    def deliver(self) -> DeliveryReport:
        totals = [0, 0, 0]
        while True:
            if not self._lock.acquire(blocking=False):
                self._again = True  # the thread delivering now goes round once more
                break
            try:
                self._again = False
                for i, n in enumerate(self._deliver_pending()):
                    totals[i] += n
            finally:
                self._lock.release()
            if not self._again:  # asked again while this round ran (a message queued meanwhile)
                break
        return DeliveryReport(*totals)

    def _deliver_pending(self) -> tuple[int, int, int]:
        sent = failed = given_up = 0
        while True:
            messages = self.market.claim_notifications(limit=self.batch)
            if not messages:
                return sent, failed, given_up
            for message in messages:
                try:
                    self.send(message["Transport"], message["Destination"], message["Message"])
                except Undeliverable as exc:
                    self.market.notification_failed(message["Seq"], str(exc), give_up=True)
                    given_up += 1
                except Exception as exc:  # noqa: BLE001 - any failure leaves the message queued
                    log.warning("notification to %s not delivered (will retry): %s", message["Destination"], exc)
                    self.market.notification_failed(message["Seq"], f"{type(exc).__name__}: {exc}",
                                                    retry_after_s=self.retry_after_s)
                    failed += 1
                else:
                    self.market.notification_delivered(message["Seq"])
                    sent += 1
            if len(messages) < self.batch or failed:  # after a failure, wait for the next round
                return sent, failed, given_up

    def attach(self) -> NotificationDelivery:
        """Deliver synchronously right after every transaction that queued a message."""
        self.market.on_notification = self.deliver
        return self

    # -- background thread (the HTTP server) ----------------------------------------------

    def start(self, interval_s: float = 1.0) -> NotificationDelivery:
        """Deliver from a daemon thread: woken by every queued message, and every ``interval_s``
        (which retries failures and picks up messages other processes queued on the same file)."""
        if self._thread is not None:
            return self
        self.market.on_notification = self._wake.set
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.deliver()
                except Exception:  # noqa: BLE001 - the marketplace closing under us, say; try again
                    log.exception("notification delivery failed")
                self._wake.wait(interval_s)
                self._wake.clear()

        self._thread = threading.Thread(target=loop, name="notification-delivery", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; whatever is still queued waits in the outbox for the next deliverer."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None
        if self.market.on_notification == self._wake.set:
            self.market.on_notification = None


def attach_delivery(market: Marketplace, send: Sender | None = None
                    ) -> NotificationDelivery:
    """Synchronous at-least-once delivery for ``market`` (idempotent: one deliverer per marketplace)."""
    existing = getattr(market, "delivery", None)
    if isinstance(existing, NotificationDelivery):
        return existing
    delivery = NotificationDelivery(market, send).attach()
    market.delivery = delivery  # type: ignore[attr-defined]
    return delivery
