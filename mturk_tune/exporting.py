"""Export the workspace's tables for analysis, with worker ids pseudonymised by default.

MTurk worker ids are personal data: they link to a worker's public Amazon profile. An export
replaces each id with a salted hash (`W` + 16 hex digits) that is stable within one workspace,
so the tables still join with each other, and different across workspaces, so two exports from
different projects cannot be joined on the worker. The salt is made once per workspace
(`secrets.token_hex`) and kept in the store's meta table; `raw_worker_ids=True` opts out.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import ConfigError, InputFileError
from .store import Store

EXPORTS = ("ratings", "assignments", "scores", "workers")
FORMATS = (".csv", ".jsonl", ".parquet")
WORKER_COLUMNS = ("worker", "worker_id")
SALT_KEY = "worker_salt"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    what: str
    rows: int
    pseudonymised: bool


def worker_salt(store: Store) -> str:
    """The workspace's salt, made on first use (concurrent first uses agree on one)."""
    return store.get_meta(SALT_KEY) or store.set_meta_once(SALT_KEY, secrets.token_hex(16))


def pseudonym(worker_id: str, salt: str) -> str:
    return "W" + hashlib.sha256(f"{salt}\x1f{worker_id}".encode()).hexdigest()[:16].upper()


def pseudonymise(frame: pd.DataFrame, salt: str) -> pd.DataFrame:
    """Every worker id column replaced by its pseudonym (one hash per distinct id)."""
    frame = frame.copy()
    for column in WORKER_COLUMNS:
        if column in frame.columns:
            ids = frame[column].dropna().unique()
            frame[column] = frame[column].map({w: pseudonym(str(w), salt) for w in ids})
    return frame


def export_table(store: Store, what: str, round_: int | None = None) -> pd.DataFrame:
    """The table an export writes, with raw worker ids."""
    if what == "ratings":
        return store.ratings_frame(round_=round_)
    if what == "assignments":
        return store.assignments_frame(round_=round_)
    if what == "scores":
        return store.scores_frame(round_=round_)
    if what == "workers":
        from .quality import worker_signals
        from .reviewing import review_inputs

        ratings, assignments, gold = review_inputs(store, round_)
        if ratings.empty:
            return pd.DataFrame(columns=["worker", "n_assignments", "n_ratings"])
        return worker_signals(ratings, assignments, gold if len(gold) else None)
    raise ConfigError(f"cannot export {what!r}: choose one of {', '.join(EXPORTS)}")


def write_table(table: pd.DataFrame, out: Path) -> Path:
    """Write a table as .csv, .jsonl or .parquet (by suffix), atomically: a crash never leaves half a
    file under the real name."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise InputFileError(f"{out}: unknown format {out.suffix or '(no suffix)'!r}; "
                             f"end the file name with {', '.join(FORMATS)}")
    partial = out.with_name(f".{out.name}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            table.to_csv(partial, index=False)
        elif suffix == ".jsonl":
            table.to_json(partial, orient="records", lines=True, force_ascii=False, date_format="iso")
        else:
            table.to_parquet(partial, index=False)
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InputFileError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return out


def export(store: Store, what: str, out: Path, raw_worker_ids: bool = False, round_: int | None = None) -> ExportResult:
    """Write `what` (ratings, assignments, scores or workers) to `out`; the suffix picks the format."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        write_table(pd.DataFrame(), out)  # raises the unknown-format error before any work
    table = export_table(store, what, round_)
    if not raw_worker_ids:
        table = pseudonymise(table, worker_salt(store))
    write_table(table, out)
    return ExportResult(path=out, what=what, rows=len(table), pseudonymised=not raw_worker_ids)
