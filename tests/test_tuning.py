"""Weighted fine-tuning: the loss against a hand computation, its invariances, resume, checkpoints and bad input."""

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mturk_tune import tiny_corpus
from mturk_tune.errors import ConfigError, InputFileError, ModelNotFound
from mturk_tune.tune_data import pad_efficiency, plan_epoch, tokenize_examples
from mturk_tune.tune_loss import WeightedLMLoss, collate
from mturk_tune.tuning import (
    FeedbackExample,
    ReferenceExample,
    TuneConfig,
    read_reference,
    tune,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A random-weight 2-layer GPT-2 with a 400-token BPE trained on the tiny corpus (built in well under a second)."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    tokenizer = GPT2Tokenizer().train_new_from_iterator(tiny_corpus.corpus(300, seed=1), vocab_size=400)
    tokenizer.pad_token = tokenizer.eos_token
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer), n_layer=2, n_embd=32, n_head=2, n_positions=256,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-model")
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def rated_examples(n: int, seed: int = 0) -> list[FeedbackExample]:
    """Corpus texts split after their first sentence, with random Likert scores and confidences."""
    rng = random.Random(seed)
    examples = []
    for i, text in enumerate(tiny_corpus.corpus(n, seed=seed + 100)):
        cut = text.find(". ") + 1 or len(text) // 2
        examples.append(FeedbackExample(
            task=f"item-{i}", prompt=text[:cut], completion=text[cut:],
            score=float(rng.randint(1, 5)), confidence=round(rng.uniform(0.3, 1.0), 2),
        ))
    return examples


def sgd(**overrides) -> TuneConfig:
    """Plain SGD, constant rate, no clipping, no hold-out: updates that a hand computation can follow."""
    values = dict(optimizer="sgd", learning_rate=0.5, lr_schedule="constant", max_grad_norm=0.0,
                  eval_fraction=0.0, eval_prompts=0, batch_size=4)
    values.update(overrides)
    return TuneConfig(**values)


def weights_of(checkpoint: Path) -> dict:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(checkpoint).state_dict()


def assert_same_weights(a: Path, b: Path, atol: float = 0.0):
    first, second = weights_of(a), weights_of(b)
    assert first.keys() == second.keys()
    for name in first:
        difference = (first[name] - second[name]).abs().max().item()
        assert difference <= atol, f"{name} differs by {difference:.3g}"


def hand_sequence_loss(model, tokenizer, prompt: str, completion: str) -> torch.Tensor:
    """Mean cross-entropy over the completion tokens and EOS, from the full logits of the sequence alone."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([prompt_ids + completion_ids])
    logits = model(input_ids=ids).logits[0]
    start = max(len(prompt_ids), 1)
    return torch.nn.functional.cross_entropy(logits[start - 1 : -1], ids[0, start:])


# ---------------------------------------------------------------------------------------------------------
# The loss


def test_batched_loss_equals_per_sequence_hand_computation(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    examples = rated_examples(5) + [FeedbackExample("no-prompt", "", "A text learned whole.", 3.0)]
    data = tokenize_examples(tokenizer, examples, np.ones(len(examples)), [], max_length=256)
    coefficients = [0.5, 0.0, 1.5, 0.25, 2.0, 1.0]
    batch = collate(data, np.arange(len(examples)), coefficients, pad_id=tokenizer.eos_token_id)
    loss, sequence_losses = WeightedLMLoss(model)(**batch.as_inputs())

    by_hand = torch.stack([hand_sequence_loss(model, tokenizer, ex.prompt, ex.completion) for ex in examples])
    torch.testing.assert_close(sequence_losses, by_hand.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, (torch.tensor(coefficients) * by_hand).sum(), atol=1e-5, rtol=1e-5)
    assert batch.real_tokens == sum(len(ids) for ids in data.token_ids)


def test_one_sgd_step_matches_the_hand_computed_update(tiny_model, tmp_path):
    """alpha * mean reference loss + beta * mean(w_i * L_i): one full-batch step, checked parameter by parameter."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    feedback = rated_examples(6)
    reference = [ReferenceExample("Write a review of the park.", " The park was quiet."),
                 ReferenceExample("", "Once upon a time there was a kind owl.")]
    config = sgd(batch_size=8, alpha=0.7, beta=1.3, scheme="exponential", temperature=2.0)
    tune(str(tiny_model), feedback, tmp_path / "run", config, reference=reference)

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    best = max(ex.score for ex in feedback)
    weights = [np.exp((ex.score - best) / 2.0) for ex in feedback]
    feedback_term = sum(w * hand_sequence_loss(model, tokenizer, ex.prompt, ex.completion)
                        for w, ex in zip(weights, feedback)) / len(feedback)
    reference_term = sum(hand_sequence_loss(model, tokenizer, ex.prompt, ex.completion) for ex in reference) / len(reference)
    (0.7 * reference_term + 1.3 * feedback_term).backward()
    tuned = weights_of(tmp_path / "run")
    for name, parameter in model.named_parameters():
        expected = parameter.detach() - 0.5 * parameter.grad
        torch.testing.assert_close(tuned[name], expected, atol=1e-6, rtol=1e-5, msg=name)


def test_a_zero_weight_item_changes_nothing(tiny_model, tmp_path):
    feedback = rated_examples(10)
    worst = min(range(len(feedback)), key=lambda i: feedback[i].score)
    scores_at_bottom = [i for i, ex in enumerate(feedback) if ex.score == feedback[worst].score]
    garbled = [FeedbackExample(ex.task, ex.prompt, "zzz qqq " * 20 if i in scores_at_bottom else ex.completion,
                               ex.score, ex.confidence) for i, ex in enumerate(feedback)]
    tune(str(tiny_model), feedback, tmp_path / "a", sgd(epochs=2))
    result = tune(str(tiny_model), garbled, tmp_path / "b", sgd(epochs=2))
    assert result.record["weighting"]["summary"]["zero_weight_items"] == len(scores_at_bottom)
    assert_same_weights(tmp_path / "a", tmp_path / "b")


def test_doubling_every_weight_equals_doubling_the_learning_rate_under_sgd(tiny_model, tmp_path):
    full = [FeedbackExample(ex.task, ex.prompt, ex.completion, ex.score, 1.0) for ex in rated_examples(10)]
    half = [FeedbackExample(ex.task, ex.prompt, ex.completion, ex.score, 0.5) for ex in full]
    tune(str(tiny_model), full, tmp_path / "weights-x2", sgd(confidence_scaling=True, learning_rate=0.2, epochs=2))
    tune(str(tiny_model), half, tmp_path / "lr-x2", sgd(confidence_scaling=True, learning_rate=0.4, epochs=2))
    assert_same_weights(tmp_path / "weights-x2", tmp_path / "lr-x2", atol=1e-6)


@pytest.mark.parametrize("optimizer, atol", [("sgd", 1e-7), ("adamw", 2e-5)])
def test_four_accumulated_micro_batches_equal_one_big_batch(tiny_model, tmp_path, optimizer, atol):
    """Equal up to float rounding. Adam divides by the gradient's running scale, which magnifies rounding noise
    on parameters whose gradient is nearly zero (rare tokens' embeddings), hence its looser tolerance: still
    under 1% of one step's update."""
    feedback = rated_examples(21)  # a short last step too
    common = dict(optimizer=optimizer, learning_rate=3e-3, eval_fraction=0.0, eval_prompts=0, epochs=2, warmup=0.2)
    small = tune(str(tiny_model), feedback, tmp_path / "accumulated", TuneConfig(batch_size=2, grad_accum=4, **common))
    big = tune(str(tiny_model), feedback, tmp_path / "big", TuneConfig(batch_size=8, grad_accum=1, **common))
    # The same big batch run in pieces of at most 100 padded tokens (1-3 sequences each).
    pieces = tune(str(tiny_model), feedback, tmp_path / "pieces",
                  TuneConfig(batch_size=8, micro_batch_tokens=100, **common))
    assert small.record["training"]["steps"] == big.record["training"]["steps"] == 6
    for run in (small, pieces):
        assert [h["loss"] for h in run.record["training"]["losses"]] == pytest.approx(
            [h["loss"] for h in big.record["training"]["losses"]], rel=1e-5)
    assert_same_weights(tmp_path / "accumulated", tmp_path / "big", atol=atol)
    assert_same_weights(tmp_path / "pieces", tmp_path / "big", atol=atol)


def test_gradient_checkpointing_and_bf16_change_memory_and_precision_not_the_result(tiny_model, tmp_path):
    feedback = rated_examples(12)
    plain = tune(str(tiny_model), feedback, tmp_path / "plain", sgd(epochs=2))
    tune(str(tiny_model), feedback, tmp_path / "checkpointed", sgd(epochs=2, gradient_checkpointing=True))
    assert_same_weights(tmp_path / "plain", tmp_path / "checkpointed", atol=1e-6)
    # A later call in the same process may change mixed precision (accelerate's process-wide state is reset).
    bf16 = tune(str(tiny_model), feedback, tmp_path / "bf16", sgd(epochs=2, bf16=True))
    assert bf16.record["training"]["mixed_precision"] == "bf16"
    assert plain.record["training"]["mixed_precision"] == "fp32"
    assert bf16.record["training"]["final_loss"] == pytest.approx(plain.record["training"]["final_loss"], rel=0.02)


# ---------------------------------------------------------------------------------------------------------
# Batching


def test_length_grouped_steps_cover_every_sequence_once_and_pad_little():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000)
    steps = plan_epoch(lengths, global_batch=32, micro_batch=8, seed=3, epoch=0)
    seen = np.concatenate([s.indices() for s in steps])
    assert sorted(seen.tolist()) == list(range(1000))
    assert all(len(m) <= 8 for s in steps for m in s.micro_batches)
    assert plan_epoch(lengths, 32, 8, seed=3, epoch=1)[0].indices().tolist() != steps[0].indices().tolist()
    random_order = [type(steps[0])([rng.permutation(1000)[i : i + 8]]) for i in range(0, 1000, 8)]
    assert pad_efficiency(lengths, steps, 1) > 0.9 > pad_efficiency(lengths, random_order, 1)


# ---------------------------------------------------------------------------------------------------------
# A run end to end: eval, samples, record, card, checkpoint


def test_tuning_on_high_rated_items_widens_the_held_out_gap(tiny_model, tmp_path):
    """Reviews are rated high and stories low; after tuning, held-out reviews fit better than stories."""
    texts = tiny_corpus.corpus(160, seed=5)
    feedback = []
    for i, text in enumerate(texts):
        story = text.startswith(("Once", "Tell"))
        cut = text.find(". ") + 1 or len(text) // 2
        feedback.append(FeedbackExample(f"t{i}", text[:cut], text[cut:], 1.0 if story else 5.0, 1.0))
    config = TuneConfig(learning_rate=1e-2, epochs=6, batch_size=16, eval_fraction=0.2, eval_prompts=2,
                        scheme="top_fraction", top_fraction=0.5, sample_max_new_tokens=8)
    provenance = {"round": 2, "ratings": 480, "workers": 12, "agreement": 0.61}
    steps_seen = []
    result = tune(str(tiny_model), feedback, tmp_path / "run", config, provenance=provenance,
                  progress=lambda step, total: steps_seen.append((step, total)))

    record = result.record
    assert steps_seen[-1] == (record["training"]["steps"],) * 2
    assert record["eval"]["gap_after"] > record["eval"]["gap_before"] + 0.1
    assert record["weighting"] == {**record["weighting"], "scheme": "top_fraction", "top_fraction": 0.5}
    assert record["data"]["held_out_items"] == 32 and record["provenance"] == provenance
    assert len(record["samples"]) == 2 and {"prompt", "before", "after"} <= record["samples"][0].keys()
    assert record["training"]["tokens_per_s"] > 0 and 0 < record["training"]["pad_efficiency"] <= 1
    assert json.loads((result.checkpoint / "run_record.json").read_text())["eval"] == record["eval"]
    card = (result.checkpoint / "README.md").read_text()
    for expected in ("top_fraction", "| Workers | 12 |", "| Agreement (Krippendorff's alpha) | 0.61 |", "mturk-tune 0.1.0"):
        assert expected in card

    from mturk_tune.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(result.checkpoint), device="cpu")
    output = model.generate(**tokenizer(["Write a review of the hotel."], return_tensors="pt"), max_new_tokens=5,
                            do_sample=False)
    assert output.shape[1] > 1


def test_a_killed_run_resumes_to_the_same_weights(tiny_model, tmp_path):
    feedback = rated_examples(24)
    config = TuneConfig(learning_rate=2e-3, batch_size=4, epochs=1, save_every=2, dropout=0.1, eval_fraction=0.0,
                        eval_prompts=0, warmup=0.3)
    tune(str(tiny_model), feedback, tmp_path / "straight", config)

    def kill_after_step_3(step, total):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(str(tiny_model), feedback, tmp_path / "killed", config, progress=kill_after_step_3)
    assert [p.name for p in (tmp_path / "killed" / "training_state").iterdir()] == ["step-0000002"]
    with pytest.raises(ConfigError, match="already holds a tuning run"):
        tune(str(tiny_model), feedback, tmp_path / "killed", config)
    with pytest.raises(ConfigError, match="tune.learning_rate was 0.002"):
        tune(str(tiny_model), feedback, tmp_path / "killed", TuneConfig(**{**config.to_dict(), "learning_rate": 1e-3}),
             resume=True)
    resumed = tune(str(tiny_model), feedback, tmp_path / "killed", config, resume=True)
    assert resumed.record["training"]["resumed_from_step"] == 2
    assert len(resumed.record["training"]["losses"]) == resumed.record["training"]["steps"] == 5
    assert resumed.record["training"]["tokens"] == json.loads((tmp_path / "straight" / "run_record.json").read_text())["training"]["tokens"]
    assert_same_weights(tmp_path / "straight", tmp_path / "killed")
    assert not (tmp_path / "killed" / "training_state").exists()  # removed once complete
    again = tune(str(tiny_model), feedback, tmp_path / "killed", config, resume=True)  # a finished run: no work
    assert again.record == resumed.record


def test_lora_adapter_and_merged_checkpoints(tiny_model, tmp_path):
    pytest.importorskip("peft")
    from mturk_tune.models import load_model_and_tokenizer

    feedback = rated_examples(12)
    config = dict(learning_rate=1e-2, batch_size=4, lora_r=4, eval_fraction=0.0, eval_prompts=1, sample_max_new_tokens=4)
    merged = tune(str(tiny_model), feedback, tmp_path / "merged", TuneConfig(**config))
    base, tuned = weights_of(tiny_model), weights_of(merged.checkpoint)
    assert tuned.keys() == base.keys()
    changed = [name for name in base if not torch.equal(base[name], tuned[name])]
    assert changed and all(".attn." in n or ".mlp." in n for n in changed)  # LoRA touched only linear layers
    assert load_model_and_tokenizer(str(merged.checkpoint), device="cpu")[0] is not None

    adapter = tune(str(tiny_model), feedback, tmp_path / "adapter", TuneConfig(**config, lora_merge=False))
    assert (adapter.checkpoint / "adapter_config.json").exists()
    assert not (adapter.checkpoint / "model.safetensors").exists()
    assert adapter.record["training"]["lora"] == {"r": 4, "merged": False}
    from transformers import AutoModelForCausalLM

    with_adapter = AutoModelForCausalLM.from_pretrained(adapter.checkpoint)  # base model + adapter, through peft
    plain = AutoModelForCausalLM.from_pretrained(tiny_model)
    ids = torch.tensor([[5, 6, 7, 8]])
    assert hasattr(with_adapter, "peft_config")
    assert not torch.allclose(with_adapter(ids).logits, plain(ids).logits)
    # The next round loads the adapter checkpoint like any other model.
    from mturk_tune.models import load_model_and_tokenizer

    next_round, _ = load_model_and_tokenizer(str(adapter.checkpoint))
    assert torch.allclose(next_round(ids).logits, with_adapter(ids).logits)


# ---------------------------------------------------------------------------------------------------------
# Config and bad input


def test_config_from_dict_names_unknown_keys_and_wrong_types():
    config = TuneConfig.from_dict({"scheme": "exponential", "temperature": 2, "score_range": [1, 5], "bf16": "auto"})
    assert config.temperature == 2 and config.score_range == (1, 5)
    with pytest.raises(ConfigError, match="unknown option tune.learnig_rate"):
        TuneConfig.from_dict({"learnig_rate": 1e-4})
    with pytest.raises(ConfigError, match="tune.batch_size must be an integer, got '8'"):
        TuneConfig.from_dict({"batch_size": "8"})
    with pytest.raises(ConfigError, match="tune.lora_merge must be true/false"):
        TuneConfig.from_dict({"lora_merge": 1})
    with pytest.raises(ConfigError, match="tune.scheme must be one of normalized, exponential, top_fraction"):
        TuneConfig(scheme="softmax")
    with pytest.raises(ConfigError, match="tune.warmup"):
        TuneConfig(warmup=1.5)


def test_bad_input_gives_one_line_errors(tiny_model, tmp_path):
    feedback = rated_examples(6)
    cases = [
        (lambda: tune(str(tiny_model), [], tmp_path / "a", sgd()), InputFileError, "no rated generations"),
        (lambda: tune(str(tiny_model), [FeedbackExample(e.task, e.prompt, e.completion, 3.0, 0.0) for e in feedback],
                      tmp_path / "b", sgd(confidence_scaling=True)), InputFileError, "every training weight is zero"),
        (lambda: read_reference(tmp_path / "missing.jsonl"), InputFileError, "missing.jsonl' not found"),
        (lambda: tune(str(tmp_path / "no-such-model"), feedback, tmp_path / "c", sgd()), ModelNotFound, "no-such-model"),
    ]
    for call, error, fragment in cases:
        with pytest.raises(error, match=fragment) as raised:
            call()
        assert "\n" not in str(raised.value)


def test_token_chunks_cap_the_padded_size_of_each_piece():
    from mturk_tune.tuning import token_chunks

    lengths = np.array([120, 50, 40, 40, 10, 5])
    assert token_chunks(lengths, None) == [(0, 6)]
    assert token_chunks(lengths, 100) == [(0, 1), (1, 3), (3, 5), (5, 6)]
    for start, stop in token_chunks(lengths, 100)[1:]:
        assert (stop - start) * lengths[start] <= 100


def test_cpu_threads_follow_the_request_then_omp_then_free_cores(monkeypatch):
    from mturk_tune.tuning import cpu_threads

    assert cpu_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_threads(None) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr("os.getloadavg", lambda: (3.2, 0.0, 0.0))
    assert cpu_threads(None) == 5  # 8 cores, 3 busy
    assert cpu_threads(None, local_processes=2) == 2
    monkeypatch.setattr("os.getloadavg", lambda: (12.0, 0.0, 0.0))
    assert cpu_threads(None) == 1


def test_spec_entry_point_reports_bad_input_in_one_line_with_exit_code_2(tmp_path, capsys):
    from mturk_tune.tuning import launch_command, main

    assert main(["--spec", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    (tmp_path / "bad.json").write_text('{"base_model": "x"}')
    assert main(["--spec", str(tmp_path / "bad.json")]) == 2
    assert "malformed" in capsys.readouterr().err
    assert launch_command("torchrun --nproc_per_node 2", Path("s.json")) == [
        "torchrun", "--nproc_per_node", "2", "-m", "mturk_tune.tuning", "--spec", "s.json"]


def test_read_reference_from_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "reference.jsonl"
    jsonl.write_text('{"prompt": "Q: hi", "completion": " A: hello"}\n\n{"text": "A plain text."}\n')
    assert read_reference(jsonl) == [ReferenceExample("Q: hi", " A: hello"), ReferenceExample("", "A plain text.")]
    table = tmp_path / "reference.csv"
    with table.open("w", newline="") as handle:
        csv.writer(handle).writerows([["prompt", "completion"], ["Say yes.", " Yes."]])
    assert read_reference(table) == [ReferenceExample("Say yes.", " Yes.")]
    jsonl.write_text('{"prompt": "Q"}\n{"text": "fine"}\n')
    with pytest.raises(InputFileError, match=r"reference.jsonl:1: needs a non-empty 'completion'"):
        read_reference(jsonl)
    jsonl.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(InputFileError, match=r"reference.jsonl:2: not valid JSON"):
        read_reference(jsonl)
