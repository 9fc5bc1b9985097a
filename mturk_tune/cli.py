"""The `mturk-tune` command line: thin commands over the library.

Each command reads options, opens the workspace, calls one library function and prints what
happened. Errors a user can fix (MturkTuneError) print one line and exit with code 2.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from . import __version__
from .aggregation import METHODS
from .tuning import SCHEMES
from .config import replace
from .errors import MturkTuneError
from .workspace import Workspace, init_workspace, open_workspace

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class UserError(click.ClickException):
    """One line, no traceback, exit code 2: the input, config or state needs fixing."""

    exit_code = 2


class RemoteError(click.ClickException):
    """The marketplace could not be reached or refused a call."""

    exit_code = 1


def _remote_message(exc: Exception, endpoint: str | None) -> str:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile (or use --endpoint local)"
    if isinstance(exc, EndpointConnectionError):
        return (
            f"could not reach {exc.kwargs.get('endpoint_url', endpoint)}: MTurk closed on 2026-09-30; "
            "use --endpoint local or the URL of 'mturk-tune marketplace serve'"
        )
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("TurkErrorCode") or err.get("Code", "")
        from .requester import describe_remote_error

        message = f"marketplace refused {exc.operation_name}: {code}: {err.get('Message', '')}".strip()
        extra = describe_remote_error(exc)
        return f"{message} ({extra})" if extra else message
    return f"{type(exc).__name__}: {exc}"


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return super().invoke(ctx)
        except MturkTuneError as exc:
            raise UserError(str(exc)) from None
        except (BotoCoreError, ClientError) as exc:
            raise RemoteError(_remote_message(exc, None)) from None


@click.group(cls=Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="mturk-tune")
@click.option(
    "-w", "--workspace", "workspace_dir", type=click.Path(file_okay=False, path_type=Path), default=".",
    envvar="MTURK_TUNE_WORKSPACE", show_default=True, help="Workspace folder (made by 'init').",
)
@click.pass_context
def cli(ctx: click.Context, workspace_dir: Path) -> None:
    """Improve a language model with human ratings collected through the MTurk API.

    One round: generate -> publish -> collect -> aggregate -> tune, each a command below,
    all reading and writing the workspace's state store. Start with 'mturk-tune demo'.
    """
    ctx.obj = {"workspace_dir": workspace_dir}


def _workspace(ctx: click.Context) -> Workspace:
    ws = open_workspace(ctx.obj["workspace_dir"])
    ctx.call_on_close(ws.store.close)
    return ws


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr that appears with the first unit of work, so that an early error
    (a missing model, a refused call) stays the only line printed."""
    state: dict[str, Any] = {}

    def update(n: int) -> None:
        if "bar" not in state:
            state["bar"] = click.progressbar(length=max(total, 1), label=label, file=sys.stderr, show_pos=True)
            state["bar"].__enter__()
        state["bar"].update(n)

    try:
        yield update
    finally:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)


# -- init / status -----------------------------------------------------------------------------


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", help="Model of round 0 (default from config: gpt2). builtin:tiny works offline.")
@click.option("--endpoint", help="Default endpoint written to the config: sandbox, local, production or a URL.")
@click.pass_context
def init(ctx: click.Context, directory: Path | None, model: str | None, endpoint: str | None) -> None:
    """Create a workspace: a documented config (mturk-tune.toml) and the state store.

    \b
    Example:
      mturk-tune init my-run --model builtin:tiny --endpoint local
    """
    root = directory or ctx.obj["workspace_dir"]
    settings = {"publish": {"endpoint": endpoint}} if endpoint else None
    ws = init_workspace(root, model=model, settings=settings)
    ws.store.close()
    click.echo(f"workspace ready in {ws.root}: edit {ws.config_path.name}, then 'mturk-tune -w {ws.root} generate PROMPTS'")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--round", "round_", type=int,
              help="Trace one round: batches, HITs, assignments, ratings, workers, metrics, checkpoint.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, round_: int | None) -> None:
    """Counts per round: batches, items, HITs, assignments, ratings, scores, checkpoints.

    \b
    Examples:
      mturk-tune -w my-run status --json
      mturk-tune -w my-run status --round 0
    """
    ws = _workspace(ctx)
    if round_ is not None:
        from .loop import format_trace, round_trace

        trace = round_trace(ws.store, round_)
        if as_json:
            click.echo(json.dumps(trace, indent=2, default=str))
        else:
            for line in format_trace(trace):
                click.echo(line)
        return
    rows = [vars(c) for c in ws.store.counts()]
    if as_json:
        click.echo(json.dumps({"workspace": str(ws.root), "rounds": rows}, indent=2))
        return
    headers = ["round", "batches", "items", "hits", "assignments", "ratings", "scores", "checkpoints", "model"]
    _print_table(headers, [[r[h] for h in headers] for r in rows])


def _print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)))


# -- generate ----------------------------------------------------------------------------------


@cli.command()
@click.argument("prompts", type=click.Path(path_type=Path))
@click.option("--model", help="Hub name, local path or builtin:tiny (default: the round's model).")
@click.option("-n", "--samples", "samples_per_prompt", type=click.IntRange(min=1), help="Samples per prompt.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), help="Longest completion in tokens.")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Prompts sampled together.")
@click.pass_context
def generate(ctx: click.Context, prompts: Path, model: str | None, **options: Any) -> None:
    """Sample texts for each prompt (JSONL or CSV) into a new batch of the current round.

    \b
    Example:
      mturk-tune generate prompts.jsonl --model gpt2 -n 4 --max-new-tokens 40 --seed 1
    """
    from .generating import generate_batch
    from .prompts import read_prompts

    ws = _workspace(ctx)
    settings = replace(ws.config, "generate", **options).generate
    prompt_list = read_prompts(prompts)
    with progress_bar(len(prompt_list) * settings.samples_per_prompt, "generating") as update:
        result = generate_batch(ws.store, prompt_list, settings, model=model, progress=update)
    click.echo(f"batch {result.batch_id}: {result.items} texts from {result.model} (round {result.round})")


# -- publish / collect -------------------------------------------------------------------------


def endpoint_options(fn: Callable) -> Callable:
    fn = click.option(
        "--production", is_flag=True, help="Confirm that --endpoint production may spend real money."
    )(fn)
    fn = click.option(
        "--endpoint",
        help="sandbox (default), local (embedded marketplace), production, or a marketplace URL.",
    )(fn)
    return fn


def resolve_label(ws: Workspace, endpoint_name: str | None) -> str:
    """The store's label of an endpoint, without creating a client (dry runs call nothing)."""
    from .requester import resolve_endpoint

    return resolve_endpoint(endpoint_name or ws.config.publish.endpoint, production=True).label


def _client(ws: Workspace, endpoint_name: str | None, production: bool):
    from .requester import check_reachable, make_client, resolve_endpoint

    endpoint = resolve_endpoint(endpoint_name or ws.config.publish.endpoint, production=production)
    check_reachable(endpoint, region=ws.config.publish.region)
    client = make_client(endpoint, region=ws.config.publish.region, marketplace_db=ws.marketplace_db)
    return endpoint, client


@cli.command()
@endpoint_options
@click.option("--batch", "batch_id", help="Batch to publish (default: the latest of the current round).")
@click.option("--items-per-hit", type=click.IntRange(min=1), help="Texts per HIT.")
@click.option("--assignments", type=click.IntRange(min=1), help="Workers per HIT.")
@click.option("--reward", help="Dollars per assignment, e.g. 0.05.")
@click.option("--lifetime", type=click.IntRange(min=60), help="Seconds the HITs stay available.")
@click.option("--max-cost", help="Hard cap in dollars, rewards plus fees.")
@click.option("--concurrency", type=click.IntRange(min=1, max=64), help="API calls in flight at once.")
@click.option("--gold", "gold_file", help="JSONL of gold items with known ratings to mix into HITs.")
@click.option("--gold-rate", type=click.FloatRange(0, 1, max_open=True), help="Share of each HIT given to gold items.")
@click.option("--notify", "notify_queue", metavar="QUEUE_URL",
              help="Send each submitted assignment's notification to this SQS queue (read by 'collect --from-queue').")
@click.option("--yes", is_flag=True, help="Skip the typed confirmation for production (scripts).")
@click.pass_context
def publish(ctx: click.Context, endpoint: str | None, production: bool, batch_id: str | None, notify_queue: str | None,
            yes: bool, **options: Any) -> None:
    """Turn a batch into HITs (sandbox by default; production only with --production).

    \b
    Example:
      mturk-tune publish --endpoint local --items-per-hit 5 --assignments 3 --reward 0.05
    """
    from .money import format_dollars
    from .publishing import check_budget, plan_publish, read_gold
    from .publishing import publish as publish_plan

    ws = _workspace(ctx)
    settings = replace(ws.config, "publish", **options).publish
    # --gold is a path as typed (from the current folder); the config's gold_file is relative to the workspace.
    gold_path = Path(options["gold_file"]) if options.get("gold_file") else ws.root / settings.gold_file
    gold = read_gold(gold_path) if settings.gold_file and settings.gold_rate > 0 else None
    ep, client = _client(ws, endpoint, production)
    plan = plan_publish(ws.store, ep, settings, batch_id, gold=gold)
    if plan.hit_count == 0:
        click.echo(f"batch {plan.batch_id} is fully published; nothing to do")
        return
    click.echo(
        f"{plan.hit_count} HITs x {plan.assignments} assignments at ${format_dollars(plan.reward)} on {ep.label}: "
        f"estimated ${format_dollars(plan.cost)} with MTurk fees (cap ${settings.max_cost})"
    )
    check_budget(plan, settings.max_cost)
    if ep.is_production:
        _confirm_production(client, plan.cost, yes)
    if notify_queue:
        from .notifications import subscribe
        from .publishing import hit_type_params

        # Subscribed before any HIT exists, so no submission goes unannounced. Identical
        # parameters give the identical HIT type, so this is the type publish uses.
        hit_type_id = client.create_hit_type(**hit_type_params(settings, ws.store, ep))["HITTypeId"]
        subscribe(client, hit_type_id, notify_queue)
        click.echo(f"notifications of HIT type {hit_type_id} go to {notify_queue}")
    with progress_bar(plan.hit_count, "publishing") as update:
        result = publish_plan(ws.store, client, ep, settings, plan, progress=update)
    click.echo(
        f"published {result.created} HITs (type {result.hit_type_id}; {result.recovered} recovered from an earlier run)"
    )


def _confirm_production(client, cost, yes: bool) -> None:
    from decimal import Decimal

    from .errors import SafetyError

    balance = Decimal(client.get_account_balance()["AvailableBalance"])
    if balance < cost:
        raise SafetyError(f"production balance ${balance} is below the estimated cost ${cost}: add funds or publish less")
    if yes:
        return
    if not sys.stdin.isatty():
        raise SafetyError("production needs a typed confirmation: run interactively or pass --yes")
    typed = click.prompt(f"This spends up to ${cost} of real money. Type 'production' to continue", default="")
    if typed.strip() != "production":
        raise SafetyError("not confirmed; nothing was published")


@cli.command()
@endpoint_options
@click.option("--round", "round_", type=int, help="Only HITs of this round (default: all).")
@click.option("--concurrency", type=click.IntRange(min=1, max=64), help="API calls in flight at once.")
@click.option("--from-queue", "queue_url", metavar="QUEUE_URL",
              help="Read submissions from this SQS queue's notifications instead of listing every HIT.")
@click.option("--wait", "wait_seconds", type=click.IntRange(0, 20), default=2, show_default=True,
              help="With --from-queue: seconds to wait for a message before taking the queue as empty.")
@click.pass_context
def collect(ctx: click.Context, endpoint: str | None, production: bool, round_: int | None, concurrency: int | None,
            queue_url: str | None, wait_seconds: int) -> None:
    """Fetch every submitted assignment, store its raw answer, parse its ratings. Safe to re-run.

    With --from-queue, only the assignments named by notifications in the queue are fetched
    (publish with --notify QUEUE_URL); repeated or late notifications store nothing twice.

    \b
    Examples:
      mturk-tune collect --endpoint local
      mturk-tune collect --from-queue https://sqs.us-east-1.amazonaws.com/123456789012/mturk-events
    """
    from .collecting import collect as collect_all

    ws = _workspace(ctx)
    ep, client = _client(ws, endpoint, production)
    if queue_url:
        from .notifications import collect_from_queue, sqs_client_for

        if round_ is not None:
            raise UserError("--round does not apply to --from-queue: the queue names the assignments to collect")
        result = collect_from_queue(ws.store, client, sqs_client_for(queue_url), queue_url, ep, wait_seconds=wait_seconds)
        click.echo(
            f"{result.messages} notifications read ({result.duplicates} repeated, {result.ignored} left for others): "
            f"{result.new_assignments} new assignments, {result.new_ratings} ratings, "
            f"{result.parse_errors} unparseable answers (kept raw)"
        )
        return
    hits = ws.store.hits(round_=round_, endpoint=ep.label)
    with progress_bar(len(hits), "collecting") as update:
        result = collect_all(
            ws.store, client, ep, round_=round_, concurrency=concurrency or ws.config.publish.concurrency, progress=update
        )
    click.echo(
        f"{result.hits} HITs checked: {result.new_assignments} new assignments, {result.new_ratings} ratings, "
        f"{result.parse_errors} unparseable answers (kept raw)"
    )


# -- simulated crowd (local marketplace) -------------------------------------------------------


@cli.command()
@click.option("--workers", type=click.IntRange(min=1), help="Number of simulated workers.")
@click.option("--seed", type=int, help="Seed of the simulated crowd.")
@click.pass_context
def simulate(ctx: click.Context, workers: int | None, seed: int | None) -> None:
    """Let the simulated crowd answer the open HITs of the workspace's local marketplace.

    \b
    Example:
      mturk-tune simulate --workers 9
    """
    from .crowd_runner import run_crowd

    ws = _workspace(ctx)
    crowd = replace(ws.config, "crowd", workers=workers, seed=seed).crowd
    submitted = run_crowd(ws, crowd)
    click.echo(f"the simulated crowd submitted {submitted} assignments on the local marketplace")


# -- aggregate / tune --------------------------------------------------------------------------


@cli.command()
@click.option("--method", type=click.Choice(sorted(METHODS)), help="Aggregation method (default from config: mean).")
@click.option("--round", "round_", type=int, help="Round to aggregate (default: current).")
@click.option("--answers", type=click.Path(path_type=Path), help="Aggregate this CSV (task,worker,label) instead of the workspace.")
@click.option("--out", type=click.Path(path_type=Path), help="Output CSV for --answers (task,label,confidence,n,spread).")
@click.pass_context
def aggregate(ctx: click.Context, method: str | None, round_: int | None, answers: Path | None, out: Path | None) -> None:
    """Per-item scores with confidence from the ratings; exports Parquet and JSONL.

    \b
    Examples:
      mturk-tune aggregate --method mean
      mturk-tune aggregate --answers answers.csv --out scores.csv --method dawid_skene
    """
    from .scoring import aggregate_file, aggregate_round

    if answers is not None or out is not None:
        if answers is None or out is None:
            raise UserError("--answers and --out go together: mturk-tune aggregate --answers IN.csv --out OUT.csv")
        items = aggregate_file(answers, out, method=method or "mean")
        click.echo(f"{len(items)} items aggregated with {method or 'mean'} -> {out}")
        return
    ws = _workspace(ctx)
    result = aggregate_round(ws.store, ws.exports_dir, method=method or ws.config.aggregate.method, round_=round_)
    items = result.items
    click.echo(
        f"round {result.round}: {len(items)} items scored with {result.method} "
        f"(mean score {items['label'].mean():.2f}, mean confidence {items['confidence'].mean():.2f})"
    )
    for path in result.exports:
        click.echo(f"  wrote {path}")


@cli.command()
@click.option("--method", help="Which aggregated scores to tune on (default from config).")
@click.option("--scheme", type=click.Choice(SCHEMES),
              help="How scores become weights: normalized score, exponential (reward-weighted regression) "
                   "or top_fraction (reward-ranked fine-tuning).")
@click.option("--confidence-scaling/--no-confidence-scaling", default=None,
              help="Multiply each weight by the item's aggregation confidence.")
@click.option("--alpha", type=float, help="Weight of the supervised reference loss.")
@click.option("--beta", type=float, help="Weight of the rating-weighted feedback loss.")
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the data.")
@click.option("--learning-rate", type=float, help="Peak learning rate.")
@click.option("--reference", type=click.Path(path_type=Path), help="Supervised reference data (JSONL/CSV).")
@click.option("--lora-r", type=int, help="LoRA rank (0 = full fine-tuning).")
@click.option("--resume", is_flag=True, help="Resume the round's interrupted run from its last checkpoint.")
@click.option("--launch", "launcher", metavar="COMMAND",
              help='Run under a launcher for several GPUs or nodes, e.g. "accelerate launch --num_processes 4".')
@click.pass_context
def tune(ctx: click.Context, method: str | None, reference: Path | None, resume: bool, launcher: str | None,
         **options: Any) -> None:
    """Fine-tune the round's model on its rated texts, weighted by score; opens the next round.

    The loss is alpha * L_sup (on --reference) + beta * sum_i w_i * L(x_i) over the rated texts,
    each text's loss the mean over its own completion tokens. The same run works on CPU, one GPU,
    or several through --launch (DDP/FSDP via accelerate) with no other change.

    \b
    Examples:
      mturk-tune tune --scheme exponential --beta 1.0 --epochs 1
      mturk-tune tune --launch "accelerate launch --num_processes 4"
    """
    from .rounds import tune_round

    ws = _workspace(ctx)
    overrides = {k: v for k, v in options.items() if v is not None}
    done_so_far = {"steps": 0, "total": 0}

    with ExitStack() as stack:
        def progress(done: int, total: int) -> None:
            if "update" not in done_so_far:
                done_so_far["update"] = stack.enter_context(progress_bar(total, "tuning"))
            done_so_far["update"](done - done_so_far["steps"])
            done_so_far["steps"] = done

        result = tune_round(ws, overrides, method=method, reference=reference, resume=resume, progress=progress,
                            launcher=launcher)
    click.echo(f"round {result.round} tuned -> {result.checkpoint}; round {result.next_round} starts from it")


# -- quality: review / extend / workers / agreement -------------------------------------------


def _policy(ws: Workspace):
    from .quality import QualityPolicy

    return QualityPolicy.from_dict(dict(ws.config.quality))


@cli.command()
@endpoint_options
@click.option("--round", "round_", type=int, help="Round to review (default: all submitted assignments).")
@click.option("--dry-run", is_flag=True, help="Only show the decisions; call nothing.")
@click.option("--max-cost", help="Hard cap in dollars on bonuses with fees (default from config).")
@click.option("--concurrency", type=click.IntRange(min=1, max=64), help="API calls in flight at once.")
@click.option("--yes", is_flag=True, help="Skip the typed confirmation for production (scripts).")
@click.pass_context
def review(ctx: click.Context, endpoint: str | None, production: bool, round_: int | None, dry_run: bool,
           max_cost: str | None, concurrency: int | None, yes: bool) -> None:
    """Approve, reject, bonus and block by the [quality] policy; each action happens once.

    Shows every decision with its reason first. Without --dry-run the decisions are applied through
    the requester API; applying twice changes nothing.

    \b
    Example:
      mturk-tune review --dry-run
      mturk-tune review --endpoint local
    """
    from .money import format_dollars
    from .reviewing import apply_review, plan_review, review_cost

    ws = _workspace(ctx)
    policy = _policy(ws)
    ep, client = _client(ws, endpoint, production) if not dry_run else (None, None)
    label = ep.label if ep else resolve_label(ws, endpoint)
    decisions = plan_review(ws.store, policy, round_, endpoint=label)
    if decisions.empty:
        click.echo("no submitted assignments waiting for review")
        return
    shown = decisions.assign(reason=decisions["reason"].str.slice(0, 70))
    _print_table(["assignment_id", "worker", "action", "bonus", "block", "reason"],
                 shown[["assignment_id", "worker", "action", "bonus", "block", "reason"]].values.tolist())
    counts = decisions["action"].value_counts().to_dict()
    cost = review_cost(decisions)
    click.echo(f"{counts.get('approve', 0)} approve, {counts.get('reject', 0)} reject; bonuses ${format_dollars(cost)} with fees")
    if dry_run:
        click.echo("dry run: nothing was sent")
        return
    if ep.is_production:  # rejections and blocks touch real workers even when no money moves
        _confirm_production(client, cost, yes)
    with progress_bar(len(decisions), "reviewing") as update:
        result = apply_review(ws.store, client, decisions, soft_block_name=policy.soft_block_qualification_name,
                              progress=update, concurrency=concurrency or ws.config.publish.concurrency,
                              max_cost=max_cost or ws.config.publish.max_cost, endpoint=ep.label)
    click.echo(f"applied {result.applied} actions, {result.skipped} already done, {result.failed} failed")
    if result.failed:
        raise RemoteError(f"{result.failed} actions failed; re-run 'mturk-tune review' to retry them")


@cli.command()
@endpoint_options
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Items with confidence below this get another assignment.")
@click.option("--max-assignments", "max_extra", type=click.IntRange(min=0), default=20, show_default=True,
              help="Most extra assignments to buy.")
@click.option("--method", help="Which aggregated scores to read confidence from (default from config).")
@click.option("--max-cost", help="Hard cap in dollars (default from config).")
@click.option("--yes", is_flag=True, help="Skip the typed confirmation for production (scripts).")
@click.pass_context
def extend(ctx: click.Context, endpoint: str | None, production: bool, threshold: float, max_extra: int,
           method: str | None, max_cost: str | None, yes: bool) -> None:
    """Add assignments to HITs whose items are still uncertain (dynamic overlap), within a budget.

    \b
    Example:
      mturk-tune extend --threshold 0.6 --max-assignments 10 --endpoint local
    """
    from .errors import SafetyError
    from .money import format_dollars, parse_dollars
    from .reviewing import apply_extension, plan_extension

    ws = _workspace(ctx)
    ep, client = _client(ws, endpoint, production)
    plan = plan_extension(ws.store, method or ws.config.aggregate.method, threshold, max_extra, endpoint=ep.label)
    if not plan.hits:
        click.echo(f"no item below confidence {threshold}: nothing to extend")
        return
    cap = parse_dollars(max_cost or ws.config.publish.max_cost, "max cost")
    click.echo(f"{len(plan.hits)} HITs get one more assignment ({len(plan.items)} uncertain items): "
               f"${format_dollars(plan.cost)} with fees (cap ${format_dollars(cap)})")
    if plan.cost > cap:
        raise SafetyError(f"extending would cost ${format_dollars(plan.cost)}, over the cap ${format_dollars(cap)}")
    if ep.is_production:
        _confirm_production(client, plan.cost, yes)
    done = apply_extension(ws.store, client, plan)
    click.echo(f"extended {done} HITs; run 'mturk-tune collect' once workers have answered")


@cli.command()
@click.option("--round", "round_", type=int, help="Only this round.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON records.")
@click.pass_context
def workers(ctx: click.Context, round_: int | None, as_json: bool) -> None:
    """Quality table per worker: gold accuracy, time per item, straight-lining, agreement.

    \b
    Example:
      mturk-tune workers --round 0
    """
    from .quality import worker_signals
    from .reviewing import review_inputs

    ws = _workspace(ctx)
    ratings, assignments, gold = review_inputs(ws.store, round_)
    if ratings.empty:
        raise UserError("no ratings yet: run 'mturk-tune collect' first")
    table = worker_signals(ratings, assignments, gold if len(gold) else None)
    if as_json:
        click.echo(table.to_json(orient="records", indent=2))
        return
    columns = [c for c in ["worker", "n_assignments", "n_ratings", "gold_n", "gold_accuracy",
                           "median_seconds_per_item", "straightline_share", "agreement"] if c in table.columns]
    _print_table(columns, table[columns].round(3).astype(object).where(table[columns].notna(), "-").values.tolist())


@cli.command()
@click.option("--level", type=click.Choice(["nominal", "ordinal", "interval"]), default="ordinal", show_default=True,
              help="Distance between ratings used by Krippendorff's alpha.")
@click.pass_context
def agreement(ctx: click.Context, level: str) -> None:
    """Inter-annotator agreement: Krippendorff's alpha overall and per batch, and Fleiss' kappa.

    \b
    Example:
      mturk-tune agreement --level ordinal
    """
    from .agreement import fleiss_kappa, krippendorff_alpha

    ws = _workspace(ctx)
    ratings = ws.store.ratings_frame()
    if ratings.empty:
        raise UserError("no ratings yet: run 'mturk-tune collect' first")
    items = ws.store.items_frame()[["id", "batch_id"]].rename(columns={"id": "task"})
    ratings = ratings.merge(items, on="task")
    rows = []
    for batch_id, group in [("all", ratings), *ratings.groupby("batch_id")]:
        answers = group[["task", "worker", "label"]]
        try:
            kappa = f"{fleiss_kappa(answers):.3f}"
        except MturkTuneError:
            kappa = "-"  # needs the same number of raters per item
        rows.append([batch_id, len(answers), answers["worker"].nunique(), f"{krippendorff_alpha(answers, level=level):.3f}", kappa])
    _print_table(["batch", "ratings", "workers", f"alpha_{level}", "fleiss_kappa"], rows)


# -- demo --------------------------------------------------------------------------------------


@cli.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("mturk-tune-demo"),
              show_default=True, help="Folder for the demo workspace (re-using it starts a new round).")
@click.option("--model", default="builtin:tiny", show_default=True, help="Model to start from.")
@click.option("--prompts", "n_prompts", type=click.IntRange(min=1, max=200), default=12, show_default=True,
              help="Number of built-in prompts to use.")
@click.option("--workers", type=click.IntRange(min=1), default=9, show_default=True, help="Simulated workers.")
@click.option("--spammers", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of simulated workers who answer at random.")
@click.option("--serve", is_flag=True, help="You rate the texts in your browser instead of the simulated crowd.")
@click.option("--port", type=click.IntRange(0, 65535), help="Port of the worker pages with --serve (default 8765, else any).")
def demo(workdir: Path, model: str, n_prompts: int, workers: int, spammers: float, serve: bool, port: int | None) -> None:
    """One whole round offline: tiny model, embedded marketplace, simulated crowd, aggregation, tune.

    With --serve, the texts are rated by you: open the printed link in a browser on this machine,
    rate every HIT, and the demo goes on by itself (Ctrl-C goes on with what you rated).

    \b
    Examples:
      mturk-tune demo --workdir /tmp/mturk-demo
      mturk-tune demo --workdir /tmp/mturk-people --serve --prompts 3
    """
    from .demo import run_demo

    run_demo(workdir, model=model, n_prompts=n_prompts, workers=workers, spammers=spammers, echo=click.echo,
             serve=serve, port=port)


def _register_command_modules() -> None:
    """Command families kept in their own modules, each listing its commands in COMMANDS."""
    from . import cli_export, cli_loop, cli_marketplace

    for module in (cli_marketplace, cli_loop, cli_export):
        for command in module.COMMANDS:
            cli.add_command(command)


_register_command_modules()


def quiet_libraries() -> None:
    """Library chatter (hub hints, shard progress, padding advice) would bury the command's own output."""
    import logging
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("accelerate", "transformers", "torch.distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main() -> None:
    quiet_libraries()
    cli(prog_name="mturk-tune")


if __name__ == "__main__":
    main()
