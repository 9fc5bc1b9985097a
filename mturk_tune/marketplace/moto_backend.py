"""The marketplace as moto's ``mturk`` backend, so ``moto.mock_aws()`` answers boto3 MTurk calls.

moto (5.1.22 - 5.2.x) ships no MTurk backend; inside ``mock_aws`` an MTurk call gets
``404 Not yet implemented``. ``register()`` plugs one in through three moto internals
(tests/test_moto_canary.py fails loudly if any of them moves):

1. ``moto.backend_index.backend_url_patterns``: the (service, host regex) list moto's request
   interceptor walks to find the service of a request URL;
2. ``moto.backends.get_backend("mturk")`` imports ``moto.mturk`` and reads ``mturk_backends``,
   so this module is installed in ``sys.modules`` under that name;
3. a ``BackendDict`` of a ``BaseBackend`` whose ``urls`` map request URLs to a ``BaseResponse``.

The glue is thin on purpose: requests go to ``protocol.handle`` on a ``Marketplace``, the same
path every other transport takes. Sandbox and production hosts are separate marketplaces,
as they are on MTurk (a HIT published to the sandbox is not in production). Notification
messages go to moto's SQS (or SNS) in the same mock, through a boto3 client.
"""

from __future__ import annotations

import re
import sys
from typing import Any
from urllib.parse import urlparse

from . import protocol
from .delivery import attach_delivery
from .service import Marketplace

SERVICE_NAME = "mturk"
MODULE_ALIAS = "moto.mturk"
DEFAULT_ACCOUNT_ID = "123456789012"
# Sandbox: mturk-requester-sandbox.us-east-1.amazonaws.com; production: mturk-requester.us-east-1.amazonaws.com
URL_BASE = r"https?://mturk-requester(?:-sandbox)?\.(.+)\.amazonaws\.com"
URL_PATTERN = re.compile(URL_BASE)

try:
    import moto.backend_index as _backend_index
    from moto.core.base_backend import BackendDict, BaseBackend
    from moto.core.responses import BaseResponse
except ImportError as exc:  # pragma: no cover - moto is a test dependency
    raise ImportError("mturk_tune.marketplace.moto_backend needs moto>=5.1.22,<5.3 (pip install 'moto[server]').") \
        from exc


class MTurkResponse(BaseResponse):
    """Hands each intercepted request to the wire protocol of the right marketplace."""

    def __init__(self) -> None:
        super().__init__(service_name=SERVICE_NAME)

    def _dispatch(self, request: Any, full_url: str, headers: Any) -> tuple[int, dict, bytes]:
        # setup_class resolves the account (from the access key or MOTO_ACCOUNT_ID) and region.
        self.setup_class(request, full_url, headers, use_raw_body=True)
        backend = mturk_backends[self.current_account][self.region]
        target = self.headers.get("X-Amz-Target") or self.headers.get("x-amz-target")
        return protocol.handle(backend.marketplace_for(full_url), target, self.raw_body)


class MTurkBackend(BaseBackend):
    """One MTurk account in one region: a sandbox and a production marketplace, in memory."""

    def __init__(self, region_name: str, account_id: str):
        super().__init__(region_name, account_id)
        self._markets: dict[str, Marketplace] = {}

    def marketplace(self, sandbox: bool = True) -> Marketplace:
        key = "sandbox" if sandbox else "production"
        if key not in self._markets:
            market = Marketplace(":memory:", account_id=self.account_id)
            # Notifications go to moto's own SQS/SNS: boto3 calls made inside mock_aws are mocked too.
            attach_delivery(market)
            self._markets[key] = market
        return self._markets[key]

    def marketplace_for(self, url: str) -> Marketplace:
        return self.marketplace(sandbox="-sandbox." in (urlparse(url).netloc or url))

    # moto derives these from a sibling "urls" module by default; this backend has none.
    @property
    def url_bases(self) -> list[str]:  # type: ignore[override]
        return [URL_BASE]

    @property
    def url_paths(self) -> dict[str, Any]:  # type: ignore[override]
        return {"/$": MTurkResponse.dispatch}

    @property
    def urls(self) -> dict[str, Any]:  # type: ignore[override]
        return {URL_BASE + "/$": MTurkResponse.dispatch}


mturk_backends: BackendDict = BackendDict(MTurkBackend, SERVICE_NAME)


def register() -> None:
    """Make ``moto.mock_aws()`` (and moto's server mode) answer MTurk requests. Idempotent."""
    if not any(name == SERVICE_NAME for name, _ in _backend_index.backend_url_patterns):
        _backend_index.backend_url_patterns.append((SERVICE_NAME, URL_PATTERN))
    sys.modules.setdefault(MODULE_ALIAS, sys.modules[__name__])


def backend_marketplace(account_id: str = DEFAULT_ACCOUNT_ID, region: str = "us-east-1",
                        sandbox: bool = True) -> Marketplace:
    """The Marketplace behind ``mock_aws`` for an account and region (sandbox host by default).

    Use it in tests to act as workers (``accept_hit``/``submit_assignment``) or to set ``clock``.
    It is replaced by a fresh one whenever moto resets its backends (each ``mock_aws`` start).
    """
    return mturk_backends[account_id][region].marketplace(sandbox=sandbox)
