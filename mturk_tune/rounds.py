"""Close a round: fine-tune the round's model on its scored items and open the next round.

The checkpoint is traceable: its run record names the round, batches, rating counts, workers and
aggregation method, and the store links the checkpoint to the round it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import InputFileError
from .workspace import Workspace


@dataclass(frozen=True)
class TuneRoundResult:
    round: int
    next_round: int
    checkpoint: Path
    record: dict


def round_provenance(ws: Workspace, round_: int, method: str) -> dict[str, Any]:
    store = ws.store
    ratings = store.ratings_frame(round_=round_)
    provenance: dict[str, Any] = {
        "round": round_,
        "base_model": store.round_model(round_),
        "batches": store.batches(round_),
        "ratings": int(len(ratings)),
        "workers": int(ratings["worker"].nunique()) if len(ratings) else 0,
        "aggregation": method,
    }
    from .agreement import alpha_or_none

    alpha = alpha_or_none(ratings)
    if alpha is not None:
        provenance["krippendorff_alpha_ordinal"] = round(alpha, 4)
    return provenance


def tune_round(
    ws: Workspace,
    overrides: Mapping[str, Any] | None = None,
    method: str | None = None,
    reference: Path | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    launcher: str | None = None,
) -> TuneRoundResult:
    """Tune in this process, or under `launcher` ("accelerate launch --num_processes 4", "torchrun ...")."""
    from .tuning import FeedbackExample, TuneConfig, read_reference, tune

    store = ws.store
    round_ = store.current_round()
    method = method or ws.config.aggregate.method
    config = TuneConfig.from_dict({**ws.config.tune, **(overrides or {})})
    scores = store.scores_frame(round_=round_, method=method)
    scores = scores[scores["kind"] == "generated"]
    if scores.empty:
        raise InputFileError(
            f"round {round_} has no '{method}' scores to tune on: run 'mturk-tune aggregate --method {method}' first"
        )
    feedback = [
        FeedbackExample(task=r.task, prompt=r.prompt, completion=r.text, score=float(r.label), confidence=float(r.confidence))
        for r in scores.itertuples(index=False)
    ]
    reference_examples = read_reference(reference) if reference else None
    base_model = store.round_model(round_)
    # One folder per round: a killed run is resumed in place with --resume.
    out_dir = ws.checkpoints_dir / f"round{round_}"
    provenance = round_provenance(ws, round_, method)
    if launcher:
        result = _launch(launcher, base_model, feedback, out_dir, config, reference_examples, provenance, resume)
    else:
        result = tune(
            base_model,
            feedback,
            out_dir,
            config,
            reference=reference_examples,
            provenance=provenance,
            resume=resume,
            progress=progress,
        )
    store.add_checkpoint(round_, str(result.checkpoint), base_model, result.record)
    next_round = store.start_round(str(result.checkpoint))
    return TuneRoundResult(round=round_, next_round=next_round, checkpoint=Path(result.checkpoint), record=result.record)


def _launch(launcher, base_model, feedback, out_dir, config, reference, provenance, resume):
    """Run the same tuning in several processes; every process reads one spec file."""
    import json
    import subprocess

    from .errors import MturkTuneError
    from .tuning import TuneResult, launch_command, write_spec

    out_dir.mkdir(parents=True, exist_ok=True)
    spec = write_spec(out_dir / "tune_spec.json", base_model, feedback, out_dir, config,
                      reference=reference, provenance=provenance, resume=resume)
    command = launch_command(launcher, spec)
    try:
        completed = subprocess.run(command, check=False)
    except FileNotFoundError:
        raise MturkTuneError(f"launcher not found: {command[0]!r}; install it or pass --launch python") from None
    record_path = out_dir / "run_record.json"
    if completed.returncode != 0 or not record_path.exists():
        raise MturkTuneError(f"'{' '.join(command)}' failed with exit code {completed.returncode}; see its output above")
    return TuneResult(checkpoint=out_dir, record=json.loads(record_path.read_text()))
