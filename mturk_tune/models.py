"""Loading a causal language model and its tokenizer by hub name, local path, or as the built-in offline model.

The built-in model (`builtin:tiny`) is a small GPT-2 trained for a few hundred steps on text from
`tiny_corpus`, with its own BPE tokenizer. It needs no download: the first call builds it (about half a minute
on one core, seeded) and caches it; later calls load the cached copy.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch

from mturk_tune import tiny_corpus
from mturk_tune.errors import ModelNotFound

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

BUILTIN_TINY = "builtin:tiny"
DEFAULT_MODEL = "gpt2"

# Bump the version when anything below changes the built model, so old caches are not reused.
BUILTIN_VERSION = "builtin-tiny-v1"
BUILTIN_SEED = 20260930
BUILTIN_VOCAB_SIZE = 1024
BUILTIN_SHAPE = dict(n_layer=2, n_embd=128, n_head=4, n_positions=256)
BUILTIN_TRAIN_TEXTS = 6000
# Chosen by measuring, on a held-out set of prompts, how often a review stays on the prompt's topic (100% at
# these settings, 73% with packed 64-token blocks at 3e-3) and a story on its character (50%, against 1%).
BUILTIN_TRAIN_STEPS = 400
BUILTIN_BATCH = 16
BUILTIN_LR = 5e-3

_READY_MARKER = "BUILD_COMPLETE"
_HOW_TO_FIX = "pass a hub name, a local directory with config.json, or builtin:tiny"


def pick_device() -> str:
    """The fastest device torch can see: "cuda", then "mps", then "cpu"."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def model_name_for_record(name_or_path: str) -> str:
    """What the state store records as the model: builtin:tiny, a local directory's absolute path, or the hub name."""
    if name_or_path == BUILTIN_TINY:
        return BUILTIN_TINY
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return str(local.resolve())
    return name_or_path


def default_cache_root() -> Path:
    """Cache root: $MTURK_TUNE_CACHE, else $XDG_CACHE_HOME/mturk-tune, else ~/.cache/mturk-tune."""
    explicit = os.environ.get("MTURK_TUNE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mturk-tune"


def builtin_model_path(cache_dir: Path | None = None) -> Path:
    """Directory of the saved built-in model (model and tokenizer), building it on first use.

    Safe when several processes call it at once: each builds into its own temporary directory and renames it
    into place; a process that loses the race discards its copy and uses the winner's.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    target = root / BUILTIN_VERSION
    if (target / _READY_MARKER).exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{BUILTIN_VERSION}-building-", dir=root))
    try:
        with _quiet_transformers(warnings_too=True):  # its warnings are about our own fixed training setup
            _build_builtin_model(staging)
        (staging / _READY_MARKER).write_text(f"{BUILTIN_VERSION}\n")
        try:
            os.rename(staging, target)
        except OSError:
            # Another process renamed its build into place first (or left a broken directory behind).
            if not (target / _READY_MARKER).exists():
                shutil.rmtree(target, ignore_errors=True)
                os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _build_builtin_model(out_dir: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    texts = tiny_corpus.corpus(BUILTIN_TRAIN_TEXTS, seed=BUILTIN_SEED)
    tokenizer = GPT2Tokenizer().train_new_from_iterator(texts, vocab_size=BUILTIN_VOCAB_SIZE, show_progress=False)
    tokenizer.pad_token = tokenizer.eos_token
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
        # No dropout: a few hundred steps on a small corpus do not overfit, and it speeds up training.
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **BUILTIN_SHAPE,
    )
    # Seed a private RNG stream so that building is reproducible and leaves the caller's RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILTIN_SEED)
        model = GPT2LMHeadModel(config)
        _train_builtin(model, tokenizer, texts)
    model.eval()
    model.generation_config.pad_token_id = eos
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _train_builtin(model, tokenizer, texts: list[str]) -> None:
    """Next-token training, one text (plus EOS) per row starting at position 0, as prompts do when generating."""
    eos = tokenizer.eos_token_id
    rows = [ids + [eos] for ids in tokenizer(texts)["input_ids"]]
    optimizer = torch.optim.AdamW(model.parameters(), lr=BUILTIN_LR, weight_decay=0.01)
    warmup = 20

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, BUILTIN_TRAIN_STEPS - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model.train()
    order = torch.randperm(len(rows)).tolist()
    for step in range(BUILTIN_TRAIN_STEPS):
        start = (step * BUILTIN_BATCH) % max(1, len(rows) - BUILTIN_BATCH)
        batch = [rows[i] for i in order[start : start + BUILTIN_BATCH]]
        width = max(len(row) for row in batch)
        input_ids = torch.full((len(batch), width), eos)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention_mask[i, : len(row)] = 1
        # Labels from lengths, not from the pad id: the pad token is EOS, and EOS must be learned.
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)


@contextmanager
def _quiet_transformers(warnings_too: bool = False):
    """Hide transformers' progress bars (weights loading and saving), and its warnings when asked, for a moment."""
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    if warnings_too:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
        hf_logging.set_verbosity(verbosity)


def load_model_and_tokenizer(
    name_or_path: str, device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode on `device` (default: `pick_device()`).

    `name_or_path` is "builtin:tiny", a local directory holding config.json, or a Hugging Face hub name.
    The tokenizer always has a pad token (its EOS token when it had none). Raises ModelNotFound with a
    one-line message when the model cannot be found, without waiting on network retries.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, load_options = _resolve_source(name_or_path)
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source, **load_options)
            model = AutoModelForCausalLM.from_pretrained(source, **load_options)
    except (OSError, ValueError) as error:  # hub errors subclass these; so do unreadable or foreign checkpoints
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelNotFound(f"model {name_or_path!r} could not be loaded ({detail}): {_HOW_TO_FIX}") from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    model.to(device or pick_device())
    return model, tokenizer


def _resolve_source(name_or_path: str) -> tuple[str, dict]:
    """Where from_pretrained should read from, and with which options; ModelNotFound when it cannot work."""
    if not name_or_path or not name_or_path.strip():
        raise ModelNotFound(f"model name is empty: {_HOW_TO_FIX}")
    if name_or_path == BUILTIN_TINY:
        return str(builtin_model_path()), {"local_files_only": True}
    if name_or_path.startswith("builtin:"):
        raise ModelNotFound(f"model {name_or_path!r} not found: the only built-in model is {BUILTIN_TINY}")
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        # adapter_config.json: a LoRA adapter saved by `tune` (lora_merge = false); transformers loads
        # it onto its base model through peft.
        if not (local / "config.json").is_file() and not (local / "adapter_config.json").is_file():
            raise ModelNotFound(f"model directory '{local}' has no config.json: {_HOW_TO_FIX}")
        return str(local), {"local_files_only": True}
    if _looks_like_path(name_or_path) or local.exists():
        raise ModelNotFound(f"model '{name_or_path}' not found (no such directory): {_HOW_TO_FIX}")
    return name_or_path, _hub_options(name_or_path)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~", "\\")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def _hub_options(repo_id: str) -> dict:
    """Load from the local hub cache when the model is there; otherwise fail fast when the hub is out of reach."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(repo_id, "config.json")
    except HFValidationError as error:
        raise ModelNotFound(f"model {repo_id!r} not found ({error}): {_HOW_TO_FIX}") from error
    if isinstance(cached, str):
        return {"local_files_only": True}
    if _offline_mode():
        raise ModelNotFound(
            f"model {repo_id!r} not found: it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"{_HOW_TO_FIX}"
        )
    if not _hub_reachable():
        raise ModelNotFound(
            f"model {repo_id!r} not found: it is not in the local Hugging Face cache and {_hub_endpoint()} cannot "
            f"be reached; {_HOW_TO_FIX}"
        )
    return {}


def _offline_mode() -> bool:
    truthy = {"1", "true", "yes", "on"}
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(name, "").strip().lower() in truthy for name in flags)


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """One TCP connection to the hub, so an offline machine fails in seconds instead of minutes of retries."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy a direct connection proves nothing: let the hub client try
    url = urlparse(_hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False
