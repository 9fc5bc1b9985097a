"""Per-item scores from the ratings: aggregate a workspace round or any long CSV table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import InputFileError, WorkspaceError
from .store import Store


@dataclass(frozen=True)
class ScoreResult:
    round: int
    method: str
    items: pd.DataFrame
    exports: list[Path]


def aggregate_round(store: Store, exports_dir: Path, method: str = "mean", round_: int | None = None,
                    ratings: pd.DataFrame | None = None) -> ScoreResult:
    """Aggregate the round's ratings (or the given, already filtered, ratings) and export the scores."""
    from .aggregation import aggregate

    round_ = store.current_round() if round_ is None else round_
    if ratings is None:
        ratings = store.ratings_frame(round_=round_)
    if ratings.empty:
        raise WorkspaceError(f"round {round_} has no ratings yet: run 'mturk-tune collect' first")
    result = aggregate(ratings[["task", "worker", "label"]], method=method)
    store.save_scores(round_, method, result.items)
    scores = store.scores_frame(round_=round_, method=method)
    from .exporting import write_table

    base = exports_dir / f"scores-round{round_}-{method}"
    write_table(scores, base.with_suffix(".parquet"))
    write_table(scores, base.with_suffix(".jsonl"))
    return ScoreResult(round=round_, method=method, items=result.items, exports=[base.with_suffix(".parquet"), base.with_suffix(".jsonl")])


def read_answers_csv(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: answers file not found; pass a CSV with columns task,worker,label")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputFileError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]}); expected columns task,worker,label") from None
    missing = [c for c in ("task", "worker", "label") if c not in frame.columns]
    if missing:
        raise InputFileError(f"{path}:1: missing column(s) {', '.join(missing)}; the header must include task,worker,label")
    return frame


def aggregate_file(answers: Path, out: Path, method: str = "mean") -> pd.DataFrame:
    """`aggregate --answers FILE.csv --out FILE.csv` outside any workspace."""
    from .aggregation import aggregate

    from .exporting import write_table

    frame = read_answers_csv(answers)
    result = aggregate(frame[["task", "worker", "label"]], method=method)
    write_table(result.items, out)  # .csv, .jsonl or .parquet by suffix
    return result.items
