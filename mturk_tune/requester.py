"""A boto3 `mturk` client for an endpoint name, with the production guard in one place.

Endpoints: `sandbox` (the default), `production` (real money: refused unless the caller passes
production=True), `local` (the embedded marketplace in the workspace, served in-process), or the
URL of a marketplace server (`mturk-tune marketplace serve`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig

from .errors import SafetyError

SANDBOX_URL = "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
PRODUCTION_URL = "https://mturk-requester.us-east-1.amazonaws.com"


@dataclass(frozen=True)
class Endpoint:
    """Where requester calls go. `label` is what the store records for each HIT."""

    label: str
    url: str | None
    is_production: bool = False

    @property
    def is_local(self) -> bool:
        return self.label == "local"


def resolve_endpoint(name: str, production: bool = False) -> Endpoint:
    """Refuses production unless `production` is True, before any client or call exists."""
    if name == "sandbox":
        return Endpoint("sandbox", SANDBOX_URL)
    if name == "production":
        if not production:
            raise SafetyError(
                "--endpoint production spends real money: add --production to confirm (and set --max-cost)"
            )
        return Endpoint("production", PRODUCTION_URL, is_production=True)
    if name == "local":
        return Endpoint("local", None)
    if name.startswith(("http://", "https://")):
        return Endpoint(name.rstrip("/"), name.rstrip("/"))
    raise SafetyError(f"unknown endpoint {name!r}: use sandbox, production, local or an http(s) URL")


def retry_config(max_attempts: int = 8) -> BotoConfig:
    # 'standard' mode retries throttling and transient errors with exponential backoff and jitter.
    return BotoConfig(retries={"max_attempts": max_attempts, "mode": "standard"}, max_pool_connections=64)


def make_client(endpoint: Endpoint, region: str = "us-east-1", marketplace_db: Path | None = None, max_attempts: int = 8):
    """A real boto3 client. Credentials come from the usual AWS chain (env, profile), never from config files."""
    if endpoint.is_local:
        from .marketplace.local import local_client

        if marketplace_db is None:
            raise SafetyError("the local endpoint needs a workspace (its marketplace lives in the workspace)")
        return local_client(marketplace_db, config=retry_config(max_attempts))
    return boto3.client("mturk", region_name=region, endpoint_url=endpoint.url, config=retry_config(max_attempts))
