"""Batched sampling with the built-in offline model."""

from collections import Counter

import pytest
import torch

from mturk_tune import tiny_corpus
from mturk_tune.errors import MturkTuneError
from mturk_tune.generation import Sample, generate_samples, left_pad, sample_next_token
from mturk_tune.models import BUILTIN_TINY, builtin_model_path, load_model_and_tokenizer

PROMPTS = [
    "Write a short review of a hotel.",
    "Tell a short story about a fox.",
    "I bought this phone",
    "Review of the restaurant: We ate at the restaurant with my parents last week. The soup was",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The built-in model and tokenizer, from a cache under this session's temp root (shared with test_models)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTURK_TUNE_CACHE", str(tmp_path_factory.getbasetemp() / "mturk-tune-cache"))
        builtin_model_path()
        yield load_model_and_tokenizer(BUILTIN_TINY, device="cpu")


def test_n_samples_per_prompt_in_prompt_then_sample_order(tiny):
    model, tokenizer = tiny
    finished = []
    samples = generate_samples(model, tokenizer, PROMPTS, n=3, max_new_tokens=20, batch_size=5,
                               progress=finished.append)
    assert [(s.prompt_index, s.sample_index) for s in samples] == [(p, i) for p in range(4) for i in range(3)]
    assert all(isinstance(s, Sample) and s.prompt == PROMPTS[s.prompt_index] for s in samples)
    assert all(0 < s.n_tokens <= 20 and s.text == s.text.strip() for s in samples)
    assert finished == [5, 5, 2]  # one call per batch, with the samples that batch finished


def test_completion_excludes_the_prompt_and_stops_at_eos(tiny):
    model, tokenizer = tiny
    samples = generate_samples(model, tokenizer, PROMPTS, n=4, max_new_tokens=120, seed=3)
    for sample in samples:
        assert not sample.text.startswith(sample.prompt)
        assert tokenizer.eos_token not in sample.text
    # The built-in model ends its reviews with EOS well before 120 tokens.
    assert sum(s.n_tokens < 120 for s in samples) >= len(samples) // 2


def test_builtin_model_writes_words(tiny):
    model, tokenizer = tiny
    samples = generate_samples(model, tokenizer, PROMPTS, n=4, max_new_tokens=40, seed=1)
    vocabulary = tiny_corpus.vocabulary()
    words = [word for sample in samples for word in tiny_corpus.words_of(sample.text)]
    known = sum(word in vocabulary for word in words)
    assert len(words) > 100
    assert known / len(words) > 0.95


def test_generations_follow_the_prompt(tiny):
    model, tokenizer = tiny
    prompts = ["Write a short review of a hotel.", "Write a short review of a bakery."]
    samples = generate_samples(model, tokenizer, prompts, n=8, max_new_tokens=40, seed=2)
    mentions = Counter((s.prompt_index, word) for s in samples for word in tiny_corpus.words_of(s.text))
    assert mentions[0, "hotel"] > mentions[0, "bakery"]
    assert mentions[1, "bakery"] > mentions[1, "hotel"]


def test_same_seed_same_samples_other_seed_other_samples(tiny):
    model, tokenizer = tiny
    first = generate_samples(model, tokenizer, PROMPTS, n=2, max_new_tokens=30, seed=7)
    again = generate_samples(model, tokenizer, PROMPTS, n=2, max_new_tokens=30, seed=7)
    other = generate_samples(model, tokenizer, PROMPTS, n=2, max_new_tokens=30, seed=8)
    assert first == again
    assert [s.text for s in first] != [s.text for s in other]
    assert len({s.text for s in first}) > len(PROMPTS)  # the n samples of a prompt differ


def test_generating_does_not_touch_the_global_random_state(tiny):
    model, tokenizer = tiny
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    generate_samples(model, tokenizer, PROMPTS[:1], max_new_tokens=5)
    assert torch.equal(torch.rand(3), expected)


def test_greedy_output_does_not_depend_on_batch_company(tiny):
    """Left padding with real-token positions: a short prompt batched with longer ones decodes as it does alone."""
    model, tokenizer = tiny
    alone = [generate_samples(model, tokenizer, [p], max_new_tokens=25, temperature=0)[0].text for p in PROMPTS]
    batched = [s.text for s in generate_samples(model, tokenizer, PROMPTS, max_new_tokens=25, temperature=0)]
    assert batched == alone
    assert len(set(batched)) == len(PROMPTS)


def test_left_pad_aligns_prompt_ends():
    input_ids, attention_mask = left_pad([[5, 6, 7], [8]], pad_id=0, device="cpu")
    assert input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_top_p_samples_only_from_the_nucleus():
    # Row 0: one token holds 90% of the mass, so top_p=0.8 leaves only it. Row 1: flat, so the nucleus is wide
    # (more than the 16 tokens looked at first).
    probs = torch.full((2, 100), 0.1 / 99)
    probs[0, 42] = 0.9
    probs[1] = 1 / 100
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next_token(probs.log(), 1.0, 0.8, generator) for _ in range(300)])
    assert set(draws[:, 0].tolist()) == {42}
    assert len(set(draws[:, 1].tolist())) > 50


def test_top_p_keeps_the_same_tokens_as_transformers():
    """Draws stay inside the nucleus that transformers' own TopPLogitsWarper keeps, for peaked and flat rows."""
    from transformers import TopPLogitsWarper

    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(32, 600, generator=generator) * torch.linspace(0.2, 8.0, 32)[:, None]
    allowed = ~torch.isinf(TopPLogitsWarper(0.9)(None, logits.clone()))
    draws = torch.stack([sample_next_token(logits, 1.0, 0.9, generator) for _ in range(50)], dim=1)
    assert allowed.gather(1, draws).all()
    assert (allowed.sum(dim=1) > 256).any() and (allowed.sum(dim=1) < 16).any()  # every search width is used


def test_sampling_follows_the_distribution():
    probs = torch.tensor([[0.5, 0.3, 0.2, 0.0]])
    generator = torch.Generator().manual_seed(1)
    draws = Counter(sample_next_token(probs.log(), 1.0, 1.0, generator).item() for _ in range(4000))
    assert draws[3] == 0
    assert [round(draws[i] / 4000, 1) for i in range(3)] == [0.5, 0.3, 0.2]


def test_empty_prompt_still_generates(tiny):
    model, tokenizer = tiny
    (sample,) = generate_samples(model, tokenizer, [""], max_new_tokens=10)
    assert sample.n_tokens > 0 and sample.text


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(prompts=[]), "no prompts"),
        (dict(prompts="one prompt"), "not one string"),
        (dict(n=0), "n \\(samples per prompt\\) is 0"),
        (dict(max_new_tokens=0), "max_new_tokens is 0"),
        (dict(top_p=0), "top_p is 0"),
        (dict(temperature=-1), "temperature is -1"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(arguments, message):
    call = dict(prompts=PROMPTS) | arguments
    with pytest.raises(MturkTuneError, match=message):
        generate_samples(None, None, **call)  # refused before the model is touched


def test_prompt_longer_than_the_context_keeps_its_end(tiny):
    model, tokenizer = tiny
    long_prompt = "The room was clean. " * 120 + "I bought this phone"
    assert len(tokenizer(long_prompt)["input_ids"]) > model.config.n_positions
    (sample,) = generate_samples(model, tokenizer, [long_prompt], max_new_tokens=10, temperature=0)
    assert sample.prompt == long_prompt and sample.n_tokens > 0


def test_more_new_tokens_than_the_context_is_refused(tiny):
    model, tokenizer = tiny
    with pytest.raises(MturkTuneError, match="at most 256 tokens"):
        generate_samples(model, tokenizer, PROMPTS, max_new_tokens=10_000)
