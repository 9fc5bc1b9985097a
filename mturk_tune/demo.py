"""One whole round offline: the built-in model, the embedded marketplace and a simulated crowd.

Every step is the same library call the CLI commands make; only the marketplace is local and the
workers are simulated. The demo prints what happened and where the outputs are.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from .config import replace
LOCAL_ENDPOINT = "local"

DEMO_TOPICS = (
    "hotel", "restaurant", "coffee shop", "movie", "book", "phone", "laptop", "park", "museum", "bakery",
    "train", "concert",
)
DEMO_CHARACTERS = ("fox", "rabbit", "dragon", "owl", "bear", "king", "queen", "mouse")
# Tuning settings sized so the demo finishes in a few minutes on two cores.
DEMO_TUNE = {"epochs": 2, "batch_size": 8}


def demo_prompts(n: int) -> list[dict]:
    """Prompts the built-in model knows how to continue: reviews and little stories."""
    prompts = []
    for i in range(n):
        if i % 3 == 2:
            character = DEMO_CHARACTERS[(i // 3) % len(DEMO_CHARACTERS)]
            prompts.append({"id": f"demo-{i + 1}", "prompt": f"Tell a short story about a {character}."})
        else:
            topic = DEMO_TOPICS[(i - i // 3) % len(DEMO_TOPICS)]
            prompts.append({"id": f"demo-{i + 1}", "prompt": f"Write a short review of a {topic}."})
    return prompts


def run_demo(
    workdir: Path,
    model: str = "builtin:tiny",
    n_prompts: int = 12,
    workers: int = 9,
    spammers: float = 0.0,
    echo: Callable[[str], None] = print,
    serve: bool = False,
    port: int | None = None,
    people: tuple[str, ...] = ("ARATER",),
) -> dict:
    """Run init, generate, publish, simulate, collect, aggregate and tune; return a summary.

    ``serve``: the invited ``people`` rate in their browser (one assignment per person and HIT)
    instead of the simulated crowd.
    """
    from .collecting import collect
    from .crowd_runner import run_crowd
    from .generating import generate_batch
    from .prompts import read_prompts
    from .publishing import plan_publish, publish
    from .requester import make_client, resolve_endpoint
    from .rounds import tune_round
    from .scoring import aggregate_round
    from .workspace import init_workspace

    started = time.monotonic()
    workdir = Path(workdir)
    ws = init_workspace(
        workdir, model=model, settings={"publish": {"endpoint": LOCAL_ENDPOINT}, "tune": DEMO_TUNE}
    )
    store = ws.store
    round_ = store.current_round()
    echo(f"[1/7] workspace {ws.root} (round {round_}, model {store.round_model()})")

    prompts_path = workdir / "prompts.jsonl"
    prompts_path.write_text("".join(json.dumps(p) + "\n" for p in demo_prompts(n_prompts)), encoding="utf-8")
    batch = generate_batch(store, read_prompts(prompts_path), ws.config.generate)
    items = store.items_frame(batch_id=batch.batch_id)
    echo(f"[2/7] generated {batch.items} texts from {len(items['prompt_id'].unique())} prompts, e.g.:")
    for row in items.head(2).itertuples():
        echo(f"        {row.prompt!r} -> {row.text[:90]!r}")

    endpoint = resolve_endpoint(LOCAL_ENDPOINT)
    client = make_client(endpoint, marketplace_db=ws.marketplace_db)
    settings = replace(ws.config, "publish", assignments=len(people)).publish if serve else ws.config.publish
    plan = plan_publish(store, endpoint, settings, batch.batch_id)
    published = publish(store, client, endpoint, settings, plan)
    echo(
        f"[3/7] published {published.created} HITs ({settings.items_per_hit} texts each, {settings.assignments} workers each) "
        f"on the embedded marketplace; would cost ${published.cost} on MTurk"
    )

    if serve:
        from .marketplace.people import serve_to_people

        echo("[4/7] your turn: open the link below in a browser on this machine and rate every HIT")
        run = serve_to_people(ws.marketplace_db, workers=people, port=port, announce=lambda line: echo("        " + line))
        echo(f"[4/7] you submitted {run.submitted} assignments" + ("" if run.finished else " (stopped early)"))
        if run.submitted == 0:
            echo("nothing was rated, so there is nothing to aggregate or tune; run the demo again to rate")
            store.close()
            return {"workspace": str(ws.root), "batch": batch.batch_id, "hits": published.created, "assignments": 0}
    else:
        mix = {"careful": 1.0 - spammers, "spammer": spammers} if spammers else {"careful": 1.0}
        # replace() keeps the rest of [crowd] (seed, preference) as configured.
        crowd = replace(ws.config, "crowd", workers=workers, mix=mix).crowd
        submitted = run_crowd(ws, crowd)
        echo(f"[4/7] {workers} simulated workers submitted {submitted} assignments")

    collected = collect(store, client, endpoint, concurrency=settings.concurrency)
    echo(f"[5/7] collected {collected.new_assignments} assignments -> {collected.new_ratings} ratings "
         f"({collected.parse_errors} unparseable)")

    scores = aggregate_round(store, ws.exports_dir, method=ws.config.aggregate.method)
    best = scores.items.sort_values("label", ascending=False)
    echo(f"[6/7] aggregated {len(scores.items)} item scores with {scores.method}: "
         f"mean {scores.items['label'].mean():.2f}, best {best['label'].iloc[0]:.2f}, worst {best['label'].iloc[-1]:.2f}")

    tuned = tune_round(ws)
    training = tuned.record.get("training", {})
    echo(f"[7/7] tuned round {tuned.round}: {training.get('steps')} steps, {training.get('tokens_per_s')} tokens/s, "
         f"final weighted loss {training.get('final_loss')}")
    for sample in tuned.record.get("samples", [])[:1]:
        echo(f"        {sample['prompt']!r}")
        echo(f"          before: {sample['before'].strip()[:100]!r}")
        echo(f"          after:  {sample['after'].strip()[:100]!r}")

    elapsed = time.monotonic() - started
    echo("")
    echo(f"done in {elapsed:.0f} s. Outputs:")
    echo(f"  state store     {ws.state_path}   ('mturk-tune -w {ws.root} status')")
    for path in scores.exports:
        echo(f"  scores          {path}")
    echo(f"  checkpoint      {tuned.checkpoint}   (round {tuned.next_round} generates from it)")
    echo(f"  marketplace     {ws.marketplace_db}")
    summary = {
        "workspace": str(ws.root),
        "batch": batch.batch_id,
        "items": batch.items,
        "hits": published.created,
        "assignments": collected.new_assignments,
        "ratings": collected.new_ratings,
        "checkpoint": str(tuned.checkpoint),
        "next_round": tuned.next_round,
        "seconds": round(elapsed, 1),
    }
    store.close()
    return summary
