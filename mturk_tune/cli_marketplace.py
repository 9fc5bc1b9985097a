"""`mturk-tune marketplace ...`: serve the embedded marketplace to people over HTTP, invite workers.

Thin over ``marketplace/server.py``: the requester API there is MTurk's (boto3 with
``endpoint_url`` works unchanged, SigV4-signed with a key made here), and people work through
the worker pages after opening an invite link.
"""

from __future__ import annotations

from pathlib import Path

import click

from .errors import ConfigError

DB_HELP = "Marketplace database (default: the workspace's marketplace.db, the one --endpoint local uses)."


def _database(ctx: click.Context, db: Path | None) -> tuple[Path, str]:
    """The marketplace file, and how to name it again in the commands printed for the person."""
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        return db, f"--db {db}"
    from .workspace import open_workspace

    ws = open_workspace(ctx.obj["workspace_dir"])
    return ws.marketplace_db, f"-w {ws.root}"


@click.group("marketplace")
def marketplace() -> None:
    """Serve the embedded MTurk-compatible marketplace to people over HTTP.

    'serve' answers the requester API (publish/collect with --endpoint URL) and shows invited
    workers their HITs; 'invite' makes the link a worker opens to join.

    \b
    Example:
      mturk-tune -w my-run marketplace serve --port 8765
      mturk-tune -w my-run marketplace invite AALICE
    """


@marketplace.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 lets other machines in: put it behind HTTPS).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), help=DB_HELP)
@click.option("--public-url", help="URL people reach the server at, if behind a proxy or tunnel (https://...).")
@click.option("--new-key", is_flag=True, help="Make another requester key pair (its secret is shown once).")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, db: Path | None, public_url: str | None, new_key: bool) -> None:
    """Serve the requester API and the workers' pages until Ctrl-C.

    Prints the endpoint URL and, the first time (or with --new-key), a requester key pair to
    export: the server accepts only requests signed with a key it made, and shows each secret
    once. State lives in the database, so a restarted server continues where it stopped.

    \b
    Example:
      mturk-tune -w my-run marketplace serve --port 8765
      export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...   # as printed
      mturk-tune -w my-run publish --endpoint http://127.0.0.1:8765
    """
    from .marketplace.server import ensure_requester_key, make_server, remember_server_url, serve_until_interrupted

    path, where = _database(ctx, db)
    try:
        server = make_server(path, host, port, credentials={}, public_url=public_url)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): pass another --port (0 picks a free one)"
        ) from None
    keys, created = ensure_requester_key(path, new=new_key)
    server.credentials.update(server.market.requester_keys())
    remember_server_url(path, server.url)

    click.echo(f"marketplace database  {path}")
    click.echo(f"requester endpoint    {server.url}   (boto3 endpoint_url, or --endpoint for mturk-tune)")
    if created is not None:
        click.echo("new requester key: export these before publishing (the secret is not shown again):")
        click.echo(f"  export AWS_ACCESS_KEY_ID={created[0]}")
        click.echo(f"  export AWS_SECRET_ACCESS_KEY={created[1]}")
    else:
        click.echo(f"requester keys        {', '.join(keys)}   (secrets were shown when made; --new-key makes another)")
    click.echo(f"publish to it         mturk-tune {where} publish --endpoint {server.url}")
    click.echo(f"invite a worker       mturk-tune {where} marketplace invite AWORKERID")
    click.echo(f"serving the marketplace on {server.url} (Ctrl-C stops)")
    serve_until_interrupted(server)


@marketplace.command()
@click.argument("worker_id")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), help=DB_HELP)
@click.option("--url", "base_url",
              help="Server URL the link points at (default: where 'serve' last ran, else http://127.0.0.1:8765).")
@click.option("--country", default="US", show_default=True,
              help="The worker's country, for HITs that require a Locale.")
@click.pass_context
def invite(ctx: click.Context, worker_id: str, db: Path | None, base_url: str | None, country: str) -> None:
    """Print an invite link; the worker who opens it can accept and submit HITs.

    WORKER_ID looks like MTurk's: 'A' and then upper-case letters or digits. Every call makes a
    new link; earlier links stay valid. Only invited workers can work: nobody submits anonymously.

    \b
    Example:
      mturk-tune -w my-run marketplace invite AALICE
    """
    from .marketplace.errors import MTurkError
    from .marketplace.server import create_invite, invite_link, server_url

    path, _ = _database(ctx, db)
    try:
        token = create_invite(path, worker_id, country=country)
    except MTurkError:
        suggestion = "A" + "".join(c for c in worker_id.upper() if c.isalnum())[:63]
        raise ConfigError(
            f"worker id {worker_id!r} is not valid: use 'A' then upper-case letters or digits, e.g. {suggestion}"
        ) from None
    link = invite_link(base_url or server_url(path), token)
    click.echo(f"invite for {worker_id}: {link}")


# Every click command in this list is added to the main group.
COMMANDS: list[click.Command] = [marketplace]
