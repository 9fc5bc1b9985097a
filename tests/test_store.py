import sqlite3

import pandas as pd

from mturk_tune.hits import build_answer_xml
from mturk_tune.store import MIGRATIONS, Store


def make_store(tmp_path):
    store = Store.create(tmp_path / "state.db", model="builtin:tiny")
    store.add_batch(
        "b1", 0, "builtin:tiny", {"seed": 0},
        [{"id": f"i{k}", "prompt_id": "p1", "prompt": "P", "text": f"text {k}", "model": "builtin:tiny"} for k in range(4)],
    )
    return store


def test_create_is_idempotent_and_records_migrations(tmp_path):
    store = Store.create(tmp_path / "state.db", model="m")
    again = Store.create(tmp_path / "state.db", model="m")
    assert again.current_round() == 0
    assert again.schema_version() == len(MIGRATIONS)
    store.close()
    again.close()


def test_hit_intent_claims_items_once(tmp_path):
    store = make_store(tmp_path)
    store.record_hit_intent("tok1", "b1", 0, "local", "T1", 3, "0.05", ["i0", "i1"])
    assert [r["id"] for r in store.unpublished_items("b1")] == ["i2", "i3"]
    assert store.pending_hit_intents("local")[0]["request_token"] == "tok1"
    store.mark_hit_created("tok1", "HIT1")
    assert store.items_of_hit("HIT1") == ["i0", "i1"]
    assert not store.pending_hit_intents("local")
    # An item can belong to one HIT only: the schema refuses a second claim.
    try:
        store.record_hit_intent("tok2", "b1", 0, "local", "T1", 3, "0.05", ["i1"])
        raise AssertionError("second claim accepted")
    except sqlite3.IntegrityError:
        pass
    assert len(store.hits(created_only=False)) == 1  # the failed claim left nothing behind


def test_raw_answer_is_kept_exactly_once(tmp_path):
    store = make_store(tmp_path)
    store.record_hit_intent("tok1", "b1", 0, "local", "T1", 3, "0.05", ["i0", "i1"])
    store.mark_hit_created("tok1", "HIT1")
    answer = build_answer_xml({"rating__i0": "5", "rating__i1": "2"})
    assignment = {"AssignmentId": "A1", "HITId": "HIT1", "WorkerId": "W1", "Answer": answer}
    assert store.save_raw_assignment(assignment) is True
    assert store.save_raw_assignment(assignment) is False
    assert [r["assignment_id"] for r in store.unparsed_assignments()] == ["A1"]
    store.save_ratings("A1", "W1", {"i0": 5, "i1": 2})
    assert not store.unparsed_assignments()
    ratings = store.ratings_frame(round_=0)
    assert list(ratings.columns[:5]) == ["assignment_id", "hit_id", "task", "worker", "label"]
    assert sorted(ratings["label"]) == [2.0, 5.0]
    raw = store.conn.execute("SELECT answer_xml FROM assignments").fetchone()[0]
    assert raw == answer


def test_scores_checkpoints_and_counts(tmp_path):
    store = make_store(tmp_path)
    items = pd.DataFrame({"task": ["i0", "i1"], "label": [4.5, 2.0], "confidence": [0.8, 0.4], "n": [3, 3], "spread": [0.5, 1.0]})
    store.save_scores(0, "mean", items)
    store.save_scores(0, "mean", items)  # replacing, not duplicating
    assert len(store.scores_frame(round_=0, method="mean")) == 2
    store.add_checkpoint(0, "/ckpt", "builtin:tiny", {"steps": 3})
    assert store.start_round("/ckpt") == 1
    counts = {c.round: c for c in store.counts()}
    assert counts[0].items == 4 and counts[0].scores == 2 and counts[0].checkpoints == 1
    assert counts[1].model == "/ckpt"
