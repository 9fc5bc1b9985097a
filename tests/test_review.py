"""Quality control through the CLI on the local marketplace: gold items, review, extend, tables."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mturk_tune.cli import cli
from mturk_tune.marketplace.crowd import default_preference


def run(ws, *args):
    return CliRunner().invoke(cli, ["-w", str(ws), *args], catch_exceptions=False)


def gold_texts() -> list[str]:
    """Texts at the ends of the hidden preference (gold 1 or 5): a random clicker is then right
    (within one point) 40% of the time, an attentive rater almost always."""
    from mturk_tune.marketplace.crowd import NEGATIVE_WORDS, POSITIVE_WORDS

    good, bad = sorted(POSITIVE_WORDS), sorted(NEGATIVE_WORDS)
    return [f"It was {' and '.join(words[i:i + 3])}." for words in (good, bad) for i in (0, 3, 6)]


@pytest.fixture
def reviewed_round(workspace, tmp_path):
    ws = workspace.root
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Write a short review of a {t}."}) + "\n"
                               for t in ["hotel", "movie", "park", "phone", "book", "train"]))
    gold = ws / "gold.jsonl"
    # Gold labels are what an attentive rater with the crowd's hidden preference answers.
    gold.write_text("".join(json.dumps({"id": f"g{i}", "text": t, "label": round(1 + 4 * default_preference(t))}) + "\n"
                            for i, t in enumerate(gold_texts())))
    config = ws / "mturk-tune.toml"
    config.write_text(config.read_text().replace("gold_tolerance = 0.0", "gold_tolerance = 1.0")
                      .replace("min_gold_answers = 3", "min_gold_answers = 2")
                      .replace('[crowd]\n', '[crowd]\n').replace("mix = { careful = 1.0 }", "mix = { careful = 0.6, spammer = 0.4 }"))
    assert run(ws, "generate", str(prompts), "-n", "2", "--max-new-tokens", "10").exit_code == 0
    out = run(ws, "publish", "--items-per-hit", "6", "--assignments", "5", "--gold", str(gold), "--gold-rate", "0.5")
    assert out.exit_code == 0, out.output
    assert run(ws, "simulate", "--workers", "10", "--seed", "3").exit_code == 0
    assert run(ws, "collect").exit_code == 0
    return workspace


def test_gold_items_are_mixed_into_every_hit(reviewed_round):
    store = reviewed_round.store
    for hit in store.hits():
        kinds = store.items_frame().set_index("id").loc[store.items_of_hit(hit["hit_id"]), "kind"]
        assert (kinds == "gold").sum() == 3 and (kinds == "generated").sum() == 3


def test_review_dry_run_then_apply_once(reviewed_round):
    ws = reviewed_round.root
    dry = run(ws, "review", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing was sent" in dry.output
    assert reviewed_round.store.actions_frame().empty

    applied = run(ws, "review")
    assert applied.exit_code == 0, applied.output
    actions = reviewed_round.store.actions_frame()
    assert (actions["state"] == "done").all()
    rejected = actions[actions["kind"] == "reject"]
    assert len(rejected) > 0, "the planted spammers were not rejected"
    # Every rejected assignment belongs to a spammer of the simulated crowd.
    assignments = reviewed_round.store.assignments_frame().set_index("assignment_id")
    from mturk_tune.marketplace.crowd import make_crowd

    kinds = {w.worker_id: w.kind for w in make_crowd(10, {"careful": 0.6, "spammer": 0.4}, seed=3)}
    assert {kinds[assignments.loc[a, "worker"]] for a in rejected["target"]} == {"spammer"}

    again = run(ws, "review")
    assert "no submitted assignments waiting for review" in again.output
    assert len(reviewed_round.store.actions_frame()) == len(actions)


def test_workers_and_agreement_tables(reviewed_round):
    ws = reviewed_round.root
    table = json.loads(run(ws, "workers", "--json").output)
    assert {row["worker"] for row in table} and all("gold_accuracy" in row for row in table)
    out = run(ws, "agreement")
    assert out.exit_code == 0, out.output
    assert "alpha_ordinal" in out.output and "all" in out.output


def test_extend_adds_assignments_once(reviewed_round):
    ws = reviewed_round.root
    assert run(ws, "aggregate").exit_code == 0
    out = run(ws, "extend", "--threshold", "1.0", "--max-assignments", "2")
    assert out.exit_code == 0, out.output
    assert "extended 2 HITs" in out.output
    sizes = sorted(h["max_assignments"] for h in reviewed_round.store.hits())
    assert sizes.count(6) == 2
    # Run again before anyone answered: the extended HITs wait for their answers, others are chosen.
    again = run(ws, "extend", "--threshold", "1.0", "--max-assignments", "2")
    assert again.exit_code == 0, again.output
    sizes = sorted(h["max_assignments"] for h in reviewed_round.store.hits())
    assert max(sizes) == 6 and sizes.count(6) == min(4, len(sizes))


def test_soft_blocked_workers_cannot_take_the_next_hits(reviewed_round):
    from mturk_tune.marketplace.errors import MTurkError
    from mturk_tune.marketplace.local import open_marketplace

    ws = reviewed_round.root
    config = ws / "mturk-tune.toml"  # no hard blocks: every rejected worker gets the soft block
    config.write_text(config.read_text().replace("hard_block_below_gold_accuracy = 0.3",
                                                  "hard_block_below_gold_accuracy = false"))
    assert run(ws, "review").exit_code == 0
    actions = reviewed_round.store.actions_frame()
    soft = set(actions.loc[actions["kind"] == "soft_block", "target"])
    assert soft, "review soft-blocked nobody"
    reviewed_round.store.add_batch("b-next", 0, "m", {}, [
        {"id": f"n{k}", "prompt_id": "p", "prompt": "x", "text": f"text {k}", "model": "m"} for k in range(4)])
    out = run(ws, "publish", "--batch", "b-next", "--items-per-hit", "4", "--assignments", "2")
    assert out.exit_code == 0, out.output
    market = open_marketplace(reviewed_round.marketplace_db)
    new_hit = reviewed_round.store.hits()[-1]["hit_id"]
    for worker in soft:
        assert new_hit not in {h["HITId"] for h in market.list_available_hits(worker)}
        with pytest.raises(MTurkError):
            market.accept_hit(new_hit, worker)
