from pathlib import Path

import pytest

from mturk_tune.config import config_from_dict, example_config_text, load_config, replace
from mturk_tune.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_sandbox_and_safe():
    config = load_config(None)
    assert config.publish.endpoint == "sandbox"
    assert config.model.name == "gpt2"


def test_example_config_documents_every_key_and_matches_the_code():
    # config.example.toml is rendered from the dataclasses: one place for each key and its doc.
    assert (REPO / "config.example.toml").read_text(encoding="utf-8") == example_config_text()
    lines = example_config_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[i - 1].startswith("# "), f"undocumented key: {line}"


def test_example_config_loads(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(example_config_text(), encoding="utf-8")
    from mturk_tune.quality import QualityPolicy
    from mturk_tune.tuning import TuneConfig

    loaded = load_config(path)
    defaults = load_config(None)
    assert (loaded.model, loaded.generate, loaded.publish, loaded.crowd) == (
        defaults.model, defaults.generate, defaults.publish, defaults.crowd)
    assert TuneConfig.from_dict(dict(loaded.tune)) == TuneConfig()
    assert QualityPolicy.from_dict(dict(loaded.quality)) == QualityPolicy()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"publish": {"assignments": "three"}}, r"\[publish\] assignments must be an integer"),
        ({"publish": {"reward": 0.05}}, r"\[publish\] reward must be a string"),
        ({"publish": {"reward": "0.055"}}, r"reward must be dollars"),
        ({"publish": {"endpoint": "prod"}}, r"endpoint must be sandbox, production, local"),
        ({"publish": {"colour": 1}}, r"unknown key 'colour' in \[publish\]"),
        ({"bogus": {}}, r"unknown section \[bogus\]"),
        ({"generate": {"samples_per_prompt": 0}}, r"samples_per_prompt must be at least 1"),
        ({"tune": {"epochs": "two"}}, r"test.toml: \[tune\] .*epochs"),
        ({"quality": {"nonsense": 1}}, r"test.toml: \[quality\] .*nonsense"),
    ],
)
def test_bad_config_names_key_and_fix(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data, source="test.toml")


def test_precedence_cli_over_env_over_file(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text('[publish]\nassignments = 5\nreward = "0.10"\n', encoding="utf-8")
    assert load_config(path).publish.assignments == 5
    monkeypatch.setenv("MTURK_TUNE_PUBLISH_ASSIGNMENTS", "7")
    config = load_config(path)
    assert config.publish.assignments == 7
    assert config.publish.reward == "0.10"
    assert replace(config, "publish", assignments=9, reward=None).publish.assignments == 9


def test_bad_env_value_is_named(monkeypatch):
    monkeypatch.setenv("MTURK_TUNE_PUBLISH_ASSIGNMENTS", "lots")
    with pytest.raises(ConfigError, match="MTURK_TUNE_PUBLISH_ASSIGNMENTS must be an integer"):
        load_config(None)


def test_invalid_toml_says_so(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[publish\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_env_overrides_reach_the_engine_sections(monkeypatch):
    monkeypatch.setenv("MTURK_TUNE_TUNE_EPOCHS", "7")
    monkeypatch.setenv("MTURK_TUNE_TUNE_SCHEME", "exponential")
    monkeypatch.setenv("MTURK_TUNE_QUALITY_MIN_GOLD_ACCURACY", "0.9")
    config = load_config(None)
    assert config.tune["epochs"] == 7 and config.tune["scheme"] == "exponential"
    assert config.quality["min_gold_accuracy"] == 0.9
