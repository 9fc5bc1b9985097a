"""SQLite schema of the marketplace, applied as numbered migrations (recorded in ``migrations``).

Times are UTC epoch seconds (REAL); money is integer cents; JSON columns hold lists/dicts
exactly as the API returns them.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE hit_types (
            hit_type_id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            description TEXT NOT NULL,
            keywords TEXT,
            reward_cents INTEGER NOT NULL,
            assignment_duration INTEGER NOT NULL,
            auto_approval_delay INTEGER NOT NULL,
            qualification_requirements TEXT NOT NULL,
            created REAL NOT NULL
        );
        CREATE TABLE hits (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            hit_id TEXT NOT NULL UNIQUE,
            hit_type_id TEXT NOT NULL REFERENCES hit_types(hit_type_id),
            question TEXT NOT NULL,
            requester_annotation TEXT,
            max_assignments INTEGER NOT NULL,
            unit_cost_cents INTEGER NOT NULL,
            created REAL NOT NULL,
            expiration REAL NOT NULL,
            reviewing INTEGER NOT NULL DEFAULT 0,
            disposed INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX hits_type ON hits(hit_type_id);
        CREATE TABLE assignments (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            assignment_id TEXT NOT NULL UNIQUE,
            hit_id TEXT NOT NULL REFERENCES hits(hit_id),
            worker_id TEXT NOT NULL,
            status TEXT NOT NULL,
            accept_time REAL NOT NULL,
            deadline REAL NOT NULL,
            submit_time REAL,
            auto_approval_time REAL,
            approval_time REAL,
            rejection_time REAL,
            answer TEXT,
            requester_feedback TEXT
        );
        CREATE INDEX assignments_hit ON assignments(hit_id, status);
        CREATE INDEX assignments_worker ON assignments(worker_id, status);
        CREATE INDEX assignments_status ON assignments(status);
        -- One live-or-finished assignment per worker and HIT. Returned and abandoned ones free the slot.
        CREATE UNIQUE INDEX assignments_one_per_worker ON assignments(hit_id, worker_id)
            WHERE status IN ('Accepted', 'Submitted', 'Approved', 'Rejected');
        CREATE TABLE bonuses (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            worker_id TEXT NOT NULL,
            assignment_id TEXT NOT NULL REFERENCES assignments(assignment_id),
            hit_id TEXT NOT NULL,
            amount_cents INTEGER NOT NULL,
            fee_cents INTEGER NOT NULL,
            reason TEXT NOT NULL,
            grant_time REAL NOT NULL
        );
        CREATE INDEX bonuses_hit ON bonuses(hit_id);
        CREATE INDEX bonuses_assignment ON bonuses(assignment_id);
        CREATE TABLE request_tokens (
            scope TEXT NOT NULL,
            token TEXT NOT NULL,
            result_id TEXT NOT NULL,
            created REAL NOT NULL,
            PRIMARY KEY (scope, token)
        );
        CREATE TABLE worker_blocks (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            worker_id TEXT NOT NULL UNIQUE,
            reason TEXT NOT NULL,
            created REAL NOT NULL
        );
        CREATE TABLE workers (
            worker_id TEXT PRIMARY KEY,
            country TEXT,
            subdivision TEXT,
            adult INTEGER NOT NULL DEFAULT 1,
            created REAL NOT NULL
        );
        CREATE TABLE qualification_types (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            qualification_type_id TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL,
            keywords TEXT,
            status TEXT NOT NULL,
            retry_delay INTEGER,
            test TEXT,
            answer_key TEXT,
            test_duration INTEGER,
            auto_granted INTEGER NOT NULL DEFAULT 0,
            auto_granted_value INTEGER,
            created REAL NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE qualifications (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            qualification_type_id TEXT NOT NULL,
            worker_id TEXT NOT NULL,
            integer_value INTEGER,
            status TEXT NOT NULL,
            grant_time REAL NOT NULL,
            UNIQUE (qualification_type_id, worker_id)
        );
        CREATE TABLE notification_settings (
            hit_type_id TEXT PRIMARY KEY,
            specification TEXT,
            active INTEGER NOT NULL
        );
        -- Notification messages waiting for delivery (SQS/SNS/Email is outside the marketplace).
        CREATE TABLE notification_outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            destination TEXT NOT NULL,
            transport TEXT NOT NULL,
            message TEXT NOT NULL,
            created REAL NOT NULL,
            delivered INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE worker_messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            worker_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            message_text TEXT NOT NULL,
            sent REAL NOT NULL
        );
        """,
    ),
    (
        2,
        """
        -- Requester API keys the HTTP server accepts (SigV4), and worker invites (token hashes only).
        CREATE TABLE requester_keys (access_key TEXT PRIMARY KEY, secret_key TEXT NOT NULL, created REAL NOT NULL);
        CREATE TABLE invites (
            token_sha256 TEXT PRIMARY KEY,
            worker_id TEXT NOT NULL,
            created REAL NOT NULL,
            last_used REAL
        )
        """,
    ),
    (
        3,
        """
        -- The lazy transitions run at every call: find due assignments without scanning all of them.
        CREATE INDEX assignments_due_deadline ON assignments(status, deadline);
        CREATE INDEX assignments_due_approval ON assignments(status, auto_approval_time)
        """,
    ),
    (
        4,
        """
        -- At-least-once delivery: a message leaves the outbox only after the queue took it. A
        -- deliverer claims rows for a while (claimed_until, wall-clock seconds) so that two
        -- processes on one file rarely send the same message twice. Failures are counted.
        ALTER TABLE notification_outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE notification_outbox ADD COLUMN last_error TEXT;
        ALTER TABLE notification_outbox ADD COLUMN claimed_until REAL;
        CREATE INDEX notification_outbox_pending ON notification_outbox(delivered, seq);
        -- HITReviewable and HITExpired are sent once per transition into that state.
        ALTER TABLE hits ADD COLUMN reviewable_notified INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE hits ADD COLUMN expired_notified INTEGER NOT NULL DEFAULT 0
        """,
    ),
]


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a database to the newest schema; safe to call on every open, from several processes."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied REAL NOT NULL)")
        done = {row[0] for row in conn.execute("SELECT version FROM migrations")}
        for version, script in MIGRATIONS:
            if version in done:
                continue
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO migrations VALUES (?, julianday('now'))", (version,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
