"""The closed loop on the built-in model and the embedded marketplace: rounds, resume, trace."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from mturk_tune.cli import cli
from mturk_tune.config import CrowdSection
from mturk_tune.errors import ConfigError
from mturk_tune.loop import (
    builtin_gold,
    format_trace,
    gold_from_preference,
    round_progress,
    round_trace,
    run_loop,
)
from mturk_tune.preferences import load_preference
from mturk_tune.prompts import Prompt

PREFERENCE = "target_words:clean,friendly,lovely,fresh,kind,quiet,comfortable,delicious"
# Small enough for a test: 3 prompts x 2 samples, 2 generated + 2 gold items per HIT, 3 workers per HIT.
TINY = {
    "publish": {"endpoint": "local", "items_per_hit": 4, "assignments": 3, "gold_rate": 0.5, "concurrency": 2},
    "generate": {"samples_per_prompt": 2, "max_new_tokens": 12},
    "quality": {"gold_tolerance": 1.0, "min_gold_answers": 2, "min_gold_accuracy": 0.75},
    "tune": {"epochs": 1, "learning_rate": 1e-3, "eval_prompts": 1, "sample_max_new_tokens": 8},
}
PROMPTS = [Prompt(id=f"p{i}", text=f"Write a short review of a {t}.") for i, t in enumerate(["hotel", "bakery", "park"])]


def tiny_workspace(root):
    from mturk_tune.workspace import init_workspace

    return init_workspace(root, model="builtin:tiny", settings=TINY)


@pytest.fixture(scope="module")
def looped(tmp_path_factory, tiny_model_dir):
    """Two rounds through the CLI, as a user runs them."""
    root = tmp_path_factory.mktemp("loop") / "ws"
    ws = tiny_workspace(root)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": p.id, "prompt": p.text}) + "\n" for p in PROMPTS))
    args = ["-w", str(root), "loop", "--rounds", "2", "--prompts", str(prompts), "--preference", PREFERENCE,
            "--workers", "8", "--mix", "careful=0.6,spammer=0.4", "--seed", "3"]
    first = CliRunner().invoke(cli, args, catch_exceptions=False)
    second = CliRunner().invoke(cli, args, catch_exceptions=False)
    yield ws, first, second
    ws.store.close()


def test_two_rounds_tune_twice_and_evaluate_the_last_model(looped):
    ws, first, _ = looped
    assert first.exit_code == 0, first.output
    store = ws.store
    counts = {c.round: c for c in store.counts()}
    assert sorted(counts) == [0, 1, 2]
    assert [c.checkpoints for c in counts.values()] == [1, 1, 0]
    # The last round is generated from the last checkpoint for evaluation only: nothing published.
    assert counts[2].items == 6 and counts[2].hits == 0
    assert store.round_model(2) == store.checkpoints()[-1]["path"]
    metrics = {(m["round"], m["name"]): m["value"] for m in store.metrics_frame().to_dict("records")}
    for round_ in (0, 1, 2):
        assert 0.0 <= metrics[(round_, "true_reward")] <= 1.0
    for round_ in (0, 1):
        assert 0.0 <= metrics[(round_, "rated_reward")] <= 1.0
        assert metrics[(round_, "cost")] > 0
        assert metrics[(round_, "ratings")] == counts[round_].ratings
    assert "true reward by round (round 0 first)" in first.output


def test_running_the_loop_again_repeats_nothing(looped):
    ws, first, second = looped
    assert second.exit_code == 0, second.output
    assert "0 steps run" in second.output
    assert "2 rounds already tuned (the workspace is at round 2)" in second.output
    # Nothing was published twice: the marketplace holds exactly the HITs of rounds 0 and 1.
    from mturk_tune.requester import make_client, resolve_endpoint

    client = make_client(resolve_endpoint("local"), marketplace_db=ws.marketplace_db)
    assert client.list_hits(MaxResults=100)["NumResults"] == 6
    assert sum(c.hits for c in ws.store.counts()) == 6


def test_review_decided_every_assignment_and_aggregation_saw_only_approved_ratings(looped):
    ws, _, _ = looped
    store = ws.store
    for round_ in (0, 1):
        assignments = store.assignments_frame(round_=round_)
        assert set(assignments["status"]) <= {"Approved", "Rejected"}
        approved = assignments.loc[assignments["status"] == "Approved", "assignment_id"]
        ratings = store.ratings_frame(round_=round_)
        kept = ratings[ratings["assignment_id"].isin(approved)]
        scores = store.scores_frame(round_=round_, method="mean").set_index("task")
        expected = kept.groupby("task")["label"].mean()
        assert scores.loc[expected.index, "label"].tolist() == pytest.approx(expected.tolist())


def test_round_trace_names_what_each_checkpoint_came_from(looped):
    ws, _, _ = looped
    store = ws.store
    trace = round_trace(store, 0)
    assert trace["model"] == "builtin:tiny"
    assert trace["batches"][0]["generated_items"] == 6 and trace["batches"][0]["gold_items"] == 6
    assert trace["hits"]["created"] == 3 and len(trace["hits"]["ids"]) == 3
    assert trace["assignments"]["total"] == 9
    assert trace["assignments"].get("approved", 0) + trace["assignments"].get("rejected", 0) == 9
    assert trace["ratings"]["total"] == 9 * 4
    assert sum(w["assignments"] for w in trace["workers"]) == 9
    assert trace["checkpoint"]["path"] == store.round_model(1)
    assert trace["checkpoint"]["provenance"]["round"] == 0
    assert "true_reward" in trace["metrics"]
    lines = format_trace(trace)
    assert lines[0].startswith("round 0") and any(line.strip().startswith("checkpoint ") for line in lines)
    assert round_trace(store, 2)["checkpoint"] is None
    with pytest.raises(Exception, match="round 9 does not exist"):
        round_trace(store, 9)


def test_the_hidden_preference_is_fixed_for_a_workspace(looped):
    ws, _, _ = looped
    with pytest.raises(ConfigError, match="use a new workspace"):
        run_loop(ws, 2, PROMPTS, preference="sentiment")


def test_resume_after_crashes_in_publish_review_and_tune(tmp_path, tiny_model_dir, monkeypatch):
    import mturk_tune.publishing as publishing
    import mturk_tune.reviewing as reviewing
    import mturk_tune.rounds as rounds

    ws = tiny_workspace(tmp_path / "ws")
    crowd = CrowdSection(workers=6, seed=1, mix={"careful": 0.5, "spammer": 0.5})
    kwargs = dict(preference=PREFERENCE, crowd=crowd)

    real_create, calls, lock = publishing._create_hit, [], threading.Lock()

    def create_then_crash(*args, **kw):
        with lock:
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("killed while publishing")
        return real_create(*args, **kw)

    monkeypatch.setattr(publishing, "_create_hit", create_then_crash)
    with pytest.raises(RuntimeError, match="publishing"):
        run_loop(ws, 1, PROMPTS, **kwargs)
    monkeypatch.setattr(publishing, "_create_hit", real_create)
    assert round_progress(ws.store, 0, "mean") == {**dict.fromkeys(round_progress(ws.store, 0, "mean"), False),
                                                   "generate": True}

    real_apply = reviewing.apply_review

    def apply_half_then_crash(store, client, decisions, **kw):
        real_apply(store, client, decisions.iloc[: len(decisions) // 2], **kw)
        raise RuntimeError("killed while reviewing")

    monkeypatch.setattr(reviewing, "apply_review", apply_half_then_crash)
    with pytest.raises(RuntimeError, match="reviewing"):
        run_loop(ws, 1, PROMPTS, **kwargs)
    monkeypatch.setattr(reviewing, "apply_review", real_apply)
    assert (ws.store.assignments_frame(round_=0)["status"] == "Submitted").any()

    def tune_crash(*args, **kw):
        raise RuntimeError("killed while tuning")

    monkeypatch.setattr(rounds, "tune_round", tune_crash)
    with pytest.raises(RuntimeError, match="tuning"):
        run_loop(ws, 1, PROMPTS, **kwargs)
    monkeypatch.undo()
    done = round_progress(ws.store, 0, "mean")
    assert done["aggregate"] and not done["tune"]

    result = run_loop(ws, 1, PROMPTS, **kwargs)
    assert result.steps_run == [(0, "tune"), (1, "generate")]
    store = ws.store
    assert len(store.hits(round_=0)) == 3 and not store.pending_hit_intents()
    assert len(store.assignments_frame(round_=0)) == 9
    # Every assignment was decided exactly once, across the interrupted and the resumed review.
    actions = store.actions_frame()
    decided = actions[actions["kind"].isin(["approve", "reject"])]
    assert sorted(decided["target"]) == sorted(store.assignments_frame(round_=0)["assignment_id"])
    assert len(store.checkpoints()) == 1 and store.current_round() == 1
    assert len(result.true_reward) == 2


def test_without_review_every_rating_is_aggregated_and_nobody_is_judged(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws")
    crowd = CrowdSection(workers=6, seed=2, mix={"careful": 0.5, "spammer": 0.5})
    result = run_loop(ws, 1, PROMPTS, review=False, preference=PREFERENCE, crowd=crowd, evaluate_final=False)
    store = ws.store
    assert set(store.assignments_frame(round_=0)["status"]) == {"Submitted"}
    assert store.actions_frame().empty
    round0 = result.rounds[0]
    assert round0["ratings_kept"] == round0["ratings"] == 36
    assert len(result.true_reward) == 1  # no evaluation round asked for
    assert store.items_frame(round_=1).empty


def test_gold_labels_follow_the_hidden_preference_and_start_at_the_scale_ends():
    preference = load_preference("length_band:3-4")
    texts = ["one", "one two", "one two three", "one two three four", "a b c d e f g h i j k"]
    gold = gold_from_preference(preference, texts, count=4)
    labels = {g.text: g.label for g in gold}
    assert labels["one two three"] == 5.0 and labels["a b c d e f g h i j k"] == 1.0
    assert [g.label for g in gold[:2]] == [1.0, 5.0]
    assert all(g.label == round(1 + 4 * preference(g.text)) for g in gold)
    assert len({g.id for g in gold}) == 4
    assert len(builtin_gold(PREFERENCE, count=12)) == 12
    with pytest.raises(ConfigError, match="rates differently"):
        gold_from_preference(preference, ["one two three", "a b c"], count=2)


def test_loop_refuses_nonsense_before_doing_anything(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws")
    with pytest.raises(ConfigError, match="rounds must be at least 1"):
        run_loop(ws, 0, PROMPTS)
    with pytest.raises(ConfigError, match="unknown preference"):
        run_loop(ws, 1, PROMPTS, preference="vibes")
    with pytest.raises(ConfigError, match="unknown worker kinds in mix: robot"):
        run_loop(ws, 1, PROMPTS, preference="sentiment", crowd=CrowdSection(mix={"careful": 0.5, "robot": 0.5}))
    assert ws.store.counts()[0].batches == 0
    # Nothing ran, so the workspace may still choose its hidden preference.
    assert ws.store.get_meta("loop.preference") is None
