"""Two CPU processes under torchrun (DDP over gloo) end with the same weights as one process on the same data."""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mturk_tune import tiny_corpus
from mturk_tune.tuning import FeedbackExample, ReferenceExample, TuneConfig, launch_command, run_spec, write_spec

torch.set_num_threads(1)


def build_tiny_model(path: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    tokenizer = GPT2Tokenizer().train_new_from_iterator(tiny_corpus.corpus(300, seed=1), vocab_size=400)
    tokenizer.pad_token = tokenizer.eos_token
    eos = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_embd=32, n_head=2, n_positions=256,
                        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run_in_own_group(command: list[str], env: dict, timeout_s: float) -> tuple[int, str]:
    """Run a launcher in its own process group, so that a hang kills its worker processes too."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"torchrun did not finish in {timeout_s} s:\n{output[-3000:]}")
    return process.returncode, output


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="process groups and gloo over localhost: POSIX only")
def test_two_processes_match_one_process(tmp_path):
    base = build_tiny_model(tmp_path / "base")
    rng = random.Random(4)
    feedback = []
    # 12 rated items + 1 reference text in steps of 8: the last micro-batch holds 1 sequence, so process 1 has none.
    for i, text in enumerate(tiny_corpus.corpus(12, seed=9)):
        cut = text.find(". ") + 1
        feedback.append(FeedbackExample(f"item-{i}", text[:cut], text[cut:], float(rng.randint(1, 5)), 1.0))
    reference = [ReferenceExample("", "Once upon a time there was a brave fox.")]
    # Dropout off: one process and two draw different dropout masks (the resume test covers dropout's RNG).
    # The exponential scheme gives every item a weight > 0, so all 13 sequences train.
    common = dict(learning_rate=3e-3, epochs=2, grad_accum=2, eval_fraction=0.0, eval_prompts=1, dropout=0.0,
                  scheme="exponential", sample_max_new_tokens=4)

    two = write_spec(tmp_path / "two.json", str(base), feedback, tmp_path / "two", TuneConfig(batch_size=2, **common),
                     reference=reference)
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    command = launch_command(f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node 2", two)
    returncode, log = run_in_own_group(command, env, timeout_s=120)
    assert returncode == 0, log[-3000:]

    one = write_spec(tmp_path / "one.json", str(base), feedback, tmp_path / "one", TuneConfig(batch_size=4, **common),
                     reference=reference)
    single = run_spec(one)

    record = json.loads((tmp_path / "two" / "run_record.json").read_text())
    digests = record["training"]["weights_digest_per_process"]
    assert record["training"]["processes"] == 2 and len(digests) == 2 and digests[0] == digests[1]
    assert record["training"]["steps"] == single.record["training"]["steps"] == 4
    assert [h["loss"] for h in record["training"]["losses"]] == pytest.approx(
        [h["loss"] for h in single.record["training"]["losses"]], rel=1e-5)
    assert record["training"]["tokens"] == single.record["training"]["tokens"]

    from transformers import AutoModelForCausalLM

    distributed = AutoModelForCausalLM.from_pretrained(tmp_path / "two").state_dict()
    alone = AutoModelForCausalLM.from_pretrained(tmp_path / "one").state_dict()
    for name, tensor in alone.items():
        assert (distributed[name] - tensor).abs().max().item() <= 2e-5, name
