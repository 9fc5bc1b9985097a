"""The run record (run_record.json) and the model card (README.md) written beside each tuned checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mturk_tune import __version__
from mturk_tune.tune_data import learned_tokens, pad_efficiency
from mturk_tune.weighting import describe_scheme, summarize_weights

RECORD_FILE = "run_record.json"
CARD_FILE = "README.md"


def run_record(*, base_model, config, weights, feedback, train_items, eval_items, reference, data, plans, world_size,
                total_steps, history, tokens, seconds, cpu_seconds, eval_before, eval_after, samples_before, samples_after,
                provenance, resumed_from, accelerator, digests, checkpoint, threads) -> dict:
    """Everything a tuning run did, as written to run_record.json."""
    gap_before = eval_before["gap"] if eval_before else None
    gap_after = eval_after["gap"] if eval_after else None
    samples = [
        {"prompt": before["prompt"], "before": before["completion"], "after": after["completion"]}
        for before, after in zip(samples_before or [], samples_after or [])
    ]
    return {
        "tool": {"name": "mturk-tune", "version": __version__},
        "base_model": base_model,
        "checkpoint": str(checkpoint),
        "config": config.to_dict(),
        "weighting": {**describe_scheme(config), "summary": summarize_weights(weights)},
        "data": {
            "rated_items": len(feedback),
            "trained_items": len(train_items),
            "held_out_items": len(eval_items),
            "reference_examples": len(reference),
            "sequences": len(data),
            "tokens_per_epoch": int(data.lengths.sum()),
            "learned_tokens_per_epoch": int(learned_tokens(data).sum()),
        },
        "training": {
            "steps": total_steps,
            "epochs": config.epochs,
            "processes": world_size,
            "cpu_threads": threads,
            "device": str(accelerator.device),
            "mixed_precision": "fp32" if accelerator.mixed_precision == "no" else str(accelerator.mixed_precision),
            "lora": {"r": config.lora_r, "merged": config.lora_merge} if config.lora_r else None,
            "tokens": tokens,
            "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu_seconds, 3),  # this process's CPU time (all its threads) in the loop
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
            "pad_efficiency": round(pad_efficiency(data.lengths, plans, world_size), 4),
            "resumed_from_step": resumed_from,
            "final_loss": history[-1]["loss"] if history else None,
            "losses": history,
            "weights_digest_per_process": digests,
        },
        "eval": {"before": eval_before, "after": eval_after, "gap_before": gap_before, "gap_after": gap_after},
        "samples": samples,
        "provenance": provenance,
    }


_PROVENANCE_LABELS = {
    "round": "Round", "batch": "Batch", "data": "Data", "ratings": "Ratings", "workers": "Workers",
    "agreement": "Agreement (Krippendorff's alpha)", "aggregation": "Aggregation", "marketplace": "Marketplace",
    "workspace": "Workspace",
}


def model_card(record: dict) -> str:
    """A Hugging Face model card (README.md) naming the base model, data, weighting, ratings and tool version."""
    base = record["base_model"]
    front = ["---", "library_name: transformers", "tags:", "- mturk-tune", "- crowd-feedback", "- weighted-fine-tuning"]
    if not base.startswith(("/", ".", "~", "builtin:")):
        front.append(f"base_model: {base}")
    front.append("---")
    weighting = record["weighting"]
    params = ", ".join(f"{k}={v}" for k, v in weighting.items() if k not in ("scheme", "summary"))
    summary = weighting["summary"]
    data, training, provenance = record["data"], record["training"], record["provenance"]
    rows = [("Base model", base)]
    for key, label in _PROVENANCE_LABELS.items():
        if key in provenance:
            rows.append((label, provenance[key]))
    rows += [(k.replace("_", " ").capitalize(), v) for k, v in provenance.items() if k not in _PROVENANCE_LABELS]
    rows += [
        ("Rated items", f"{data['rated_items']} ({data['trained_items']} trained, {data['held_out_items']} held out)"),
        ("Reference examples", data["reference_examples"]),
        ("Weighting scheme", f"{weighting['scheme']} ({params})"),
        ("Weights", f"mean {summary['mean']:.3f}, {summary['zero_weight_items']} items at zero, "
                    f"worth {summary['effective_items']} equally weighted items"),
        ("Loss", f"alpha={record['config']['alpha']} x reference + beta={record['config']['beta']} x weighted feedback"),
        ("Training", f"{training['steps']} steps, {training['epochs']} epoch(s), {training['processes']} process(es), "
                     f"{training['tokens']} tokens, {training['mixed_precision']} precision"),
        ("LoRA", f"r={record['config']['lora_r']}, {'merged' if record['config']['lora_merge'] else 'adapter'}"
                 if record["config"]["lora_r"] else "no (all weights trained)"),
        ("Tool", f"mturk-tune {record['tool']['version']}"),
    ]
    lines = front + ["", "# Tuned with mturk-tune from crowd ratings", "",
                     f"Fine-tuned from `{base}` on generations rated by crowd workers, each weighted by its "
                     "aggregated score.", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {_cell(value)} |" for label, value in rows]
    ev = record["eval"]
    if ev["before"] and ev["after"]:
        lines += ["", "## Held-out loss", "", "| | before | after |", "|---|---|---|"]
        for group in ("high", "low"):
            lines.append(f"| {group}-rated items ({ev['before'][group]['items']}) | "
                         f"{ev['before'][group]['loss']:.4f} | {ev['after'][group]['loss']:.4f} |")
        lines.append(f"| gap (low - high) | {ev['gap_before']:.4f} | {ev['gap_after']:.4f} |")
    if record["samples"]:
        lines += ["", "## Samples (greedy)", ""]
        for sample in record["samples"]:
            lines += [f"**Prompt:** {_cell(sample['prompt'])}", "",
                      f"- before: {_cell(sample['before'])}", f"- after: {_cell(sample['after'])}", ""]
    lines += ["", f"The full run record is in `{RECORD_FILE}`."]
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
