"""One whole round against MTurk's sandbox endpoint, served by moto with the embedded marketplace."""

from __future__ import annotations

import boto3

from mturk_tune.collecting import collect
from mturk_tune.config import GenerateSection
from mturk_tune.generating import generate_batch
from mturk_tune.generation import generate_samples
from mturk_tune.models import load_model_and_tokenizer
from mturk_tune.prompts import Prompt
from mturk_tune.publishing import plan_publish, publish
from mturk_tune.requester import SANDBOX_URL, resolve_endpoint
from mturk_tune.rounds import tune_round
from mturk_tune.scoring import aggregate_round


def test_round_trip_on_the_sandbox_endpoint_under_moto(workspace, mock_mturk):
    from mturk_tune.marketplace.crowd import SimulatedCrowd, make_crowd
    from mturk_tune.marketplace.moto_backend import backend_marketplace

    store = workspace.store
    prompts = [Prompt(id=f"p{i}", text=f"Write a short review of a {t}.") for i, t in enumerate(["hotel", "book", "train", "park"])]
    batch = generate_batch(store, prompts, GenerateSection(samples_per_prompt=2, max_new_tokens=12))
    assert batch.items == 8

    # A plain boto3 client on the real sandbox URL: moto answers with the embedded marketplace.
    client = boto3.client("mturk", region_name="us-east-1", endpoint_url=SANDBOX_URL)
    endpoint = resolve_endpoint("sandbox")
    settings = workspace.config.publish.__class__(endpoint="sandbox", items_per_hit=3, assignments=3, concurrency=2)
    plan = plan_publish(store, endpoint, settings, batch.batch_id)
    assert [len(h) for h in plan.new_hits] == [3, 3, 2]
    publish(store, client, endpoint, settings, plan)
    assert client.list_hits()["NumResults"] == 3

    crowd = SimulatedCrowd(backend_marketplace(), make_crowd(5, {"careful": 0.6, "spammer": 0.4}, seed=1), seed=1)
    submitted = crowd.work()
    assert submitted == 9  # 3 HITs x 3 assignments

    result = collect(store, client, endpoint)
    assert result.new_assignments == 9 and result.parse_errors == 0
    # Every simulated answer becomes exactly one stored rating per item of its HIT.
    assert result.new_ratings == 3 * (3 + 3 + 2)
    ratings = store.ratings_frame()
    assert not ratings.duplicated(["assignment_id", "task"]).any()
    assert collect(store, client, endpoint).new_assignments == 0
    assert len(store.ratings_frame()) == len(ratings)

    scores = aggregate_round(store, workspace.exports_dir, method="mean")
    assert set(scores.items["task"]) == set(store.items_frame(batch_id=batch.batch_id)["id"])
    assert (scores.items["n"] == 3).all()

    tuned = tune_round(workspace, {"epochs": 1})
    assert store.current_round() == 1
    assert store.round_model() == str(tuned.checkpoint)
    model, tokenizer = load_model_and_tokenizer(str(tuned.checkpoint))
    samples = generate_samples(model, tokenizer, ["Write a short review of a hotel."], n=1, max_new_tokens=8)
    assert samples[0].text.strip()
