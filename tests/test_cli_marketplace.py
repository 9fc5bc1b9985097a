"""`mturk-tune marketplace serve|invite`: a person serves the marketplace, publishes to it, invites workers."""

from __future__ import annotations

import inspect
import os
import re
import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from http.cookiejar import CookieJar

import boto3
import pytest
from click.testing import CliRunner

from mturk_tune.cli import cli
from mturk_tune.marketplace.server import run_in_thread
from mturk_tune.workspace import init_workspace


@pytest.fixture
def ws(tmp_path):
    """A workspace with six texts written straight into its store (no model needed)."""
    ws = init_workspace(tmp_path / "ws", model="builtin:tiny")
    items = [{"id": f"i{k}", "prompt_id": f"p{k}", "prompt": "Say hi.", "text": f"hello {k}", "model": "builtin:tiny"}
             for k in range(6)]
    ws.store.add_batch("b1", 0, "builtin:tiny", {}, items)
    yield ws
    ws.store.close()


def run(*args: str, env: dict | None = None):
    boto3.DEFAULT_SESSION = None  # a fresh process would read the credentials in env; boto3 caches them per session
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def open_with_cookies(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    with opener.open(url) as response:
        return response.status, response.read().decode()


def start_serving(ws_root, *extra: str) -> tuple[subprocess.Popen, list[str]]:
    """`mturk-tune -w WS marketplace serve --port 0` in a process; returns it and what it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mturk_tune.cli", "-w", str(ws_root), "marketplace", "serve", "--port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in process.stdout], daemon=True).start()
    printed: list[str] = []
    try:
        while not printed or not printed[-1].startswith("serving the marketplace on "):
            printed.append(lines.get(timeout=60))
    except queue.Empty:
        process.kill()
        raise AssertionError("serve did not start:\n" + "\n".join(printed)) from None
    return process, printed


def stop_serving(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)  # Ctrl-C
    assert process.wait(timeout=10) == 0


def test_every_marketplace_command_has_help_ending_in_an_example():
    group = cli.commands["marketplace"]
    for command in [group, *group.commands.values()]:
        last_paragraph = inspect.cleandoc(command.help).split("\n\n")[-1]
        assert last_paragraph.startswith("\b\nExample:\n  mturk-tune "), command.name
    for args in (["marketplace"], ["marketplace", "serve"], ["marketplace", "invite"]):
        result = run(*args, "-h")
        assert result.exit_code == 0 and re.search(r"Example:\n\s+mturk-tune .+\n", result.output)


def test_serve_prints_a_key_once_and_publish_reaches_it_with_that_key(ws):
    process, lines = start_serving(ws.root)
    try:
        text = "\n".join(lines)
        url = re.search(r"serving the marketplace on (\S+)", text).group(1)
        key = re.search(r"export AWS_ACCESS_KEY_ID=(\S+)", text).group(1)
        secret = re.search(r"export AWS_SECRET_ACCESS_KEY=(\S+)", text).group(1)
        assert f"publish --endpoint {url}" in text

        published = run("-w", str(ws.root), "publish", "--endpoint", url, "--items-per-hit", "3",
                        env={"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret})
        assert published.exit_code == 0, published.output
        assert "published 2 HITs" in published.output
        refused = run("-w", str(ws.root), "collect", "--endpoint", url,
                      env={"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": "not-the-secret"})
        assert refused.exit_code == 1 and "InvalidSignatureException" in refused.output
    finally:
        stop_serving(process)

    process, lines = start_serving(ws.root)  # a restart: same key, secret not shown again, HITs still there
    try:
        text = "\n".join(lines)
        assert secret not in text and "AWS_SECRET_ACCESS_KEY" not in text and key in text
        url = re.search(r"serving the marketplace on (\S+)", text).group(1)
        client = boto3.client("mturk", region_name="us-east-1", endpoint_url=url,
                              aws_access_key_id=key, aws_secret_access_key=secret)
        assert {h["HITId"] for h in client.list_hits()["HITs"]} == {row["hit_id"] for row in ws.store.hits()}

        invited = run("-w", str(ws.root), "marketplace", "invite", "AALICE")
        link = re.search(r"invite for AALICE: (\S+)", invited.output).group(1)
        assert link.startswith(url + "/join?token=")  # built on the URL the server runs at
        status, page = open_with_cookies(link)
        assert status == 200 and "Worker AALICE" in page and "Rate short texts" in page
    finally:
        stop_serving(process)


def test_invite_links_work_only_with_their_token(ws):
    url, stop = run_in_thread(ws.marketplace_db, credentials={})
    try:
        result = run("-w", str(ws.root), "marketplace", "invite", "ABOB", "--url", url)
        assert result.exit_code == 0
        link = result.output.split(": ", 1)[1].strip()
        status, page = open_with_cookies(link)
        assert status == 200 and "Worker ABOB" in page
        with pytest.raises(urllib.error.HTTPError) as refused:
            open_with_cookies(link[:-3] + "xyz")
        assert refused.value.code == 403
    finally:
        stop()


def test_bad_worker_ids_and_missing_workspaces_are_one_line_errors(tmp_path, ws):
    result = run("-w", str(ws.root), "marketplace", "invite", "bob")
    assert result.exit_code == 2 and "e.g. ABOB" in result.output and len(result.output.strip().splitlines()) == 1
    result = run("-w", str(tmp_path / "nowhere"), "marketplace", "invite", "ABOB")
    assert result.exit_code == 2 and "not a workspace" in result.output
    result = run("marketplace", "invite", "ABOB", "--db", str(tmp_path / "elsewhere" / "m.db"), "--url", "http://h:1")
    assert result.exit_code == 0 and "http://h:1/join?token=" in result.output


def test_a_busy_port_is_a_one_line_error(ws):
    url, stop = run_in_thread(ws.marketplace_db, credentials={})
    try:
        port = url.rsplit(":", 1)[1]
        result = run("-w", str(ws.root), "marketplace", "serve", "--port", port)
        assert result.exit_code == 2 and "pass another --port" in result.output
        assert "AWS_SECRET_ACCESS_KEY" not in result.output  # no key was made for a server that never ran
    finally:
        stop()
