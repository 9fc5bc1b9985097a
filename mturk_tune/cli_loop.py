"""Commands registered on the main `mturk-tune` group (see cli.py); each is a thin layer over the library."""

from __future__ import annotations

from pathlib import Path

import click


def _mix(text: str | None) -> dict[str, float] | None:
    """'careful=0.7,spammer=0.3' -> {"careful": 0.7, "spammer": 0.3}."""
    if not text:
        return None
    mix: dict[str, float] = {}
    for part in text.split(","):
        kind, _, share = part.partition("=")
        try:
            mix[kind.strip()] = float(share)
        except ValueError:
            raise click.BadParameter(f"{part!r} is not KIND=SHARE; write e.g. careful=0.7,spammer=0.3",
                                     param_hint="--mix") from None
    return mix


@click.command("loop")
@click.option("--rounds", type=click.IntRange(min=1), required=True,
              help="Tune until this many rounds are done (counted from round 0; re-running continues).")
@click.option("--prompts", "prompts_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Prompts (JSONL or CSV). Default: 24 built-in review and story prompts.")
@click.option("--preference",
              help="Hidden preference of the simulated crowd: sentiment (default), target_words:W1,W2[@SHARE], "
                   "length_band:MIN-MAX or module:function.")
@click.option("--review/--no-review", default=True, show_default=True,
              help="Apply the [quality] policy and aggregate approved ratings only, or aggregate every rating.")
@click.option("--gold", "gold_count", type=click.IntRange(min=0), default=12, show_default=True,
              help="Gold items made from the hidden preference when [publish] gold_rate > 0 and no gold_file "
                   "is set (0: none).")
@click.option("--method", help="Aggregation method (default from config).")
@click.option("--workers", type=click.IntRange(min=1), help="Simulated workers (default from [crowd]).")
@click.option("--mix", "mix_text", help="Worker kinds and shares, e.g. careful=0.7,spammer=0.3 (default from [crowd]).")
@click.option("--seed", type=int, help="Seed of the simulated crowd (default from [crowd]).")
@click.pass_context
def loop_command(ctx: click.Context, rounds: int, prompts_file: Path | None, preference: str | None, review: bool,
                 gold_count: int, method: str | None, workers: int | None, mix_text: str | None,
                 seed: int | None) -> None:
    """Run the closed loop on the local marketplace with a simulated crowd: generate, publish, collect,
    review, aggregate, tune, and again from the new checkpoint.

    Every step is recorded in the workspace; a stopped loop continues where it stopped when run again.
    The crowd rates by a hidden preference, and each round's true reward (that preference's mean over
    the round's generations) is logged beside what the crowd said. After the last tune, one more batch
    is generated for evaluation only. See the results with 'mturk-tune report'.

    \b
    Example:
      mturk-tune init run --model builtin:tiny --endpoint local
      mturk-tune -w run loop --rounds 3 --preference length_band:20-30 --mix careful=0.7,spammer=0.3
      mturk-tune -w run report --open
    """
    import dataclasses

    from .cli import _workspace
    from .demo import demo_prompts
    from .loop import run_loop
    from .prompts import Prompt, read_prompts

    ws = _workspace(ctx)
    crowd = ws.config.crowd
    overrides = {k: v for k, v in {"workers": workers, "seed": seed, "mix": _mix(mix_text)}.items() if v is not None}
    if overrides:
        crowd = dataclasses.replace(crowd, **overrides)
    if prompts_file is not None:
        prompts = read_prompts(prompts_file)
    else:
        prompts = [Prompt(id=p["id"], text=p["prompt"]) for p in demo_prompts(24)]
    result = run_loop(ws, rounds, prompts, review=review, method=method, preference=preference, crowd=crowd,
                      auto_gold=gold_count, echo=click.echo)
    rewards = " -> ".join(f"{v:.3f}" for v in result.true_reward)
    click.echo(f"true reward by round (round 0 first): {rewards}")
    click.echo(f"{len(result.steps_run)} steps run in {result.seconds:.0f} s; "
               f"'mturk-tune -w {ws.root} report' draws the run")


@click.command("report")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (default: report.html in the workspace).")
@click.option("--open", "open_browser", is_flag=True, help="Open the report in a browser afterwards.")
@click.pass_context
def report_command(ctx: click.Context, out: Path | None, open_browser: bool) -> None:
    """Write a self-contained HTML report: true and rated reward per round, agreement per batch,
    worker quality, score distributions, cost per round, and sample texts before and after.

    The page loads nothing from the network (plots are inline SVG), so it opens anywhere.

    \b
    Example:
      mturk-tune -w run report --out run-report.html --open
    """
    from .cli import _workspace
    from .report import write_report

    ws = _workspace(ctx)
    path = write_report(ws, out)
    click.echo(f"wrote {path}")
    if open_browser:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


# Every click command in this list is added to the main group.
COMMANDS: list[click.Command] = [loop_command, report_command]
