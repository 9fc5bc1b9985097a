"""Loading models: the built-in offline model, local directories, hub names, and the errors for bad names."""

import time

import pytest
import torch

from mturk_tune import models
from mturk_tune.errors import ModelNotFound
from mturk_tune.models import BUILTIN_TINY, builtin_model_path, load_model_and_tokenizer, model_name_for_record


@pytest.fixture(scope="module")
def builtin_cache(tmp_path_factory):
    """A cache for the built-in model under this session's temp root: built once, shared with test_generation."""
    cache = tmp_path_factory.getbasetemp() / "mturk-tune-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTURK_TUNE_CACHE", str(cache))
        builtin_model_path()
        yield cache


def test_builtin_model_is_built_into_the_cache_and_reused(builtin_cache):
    path = builtin_model_path()
    assert path == builtin_cache / models.BUILTIN_VERSION
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
    modified = (path / "config.json").stat().st_mtime_ns
    assert builtin_model_path() == path
    assert (path / "config.json").stat().st_mtime_ns == modified  # not rebuilt
    assert not [p for p in builtin_cache.iterdir() if p.name.startswith(".")]  # no staging directory left behind


def test_builtin_model_loads_offline_as_a_small_gpt2(builtin_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = load_model_and_tokenizer(BUILTIN_TINY, device="cpu")
    assert model.config.model_type == "gpt2"
    assert not model.training
    assert model.device.type == "cpu"
    assert tokenizer.pad_token is not None
    assert 1_000 <= len(tokenizer) <= 4_096
    assert sum(p.numel() for p in model.parameters()) < 5_000_000


def test_builtin_model_has_learned_its_corpus(builtin_cache):
    """A trained model finds a corpus sentence far more likely than the same words shuffled."""
    model, tokenizer = load_model_and_tokenizer(BUILTIN_TINY, device="cpu")
    sentence = "I stayed at this hotel last week. The room was clean and the staff was friendly."
    words = sentence.split()
    shuffled = " ".join(words[1::2] + words[::2])

    def loss(text):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            return model(input_ids=ids, labels=ids).loss.item()

    assert loss(sentence) < 2.0  # an untrained model scores ln(vocabulary size), about 7
    assert loss(shuffled) > loss(sentence) + 2.0


def test_local_directory_loads_and_is_recorded_by_absolute_path(builtin_cache, monkeypatch):
    local = builtin_model_path()
    monkeypatch.chdir(local.parent)
    model, tokenizer = load_model_and_tokenizer(f"./{local.name}", device="cpu")
    assert model.config.model_type == "gpt2"
    assert model_name_for_record(f"./{local.name}") == str(local.resolve())
    assert model_name_for_record(BUILTIN_TINY) == BUILTIN_TINY
    assert model_name_for_record("gpt2") == "gpt2"


def test_pick_device_names_a_torch_device():
    device = models.pick_device()
    assert device in {"cuda", "mps", "cpu"}
    torch.empty(1, device=device)


@pytest.mark.parametrize(
    "name, words",
    [
        ("x/y", ["'x/y'", "not found", "builtin:tiny"]),  # a hub name that is not cached
        ("./no/such/model", ["no such directory", "builtin:tiny"]),
        ("builtin:huge", ["builtin:huge", "builtin:tiny"]),
        ("", ["empty"]),
    ],
)
def test_unknown_model_fails_fast_with_a_one_line_message(name, words, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelNotFound) as raised:
        load_model_and_tokenizer(name, device="cpu")
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_directory_without_config_is_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelNotFound, match="has no config.json"):
        load_model_and_tokenizer(str(tmp_path), device="cpu")


def test_uncached_hub_name_fails_fast_when_the_hub_is_unreachable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(ModelNotFound, match="cannot be reached"):
        load_model_and_tokenizer("someone/not-a-cached-model", device="cpu")


def test_concurrent_builders_share_one_result(tmp_path, monkeypatch):
    """A builder that loses the rename race discards its own copy and returns the winner's directory."""
    calls = []

    def fake_build(out_dir):
        calls.append(out_dir)
        (out_dir / "config.json").write_text("{}")
        # Another process finishes first while this one is still building.
        winner = tmp_path / models.BUILTIN_VERSION
        if not winner.exists():
            winner.mkdir()
            (winner / "config.json").write_text('{"winner": true}')
            (winner / models._READY_MARKER).write_text("done")

    monkeypatch.setattr(models, "_build_builtin_model", fake_build)
    path = builtin_model_path(tmp_path)
    assert path == tmp_path / models.BUILTIN_VERSION
    assert "winner" in (path / "config.json").read_text()
    assert len(calls) == 1 and not calls[0].exists()
