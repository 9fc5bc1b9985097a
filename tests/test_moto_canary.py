"""Canary: the moto internals that mturk_tune.marketplace.moto_backend relies on are still there.

moto has no MTurk backend; ours is plugged in through internals that may move between moto
releases (the project pins moto>=5.1.22,<5.3). If one of these tests fails after a moto
upgrade, read its message: it names the internal that moved and where the glue uses it.
"""

from __future__ import annotations

import importlib
import inspect
import re

import boto3
import pytest

moto = pytest.importorskip("moto")

from mturk_tune.marketplace import moto_backend  # noqa: E402

GLUE = "mturk_tune/marketplace/moto_backend.py"


def test_moto_version_is_in_the_supported_range():
    major, minor, patch = (int(x) for x in re.findall(r"\d+", moto.__version__)[:3])
    assert (5, 1, 22) <= (major, minor, patch) < (5, 3, 0), (
        f"moto {moto.__version__} is outside the range the MTurk glue was checked against (>=5.1.22,<5.3). "
        f"Run this file; if everything passes, widen the pin in pyproject.toml."
    )


def test_backend_url_patterns_is_a_list_of_service_and_regex():
    import moto.backend_index as index

    patterns = getattr(index, "backend_url_patterns", None)
    assert isinstance(patterns, list) and patterns, (
        "moto.backend_index.backend_url_patterns is gone or no longer a list; "
        f"{GLUE}:register() appends ('mturk', regex) to it so moto's interceptor routes MTurk hosts to us."
    )
    name, pattern = patterns[0]
    assert isinstance(name, str) and hasattr(pattern, "match"), "backend_url_patterns entries changed shape"


def test_get_backend_imports_moto_dot_service_and_reads_service_backends():
    import moto.backends as backends

    source = inspect.getsource(backends._import_backend)
    assert 'importlib.import_module("moto." + module_name)' in source, (
        "moto.backends._import_backend no longer imports 'moto.<service>'; the glue installs itself as "
        f"sys.modules['moto.mturk'] ({GLUE}:register()) and must follow the new lookup."
    )
    moto_backend.register()
    assert importlib.import_module("moto.mturk").mturk_backends is moto_backend.mturk_backends
    assert backends.get_backend("mturk") is moto_backend.mturk_backends


def test_base_response_still_offers_what_the_glue_uses():
    from moto.core.responses import BaseResponse

    params = inspect.signature(BaseResponse.setup_class).parameters
    assert "use_raw_body" in params, f"BaseResponse.setup_class lost use_raw_body; see MTurkResponse in {GLUE}"
    assert callable(getattr(BaseResponse, "dispatch", None)), "BaseResponse.dispatch (classmethod) is gone"
    for attribute in ("get_current_account", "get_region_from_url"):
        assert hasattr(BaseResponse, attribute), f"BaseResponse.{attribute} is gone; setup_class may have changed"


def test_botocore_stubber_routes_via_backend_urls():
    from moto.core import botocore_stubber

    source = inspect.getsource(botocore_stubber.BotocoreStubber.process_request)
    assert "backend_url_patterns" in source and "backend.urls" in source, (
        "moto's BotocoreStubber no longer finds handlers through backend_url_patterns and backend.urls; "
        f"MTurkBackend.urls in {GLUE} must follow."
    )


@pytest.mark.parametrize(
    "client_kwargs, sandbox",
    [
        ({"region_name": "us-east-1", "endpoint_url": "https://mturk-requester-sandbox.us-east-1.amazonaws.com"}, True),
        ({"region_name": "sandbox"}, True),  # botocore resolves this to the sandbox host
        ({"region_name": "us-east-1"}, False),  # the default endpoint is production
    ],
)
def test_mock_aws_answers_mturk_on_sandbox_and_production_hosts(client_kwargs, sandbox):
    moto_backend.register()
    moto_backend.register()  # idempotent
    with moto.mock_aws():
        client = boto3.client("mturk", **client_kwargs)
        client.create_worker_block(WorkerId="ACANARY", Reason="canary")
        assert client.get_account_balance()["AvailableBalance"] == "10000.00"
        on_host = moto_backend.backend_marketplace(sandbox=sandbox).list_worker_blocks()["WorkerBlocks"]
        elsewhere = moto_backend.backend_marketplace(sandbox=not sandbox).list_worker_blocks()["WorkerBlocks"]
        assert (len(on_host), len(elsewhere)) == (1, 0), "sandbox and production must be separate marketplaces"


def test_each_mock_starts_from_a_fresh_marketplace():
    moto_backend.register()
    with moto.mock_aws():
        boto3.client("mturk", region_name="sandbox").create_worker_block(WorkerId="AONE", Reason="x")
    with moto.mock_aws():
        assert boto3.client("mturk", region_name="sandbox").list_worker_blocks()["WorkerBlocks"] == []


def test_moto_server_mode_serves_mturk():
    server_module = pytest.importorskip("moto.server")
    moto_backend.register()
    server = server_module.ThreadedMotoServer(port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("mturk", region_name="us-east-1", endpoint_url=f"http://{host}:{port}",
                              aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="secret")
        assert client.get_account_balance()["AvailableBalance"] == "10000.00"
    finally:
        server.stop()
