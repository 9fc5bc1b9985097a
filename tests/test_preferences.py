"""Hidden preferences of the simulated crowd, chosen by spec strings."""

from __future__ import annotations

import sys

import pytest

from mturk_tune.errors import ConfigError
from mturk_tune.marketplace.crowd import default_preference
from mturk_tune.preferences import Preference, load_preference, preference_names


def test_sentiment_is_the_crowds_default_preference():
    sentiment = load_preference("sentiment")
    for text in ["a good and kind helper", "terrible, awful, rude", "a table", ""]:
        assert sentiment(text) == default_preference(text)
    assert sentiment.spec == "sentiment"


def test_target_words_scores_the_share_of_listed_words():
    clean = load_preference("target_words:clean,Friendly")
    # 2 of 10 words are targets: a share of 0.2 reaches the default saturation share 0.2.
    assert clean("The room was clean and the staff was friendly too") == pytest.approx(1.0)
    assert clean("The room was clean and the staff was rude too") == pytest.approx(0.5)
    assert clean("nothing to see here") == 0.0
    assert clean("") == 0.0
    # With @0.5 the same text is 0.2 / 0.5 of the way.
    assert load_preference("target_words:clean,friendly@0.5")("The room was clean and the staff was friendly too") == pytest.approx(0.4)


def test_length_band_is_one_inside_and_falls_off_outside():
    band = load_preference("length_band:10-20")
    words = lambda n: " ".join(["word"] * n)  # noqa: E731
    assert band(words(10)) == band(words(15)) == band(words(20)) == 1.0
    assert band(words(5)) == pytest.approx(0.5)  # 5 short of 10, over a fall-off of 10 words
    assert band(words(25)) == pytest.approx(0.5)  # 5 over 20, over a fall-off of 10 words
    assert band(words(0)) == 0.0 and band(words(40)) == 0.0


def test_users_own_function_by_module_and_name(tmp_path, monkeypatch):
    (tmp_path / "my_taste.py").write_text(
        "def exclamations(text):\n    return text.count('!') / 2\n"
        "class Nested:\n    @staticmethod\n    def score(text):\n        return -3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    mine = load_preference("my_taste:exclamations")
    assert mine("wow!") == 0.5
    assert mine("wow!!!!") == 1.0  # values outside [0, 1] are clipped
    assert load_preference("my_taste:Nested.score")("x") == 0.0
    sys.modules.pop("my_taste", None)


def test_callables_and_preferences_pass_through():
    pref = load_preference(lambda text: 0.25)
    assert isinstance(pref, Preference) and pref("anything") == 0.25
    assert load_preference(pref) is pref
    assert pref.mean(["a", "b"]) == 0.25


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "non-empty"),
        ("nope", "unknown preference 'nope'"),
        ("target_words:", "needs an argument"),
        ("target_words: , ,", "lists no words"),
        ("target_words:a,b@2", "share after @"),
        ("length_band:30-20", "MIN <= MAX"),
        ("length_band:short", "MIN-MAX"),
        ("sentiment:strict", "takes no argument"),
        ("no_such_module_for_mturk_tune:score", "cannot import module"),
        ("json:no_such_function", "has no 'no_such_function'"),
        ("json:__doc__", "not a function"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(ConfigError) as error:
        load_preference(spec)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_registry_lists_the_named_preferences():
    assert preference_names() == ["length_band", "sentiment", "target_words"]


def test_nan_from_a_users_function_is_an_error():
    with pytest.raises(ConfigError, match="NaN"):
        load_preference(lambda text: float("nan"))("x")
