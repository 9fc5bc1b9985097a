"""The simulated crowd reads HIT pages like a person, answers by profile, and is reproducible."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest

from mturk_tune.marketplace import Marketplace
from mturk_tune.marketplace.crowd import (
    RatedItem,
    SimulatedCrowd,
    WorkerProfile,
    default_preference,
    make_crowd,
    read_form,
)
from mturk_tune.marketplace.documents import ANSWERS_NAMESPACE, parse_answer_xml


def page(items: dict[str, str], scale: range = range(1, 6)) -> str:
    """A tiny HIT page that follows the form contract of hit_templates/."""
    blocks = []
    for item_id, text in items.items():
        radios = "".join(f'<label><input type="radio" name="rating__{item_id}" value="{v}"> {v}</label>' for v in scale)
        blocks.append(f'<section class="item" data-item-id="{item_id}"><div class="item-text">{text}</div>'
                      f"<fieldset>{radios}</fieldset></section>")
    return ('<!DOCTYPE html><form method="post"><input type="hidden" name="assignmentId" value="">'
            + "".join(blocks) + '<textarea name="comment"></textarea><button>Submit</button></form>')


def html_question(html: str) -> str:
    return ('<HTMLQuestion xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/'
            f'HTMLQuestion.xsd"><HTMLContent><![CDATA[{html}]]></HTMLContent><FrameHeight>0</FrameHeight>'
            "</HTMLQuestion>")


def publish(market: Marketplace, n_hits: int, items_per_hit: int = 4, max_assignments: int = 3) -> None:
    for h in range(n_hits):
        # Item text "0.xx" lets a test preference read the true quality straight from the text.
        items = {f"h{h}i{i}": f"{((h * items_per_hit + i) * 37 % 101) / 100:.2f}" for i in range(items_per_hit)}
        market.create_hit(Title="Rate texts", Description="Rate each text", Reward="0.05",
                          AssignmentDurationInSeconds=900, LifetimeInSeconds=3600,
                          MaxAssignments=max_assignments, Question=html_question(page(items)))


def quality_from_text(text: str) -> float:
    return float(text)


def ratings_by(market: Marketplace) -> dict[str, dict[str, int]]:
    """worker -> item -> rating, read back from the submitted answers."""
    out: dict[str, dict[str, int]] = {}
    cursor = None
    while True:
        page_ = market.list_hits(MaxResults=100, **({"NextToken": cursor} if cursor else {}))
        for hit in page_["HITs"]:
            for a in market.list_assignments_for_hit(HITId=hit["HITId"], MaxResults=100)["Assignments"]:
                for name, value in parse_answer_xml(a["Answer"]):
                    if name.startswith("rating__"):
                        out.setdefault(a["WorkerId"], {})[name[len("rating__"):]] = int(value)
        cursor = page_.get("NextToken")
        if not cursor:
            return out


def items_with_quality(n: int) -> list[RatedItem]:
    return [RatedItem(f"item{i}", f"{i / (n - 1):.3f}", ["1", "2", "3", "4", "5"]) for i in range(n)]


def correlation(xs: list[float], ys: list[float]) -> float:
    return statistics.correlation(xs, ys)


# ------------------------------------------------------------------ reading pages


def test_read_form_finds_items_texts_and_offered_values():
    html = page({"a1": "Caf&eacute; &amp; <b>bold</b> text", "b2": "plain"}, scale=range(1, 8))
    form = read_form(html)
    assert [(i.item_id, i.text) for i in form.items] == [("a1", "Café & bold text"), ("b2", "plain")]
    assert form.items[0].values == [str(v) for v in range(1, 8)]
    assert form.field_order == ["assignmentId", "rating__a1", "rating__b2", "comment"]


def test_read_form_tolerates_sloppy_markup():
    html = ('<div data-item-id="x"><p class="note item-text">unclosed <i>tags<br>here'
            '<input type=radio name=rating__x value=1><input type=radio name=rating__x value=2>'
            '<input type=radio name=gold value=yes><input type=radio name=gold value=no>')
    form = read_form(html)
    assert [(i.item_id, i.text, i.values) for i in form.items] == [("x", "unclosed tags here", ["1", "2"])]
    assert form.other_radio_groups == {"gold": ["yes", "no"]}


# ------------------------------------------------------------------ the work loop


def test_crowd_answers_every_slot_with_valid_question_form_answers():
    market = Marketplace()
    publish(market, n_hits=6, items_per_hit=3, max_assignments=3)
    workers = make_crowd(5, {"careful": 1.0, "spammer": 1.0}, seed=3)
    ticks = []
    assert SimulatedCrowd(market, workers, seed=3).work(progress=ticks.append) == 18
    assert ticks == [1] * 18
    for hit in market.list_hits()["HITs"]:
        assignments = market.list_assignments_for_hit(HITId=hit["HITId"])["Assignments"]
        assert len(assignments) == 3 and len({a["WorkerId"] for a in assignments}) == 3  # one per worker
        for a in assignments:
            assert f'xmlns="{ANSWERS_NAMESPACE}"' in a["Answer"]
            fields = parse_answer_xml(a["Answer"])
            assert [name for name, _ in fields][-1] == "comment"  # page order; assignmentId is not an answer
            assert all(value in {"1", "2", "3", "4", "5"} for name, value in fields if name.startswith("rating__"))
            assert len([name for name, _ in fields if name.startswith("rating__")]) == 3
            assert a["SubmitTime"] > a["AcceptTime"]
    assert market.list_available_hits() == []


def test_refused_workers_leave_the_slot_to_others_and_max_assignments_stops_early():
    market = Marketplace()
    publish(market, n_hits=4, max_assignments=2)
    workers = [WorkerProfile(f"AW{i}", "careful") for i in range(3)]
    market.create_worker_block(WorkerId="AW0", Reason="spam")
    crowd = SimulatedCrowd(market, workers, preference=quality_from_text, seed=1)
    assert crowd.work(max_assignments=3) == 3
    assert crowd.work() == 5  # the remaining slots
    assert "AW0" not in ratings_by(market)
    assert crowd.work() == 0  # nothing left to do


def test_crowd_is_deterministic_for_a_seed():
    def run(seed: int) -> dict:
        market = Marketplace()
        publish(market, n_hits=8, max_assignments=3)
        crowd = SimulatedCrowd(market, make_crowd(6, {"careful": 2, "spammer": 1, "colluding": 1}, seed=seed),
                               seed=seed)
        crowd.work()
        return ratings_by(market)

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_fast_clickers_are_fast_and_careful_workers_take_their_time():
    market = Marketplace()
    publish(market, n_hits=10, items_per_hit=5, max_assignments=2)
    workers = [WorkerProfile("AFAST", "fast_clicker"), WorkerProfile("ASLOW", "careful", seconds_per_item=20)]
    SimulatedCrowd(market, workers, seed=2).work()
    seconds: dict[str, list[float]] = {}
    for hit in market.list_hits()["HITs"]:
        for a in market.list_assignments_for_hit(HITId=hit["HITId"])["Assignments"]:
            seconds.setdefault(a["WorkerId"], []).append((a["SubmitTime"] - a["AcceptTime"]).total_seconds())
    assert max(seconds["AFAST"]) < 20 < statistics.median(seconds["ASLOW"])


# ------------------------------------------------------------------ profiles


@pytest.fixture
def crowd_for_rating():
    return SimulatedCrowd(Marketplace(), [WorkerProfile("ADUMMY", "careful")], preference=quality_from_text, seed=5)


def test_spammer_is_roughly_uniform(crowd_for_rating):
    spammer = WorkerProfile("ASPAM", "spammer")
    counts = Counter(crowd_for_rating.rate(spammer, item) for item in items_with_quality(1000))
    assert set(counts) == {"1", "2", "3", "4", "5"}
    assert all(150 <= n <= 250 for n in counts.values()), counts


def test_straightliner_always_gives_the_same_value(crowd_for_rating):
    straight = WorkerProfile("ASTRAIGHT", "straightliner")
    assert len({crowd_for_rating.rate(straight, item) for item in items_with_quality(200)}) == 1


def test_careful_workers_follow_the_hidden_preference_and_others_do_not(crowd_for_rating):
    items = items_with_quality(300)
    truth = [float(i.text) for i in items]

    def corr(profile: WorkerProfile) -> float:
        return correlation(truth, [float(crowd_for_rating.rate(profile, i)) for i in items])

    careful, noisy = corr(WorkerProfile("ACAREFUL", "careful")), corr(WorkerProfile("ANOISY", "noisy", noise=1.5))
    assert careful > 0.8
    assert 0.3 < noisy < careful
    assert corr(WorkerProfile("AADV", "adversarial")) < -0.8
    assert abs(corr(WorkerProfile("ASPAM", "spammer"))) < 0.2


def test_biased_workers_shift_their_ratings(crowd_for_rating):
    items = items_with_quality(300)

    def mean(profile: WorkerProfile) -> float:
        return statistics.mean(int(crowd_for_rating.rate(profile, i)) for i in items)

    assert mean(WorkerProfile("AHIGH", "biased", bias=1.0)) - mean(WorkerProfile("AFAIR", "careful")) > 0.6


def test_colluders_agree_with_each_other_not_with_the_truth(crowd_for_rating):
    items = items_with_quality(200)
    ring = [WorkerProfile(f"ARING{i}", "colluding", group="ring-1") for i in range(3)]
    answers = [[crowd_for_rating.rate(w, i) for i in items] for w in ring]
    assert answers[0] == answers[1] == answers[2]
    other = [crowd_for_rating.rate(WorkerProfile("ALONE", "colluding", group="ring-2"), i) for i in items]
    assert other != answers[0]


def test_make_crowd_follows_the_mix_and_is_reproducible():
    crowd = make_crowd(10, {"careful": 0.7, "spammer": 0.2, "colluding": 0.1}, seed=4)
    assert Counter(w.kind for w in crowd) == {"careful": 7, "spammer": 2, "colluding": 1}
    assert len({w.worker_id for w in crowd}) == 10
    assert all(w.worker_id.startswith("A") and w.worker_id.isalnum() and w.worker_id.isupper() for w in crowd)
    assert make_crowd(10, {"careful": 0.7, "spammer": 0.2, "colluding": 0.1}, seed=4) == crowd
    with pytest.raises(ValueError, match="unknown worker kinds"):
        make_crowd(3, {"lazy": 1.0}, seed=0)


def test_default_preference_rewards_positive_words():
    assert default_preference("a good and helpful answer, thanks") > default_preference("a plain answer") == 0.5
    assert default_preference("terrible, wrong and useless") < 0.5
    assert 0.0 <= default_preference("bad " * 50) <= default_preference("good " * 50) <= 1.0
