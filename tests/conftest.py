"""Shared fixtures: the built-in tiny model, a workspace, and MTurk served by moto."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch real AWS: moto intercepts the calls, but botocore still wants credentials.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    import torch

    # CI has two cores and other work on them: one thread avoids oversubscription.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The built-in offline model, built once per cache (shared with the demo)."""
    from mturk_tune.models import builtin_model_path

    return builtin_model_path()


@pytest.fixture
def workspace(tmp_path, tiny_model_dir):
    """A fresh workspace on the built-in model whose default endpoint is the embedded marketplace."""
    from mturk_tune.workspace import init_workspace

    ws = init_workspace(tmp_path / "ws", model="builtin:tiny", settings={"publish": {"endpoint": "local"}})
    yield ws
    ws.store.close()


@pytest.fixture
def mock_mturk():
    """moto's mock_aws with the embedded marketplace registered as its MTurk backend."""
    from moto import mock_aws

    from mturk_tune.marketplace.moto_backend import register

    register()
    with mock_aws():
        yield
