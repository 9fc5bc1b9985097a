"""The workspace's state store: one SQLite file that every command reads and writes.

Why SQLite: each command must be re-runnable and resumable after a crash, and a person must be
able to inspect the state (`mturk-tune status`, or any SQLite tool). WAL mode lets `collect` write
while `status` reads; foreign keys keep ratings tied to the assignments and items they came from.

Remote side effects follow an intent/outcome pattern: a row is written (with the deterministic
UniqueRequestToken) before the call and completed after it, so a re-run knows what was started.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd

from .errors import WorkspaceError

# Each migration runs once, in order, and is recorded in the migrations table, so an old
# workspace is upgraded in place instead of breaking.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "initial schema",
        """
        CREATE TABLE rounds (
            round INTEGER PRIMARY KEY,
            model TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE batches (
            id TEXT PRIMARY KEY,
            round INTEGER NOT NULL REFERENCES rounds(round),
            model TEXT NOT NULL,
            params TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE items (
            id TEXT PRIMARY KEY,
            batch_id TEXT NOT NULL REFERENCES batches(id),
            round INTEGER NOT NULL,
            kind TEXT NOT NULL DEFAULT 'generated',   -- generated | gold
            prompt_id TEXT NOT NULL,
            prompt TEXT NOT NULL,
            text TEXT NOT NULL,
            model TEXT NOT NULL,
            sample_index INTEGER NOT NULL DEFAULT 0,
            gold_label REAL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX items_batch ON items(batch_id);
        CREATE TABLE hit_types (
            id TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            params TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (id, endpoint)
        );
        CREATE TABLE hits (
            request_token TEXT PRIMARY KEY,
            hit_id TEXT UNIQUE,
            state TEXT NOT NULL,                      -- intent | created
            batch_id TEXT NOT NULL REFERENCES batches(id),
            round INTEGER NOT NULL,
            endpoint TEXT NOT NULL,
            hit_type_id TEXT NOT NULL,
            max_assignments INTEGER NOT NULL,
            reward TEXT NOT NULL,
            created_at TEXT NOT NULL,
            completed_at TEXT
        );
        CREATE TABLE hit_items (
            request_token TEXT NOT NULL REFERENCES hits(request_token),
            item_id TEXT NOT NULL UNIQUE REFERENCES items(id),
            position INTEGER NOT NULL,
            PRIMARY KEY (request_token, item_id)
        );
        CREATE TABLE assignments (
            assignment_id TEXT PRIMARY KEY,
            hit_id TEXT NOT NULL,
            worker_id TEXT NOT NULL,
            status TEXT NOT NULL,
            accept_time TEXT,
            submit_time TEXT,
            answer_xml TEXT NOT NULL,
            collected_at TEXT NOT NULL,
            parse_error TEXT
        );
        CREATE INDEX assignments_hit ON assignments(hit_id);
        CREATE TABLE ratings (
            assignment_id TEXT NOT NULL REFERENCES assignments(assignment_id),
            item_id TEXT NOT NULL REFERENCES items(id),
            worker_id TEXT NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (assignment_id, item_id)
        );
        CREATE TABLE scores (
            item_id TEXT NOT NULL REFERENCES items(id),
            round INTEGER NOT NULL,
            method TEXT NOT NULL,
            score REAL NOT NULL,
            confidence REAL NOT NULL,
            n INTEGER NOT NULL,
            spread REAL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (item_id, method)
        );
        CREATE TABLE checkpoints (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            round INTEGER NOT NULL REFERENCES rounds(round),
            path TEXT NOT NULL,
            base_model TEXT NOT NULL,
            record TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE actions (
            request_token TEXT PRIMARY KEY,
            kind TEXT NOT NULL,                       -- approve | reject | bonus | block | extend ...
            target TEXT NOT NULL,
            params TEXT NOT NULL,
            state TEXT NOT NULL,                      -- intent | done | failed
            result TEXT,
            created_at TEXT NOT NULL,
            done_at TEXT
        );
        """,
    ),
    (
        "notification events seen (collect --from-queue de-duplicates on EventDocId)",
        """
        CREATE TABLE events_seen (
            event_doc_id TEXT PRIMARY KEY,
            received_at TEXT NOT NULL
        );
        """,
    ),
    (
        "per-round metrics (true reward of a simulated crowd's hidden preference, costs, agreement)",
        """
        CREATE TABLE round_metrics (
            round INTEGER NOT NULL REFERENCES rounds(round),
            name TEXT NOT NULL,
            value REAL NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (round, name)
        );
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    ),
]

STATE_FILE = "state.db"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RoundCounts:
    round: int
    model: str
    batches: int
    items: int
    hits: int
    assignments: int
    ratings: int
    scores: int
    checkpoints: int


class Store:
    """The state store of one workspace. Open with `Store.create` (new) or `Store.open` (existing)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._write_lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, model: str) -> "Store":
        store = cls(path)
        store.migrate()
        if store.current_round_or_none() is None:
            store.start_round(model)
        return store

    @classmethod
    def open(cls, path: Path) -> "Store":
        if not Path(path).exists():
            raise WorkspaceError(f"no state store at {path}: run 'mturk-tune init' first or pass --workspace DIR")
        store = cls(path)
        store.migrate()
        return store

    @property
    def conn(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections must not be shared across threads.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def migrate(self) -> None:
        with self.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = {row[0] for row in conn.execute("SELECT version FROM migrations")}
            for version, (name, sql) in enumerate(MIGRATIONS, start=1):
                if version in applied:
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO migrations VALUES (?, ?, ?)", (version, name, now_iso()))

    def schema_version(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(version), 0) FROM migrations").fetchone()[0]

    # -- rounds ------------------------------------------------------------------------------

    def current_round_or_none(self) -> int | None:
        return self.conn.execute("SELECT MAX(round) FROM rounds").fetchone()[0]

    def current_round(self) -> int:
        value = self.current_round_or_none()
        if value is None:
            raise WorkspaceError(f"{self.path} has no round: run 'mturk-tune init' again")
        return value

    def round_model(self, round_: int | None = None) -> str:
        round_ = self.current_round() if round_ is None else round_
        row = self.conn.execute("SELECT model FROM rounds WHERE round = ?", (round_,)).fetchone()
        if row is None:
            raise WorkspaceError(f"round {round_} does not exist in {self.path}")
        return row[0]

    def start_round(self, model: str) -> int:
        with self.transaction() as conn:
            last = conn.execute("SELECT MAX(round) FROM rounds").fetchone()[0]
            new = 0 if last is None else last + 1
            conn.execute("INSERT INTO rounds VALUES (?, ?, ?)", (new, model, now_iso()))
        return new

    def set_round_model(self, round_: int, model: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE rounds SET model = ? WHERE round = ?", (model, round_))

    # -- batches and items -------------------------------------------------------------------

    def add_batch(self, batch_id: str, round_: int, model: str, params: dict, items: Sequence[dict]) -> None:
        """Write a batch and all its items in one transaction: a crash leaves all or nothing."""
        created = now_iso()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?)",
                (batch_id, round_, model, json.dumps(params, sort_keys=True), created),
            )
            conn.executemany(
                "INSERT INTO items (id, batch_id, round, kind, prompt_id, prompt, text, model, sample_index, gold_label, created_at)"
                " VALUES (:id, :batch_id, :round, :kind, :prompt_id, :prompt, :text, :model, :sample_index, :gold_label, :created_at)",
                [
                    {"kind": "generated", "gold_label": None, "sample_index": 0, **item,
                     "batch_id": batch_id, "round": round_, "created_at": created}
                    for item in items
                ],
            )

    def add_items(self, batch_id: str, items: Sequence[dict]) -> None:
        """Add items (gold controls, say) to an existing batch."""
        batch = self.conn.execute("SELECT round FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if batch is None:
            raise WorkspaceError(f"no batch {batch_id!r}")
        created = now_iso()
        with self.transaction() as conn:
            # OR IGNORE: gold placements are planned deterministically and may be added again after a crash.
            conn.executemany(
                "INSERT OR IGNORE INTO items (id, batch_id, round, kind, prompt_id, prompt, text, model, sample_index, gold_label, created_at)"
                " VALUES (:id, :batch_id, :round, :kind, :prompt_id, :prompt, :text, :model, :sample_index, :gold_label, :created_at)",
                [
                    {"kind": "generated", "gold_label": None, "sample_index": 0, **item,
                     "batch_id": batch_id, "round": batch[0], "created_at": created}
                    for item in items
                ],
            )

    def latest_batch(self, round_: int | None = None) -> str | None:
        round_ = self.current_round() if round_ is None else round_
        row = self.conn.execute(
            "SELECT id FROM batches WHERE round = ? ORDER BY created_at DESC, rowid DESC LIMIT 1", (round_,)
        ).fetchone()
        return row[0] if row else None

    def batch_round(self, batch_id: str) -> int:
        row = self.conn.execute("SELECT round FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise WorkspaceError(f"no batch {batch_id!r} in this workspace; 'mturk-tune status' lists them")
        return int(row[0])

    def batches(self, round_: int | None = None) -> list[str]:
        query = "SELECT id FROM batches" + (" WHERE round = ?" if round_ is not None else "") + " ORDER BY rowid"
        return [r[0] for r in self.conn.execute(query, (() if round_ is None else (round_,)))]

    def items_frame(self, batch_id: str | None = None, round_: int | None = None) -> pd.DataFrame:
        where, args = _where({"batch_id": batch_id, "round": round_})
        return pd.read_sql_query(f"SELECT * FROM items{where} ORDER BY rowid", self.conn, params=args)

    def items_by_id(self, ids: Iterable[str]) -> dict[str, sqlite3.Row]:
        ids = list(ids)
        rows: dict[str, sqlite3.Row] = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(f"SELECT * FROM items WHERE id IN ({marks})", chunk):
                rows[row["id"]] = row
        return rows

    def unpublished_items(self, batch_id: str) -> list[sqlite3.Row]:
        return list(
            self.conn.execute(
                "SELECT i.* FROM items i LEFT JOIN hit_items h ON h.item_id = i.id"
                " WHERE i.batch_id = ? AND h.item_id IS NULL ORDER BY i.rowid",
                (batch_id,),
            )
        )

    # -- HITs --------------------------------------------------------------------------------

    def record_hit_type(self, hit_type_id: str, endpoint: str, params: dict) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO hit_types VALUES (?, ?, ?, ?)",
                (hit_type_id, endpoint, json.dumps(params, sort_keys=True), now_iso()),
            )

    def record_hit_intent(
        self, request_token: str, batch_id: str, round_: int, endpoint: str, hit_type_id: str,
        max_assignments: int, reward: str, item_ids: Sequence[str],
    ) -> None:
        """Claim items for a HIT before it is created; the token makes the remote call idempotent."""
        self.record_hit_intents(
            [(request_token, batch_id, round_, endpoint, hit_type_id, max_assignments, reward, item_ids)]
        )

    def record_hit_intents(self, intents: Sequence[tuple]) -> None:
        """Claim many HITs in one transaction (one fsync): a crash leaves all of them or none.

        Each intent is (request_token, batch_id, round, endpoint, hit_type_id, max_assignments, reward, item_ids).
        """
        if not intents:
            return
        created = now_iso()
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO hits (request_token, hit_id, state, batch_id, round, endpoint, hit_type_id, max_assignments,"
                " reward, created_at) VALUES (?, NULL, 'intent', ?, ?, ?, ?, ?, ?, ?)",
                [(token, batch, round_, ep, ht, n, reward, created) for token, batch, round_, ep, ht, n, reward, _ in intents],
            )
            conn.executemany(
                "INSERT INTO hit_items VALUES (?, ?, ?)",
                [(intent[0], item_id, pos) for intent in intents for pos, item_id in enumerate(intent[7])],
            )

    def mark_hit_created(self, request_token: str, hit_id: str) -> None:
        self.mark_hits_created([(request_token, hit_id)])

    def mark_hits_created(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Record (request_token, hit_id) outcomes in one transaction (group commit from many threads)."""
        done = now_iso()
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE hits SET hit_id = ?, state = 'created', completed_at = ? WHERE request_token = ? AND state = 'intent'",
                [(hit_id, done, token) for token, hit_id in pairs],
            )

    def set_hit_max_assignments(self, hit_id: str, max_assignments: int) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE hits SET max_assignments = ? WHERE hit_id = ?", (max_assignments, hit_id))

    def pending_hit_intents(self, endpoint: str | None = None) -> list[sqlite3.Row]:
        where = " AND endpoint = ?" if endpoint else ""
        return list(
            self.conn.execute(
                f"SELECT * FROM hits WHERE state = 'intent'{where} ORDER BY rowid", ((endpoint,) if endpoint else ())
            )
        )

    def hit_item_ids(self, request_token: str) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT item_id FROM hit_items WHERE request_token = ? ORDER BY position", (request_token,)
            )
        ]

    def hits(self, round_: int | None = None, endpoint: str | None = None, created_only: bool = True) -> list[sqlite3.Row]:
        where, args = _where({"round": round_, "endpoint": endpoint, "state": "created" if created_only else None})
        return list(self.conn.execute(f"SELECT * FROM hits{where} ORDER BY rowid", args))

    def items_of_hit(self, hit_id: str) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT hi.item_id FROM hit_items hi JOIN hits h ON h.request_token = hi.request_token"
                " WHERE h.hit_id = ? ORDER BY hi.position",
                (hit_id,),
            )
        ]

    # -- assignments and ratings -------------------------------------------------------------

    def known_assignment_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT assignment_id FROM assignments")}

    def save_raw_assignment(self, assignment: dict) -> bool:
        """Store the answer verbatim, first of all; returns False if it was already stored."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO assignments (assignment_id, hit_id, worker_id, status, accept_time, submit_time, answer_xml, collected_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    assignment["AssignmentId"], assignment["HITId"], assignment["WorkerId"],
                    assignment.get("AssignmentStatus", "Submitted"),
                    _iso(assignment.get("AcceptTime")), _iso(assignment.get("SubmitTime")),
                    assignment.get("Answer", ""), now_iso(),
                ),
            )
            return cur.rowcount == 1

    def save_ratings(self, assignment_id: str, worker_id: str, ratings: dict[str, float]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO ratings VALUES (?, ?, ?, ?)",
                [(assignment_id, item_id, worker_id, float(v)) for item_id, v in ratings.items()],
            )
            conn.execute("UPDATE assignments SET parse_error = NULL WHERE assignment_id = ?", (assignment_id,))

    def unparsed_assignments(self) -> list[sqlite3.Row]:
        """Answers stored raw whose parsing never finished (the process stopped in between)."""
        return list(
            self.conn.execute(
                "SELECT a.* FROM assignments a WHERE a.parse_error IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM ratings r WHERE r.assignment_id = a.assignment_id)"
            )
        )

    def mark_parse_error(self, assignment_id: str, reason: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE assignments SET parse_error = ? WHERE assignment_id = ?", (reason, assignment_id))

    def set_assignment_status(self, assignment_id: str, status: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE assignments SET status = ? WHERE assignment_id = ?", (status, assignment_id))

    def assignments_frame(self, round_: int | None = None) -> pd.DataFrame:
        query = (
            "SELECT a.assignment_id, a.hit_id, a.worker_id AS worker, a.status, a.accept_time, a.submit_time,"
            " a.parse_error, h.round, h.batch_id, h.endpoint FROM assignments a LEFT JOIN hits h ON h.hit_id = a.hit_id"
        )
        args: tuple = ()
        if round_ is not None:
            query += " WHERE h.round = ?"
            args = (round_,)
        frame = pd.read_sql_query(query + " ORDER BY a.rowid", self.conn, params=args)
        for col in ("accept_time", "submit_time"):
            frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
        return frame

    def ratings_frame(self, round_: int | None = None, kind: str | None = None) -> pd.DataFrame:
        """Ratings as the long table the quality and aggregation engines take."""
        query = (
            "SELECT r.assignment_id, a.hit_id, r.item_id AS task, r.worker_id AS worker, r.value AS label,"
            " i.kind, i.gold_label, i.round FROM ratings r JOIN items i ON i.id = r.item_id"
            " JOIN assignments a ON a.assignment_id = r.assignment_id"
        )
        where, args = _where({"i.round": round_, "i.kind": kind})
        return pd.read_sql_query(query + where + " ORDER BY r.rowid", self.conn, params=args)

    # -- scores and checkpoints --------------------------------------------------------------

    def save_scores(self, round_: int, method: str, items: pd.DataFrame) -> None:
        """Replace this round's scores for `method` with `items` (task, label, confidence, n, spread)."""
        created = now_iso()
        rows = [
            (str(r.task), round_, method, float(r.label), float(r.confidence), int(r.n),
             None if pd.isna(r.spread) else float(r.spread), created)
            for r in items.itertuples(index=False)
        ]
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM scores WHERE method = ? AND item_id IN (SELECT id FROM items WHERE round = ?)",
                (method, round_),
            )
            conn.executemany("INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def scores_frame(self, round_: int | None = None, method: str | None = None) -> pd.DataFrame:
        query = (
            "SELECT s.item_id AS task, s.score AS label, s.confidence, s.n, s.spread, s.method, s.round,"
            " i.prompt, i.text, i.model, i.batch_id, i.kind FROM scores s JOIN items i ON i.id = s.item_id"
        )
        where, args = _where({"s.round": round_, "s.method": method})
        return pd.read_sql_query(query + where + " ORDER BY s.rowid", self.conn, params=args)

    def add_checkpoint(self, round_: int, path: str, base_model: str, record: dict) -> int:
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO checkpoints (round, path, base_model, record, created_at) VALUES (?, ?, ?, ?, ?)",
                (round_, path, base_model, json.dumps(record, sort_keys=True, default=str), now_iso()),
            )
            return int(cur.lastrowid)

    def checkpoints(self) -> list[sqlite3.Row]:
        return list(self.conn.execute("SELECT * FROM checkpoints ORDER BY id"))

    # -- actions (review, bonus, block, extend) ----------------------------------------------

    def action_state(self, request_token: str) -> str | None:
        row = self.conn.execute("SELECT state FROM actions WHERE request_token = ?", (request_token,)).fetchone()
        return row[0] if row else None

    def action_result(self, request_token: str) -> Any:
        """The recorded outcome of a finished action, or None."""
        row = self.conn.execute(
            "SELECT result FROM actions WHERE request_token = ? AND state = 'done'", (request_token,)
        ).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def soft_block_qualifications(self, endpoint: str) -> list[str]:
        """Ids of the soft-block qualification types review created on one marketplace (HITs there require
        their absence; another marketplace does not know them)."""
        rows = self.conn.execute(
            "SELECT params, result FROM actions WHERE kind = 'qualification_type' AND state = 'done' ORDER BY rowid"
        )
        return [json.loads(row[1])["QualificationTypeId"] for row in rows
                if row[1] and json.loads(row[0]).get("endpoint") == endpoint]

    def record_action_intent(self, request_token: str, kind: str, target: str, params: dict) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO actions (request_token, kind, target, params, state, created_at)"
                " VALUES (?, ?, ?, ?, 'intent', ?)",
                (request_token, kind, target, json.dumps(params, sort_keys=True), now_iso()),
            )

    def finish_action(self, request_token: str, state: str, result: Any = None) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE actions SET state = ?, result = ?, done_at = ? WHERE request_token = ?",
                (state, json.dumps(result, default=str), now_iso(), request_token),
            )

    def actions_frame(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM actions ORDER BY rowid", self.conn)

    # -- notification events, metrics, workspace facts ----------------------------------------

    def mark_event_seen(self, event_doc_id: str) -> bool:
        """True the first time an EventDocId is seen (notifications arrive at least once)."""
        with self.transaction() as conn:
            cur = conn.execute("INSERT OR IGNORE INTO events_seen VALUES (?, ?)", (event_doc_id, now_iso()))
            return cur.rowcount == 1

    def set_metric(self, round_: int, name: str, value: float) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO round_metrics VALUES (?, ?, ?, ?) ON CONFLICT(round, name) DO UPDATE SET value = excluded.value,"
                " created_at = excluded.created_at",
                (round_, name, float(value), now_iso()),
            )

    def metrics_frame(self) -> pd.DataFrame:
        """Long table round, name, value."""
        return pd.read_sql_query("SELECT round, name, value FROM round_metrics ORDER BY round, name", self.conn)

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta_once(self, key: str, value: str) -> str:
        """Store `value` unless the key exists; return what is stored (so concurrent callers agree)."""
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
        return self.get_meta(key)  # type: ignore[return-value]

    # -- status ------------------------------------------------------------------------------

    def counts(self) -> list[RoundCounts]:
        query = """
        SELECT r.round, r.model,
          (SELECT COUNT(*) FROM batches b WHERE b.round = r.round),
          (SELECT COUNT(*) FROM items i WHERE i.round = r.round),
          (SELECT COUNT(*) FROM hits h WHERE h.round = r.round AND h.state = 'created'),
          (SELECT COUNT(*) FROM assignments a JOIN hits h ON h.hit_id = a.hit_id WHERE h.round = r.round),
          (SELECT COUNT(*) FROM ratings x JOIN items i ON i.id = x.item_id WHERE i.round = r.round),
          (SELECT COUNT(*) FROM scores s WHERE s.round = r.round),
          (SELECT COUNT(*) FROM checkpoints c WHERE c.round = r.round)
        FROM rounds r ORDER BY r.round
        """
        return [RoundCounts(*row) for row in self.conn.execute(query)]


def _where(filters: dict[str, Any]) -> tuple[str, tuple]:
    """' WHERE a = ? AND b = ?' for the filters that are set (None means no filter)."""
    clauses = [(k, v) for k, v in filters.items() if v is not None]
    if not clauses:
        return "", ()
    return " WHERE " + " AND ".join(f"{k} = ?" for k, _ in clauses), tuple(v for _, v in clauses)


def _chunks(seq: list, size: int) -> Iterator[list]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat(timespec="seconds")
    return str(value)
