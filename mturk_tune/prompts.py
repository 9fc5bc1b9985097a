"""Prompt files: JSONL (one object with a "prompt" key per line) or CSV (a "prompt" column).

An optional "id" (JSONL key or CSV column) names each prompt; otherwise the line number does.
Every problem is reported with the file, the line and the fix.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import InputFileError

MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str


def read_prompts(path: Path) -> list[Prompt]:
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: prompts file not found; pass a .jsonl or .csv file with a 'prompt' field")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory; pass a .jsonl or .csv prompts file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputFileError(f"{path}:{line}: not UTF-8 (byte {exc.start}); re-save the file as UTF-8") from None
    if path.suffix.lower() == ".csv":
        prompts = _read_csv(path, text)
    else:
        prompts = _read_jsonl(path, text)
    if not prompts:
        raise InputFileError(f"{path}: no prompts found; add lines like {{\"prompt\": \"Once upon a time\"}}")
    seen: dict[str, int] = {}
    for p in prompts:
        if p.id in seen:
            raise InputFileError(f"{path}: prompt id {p.id!r} appears twice; give each prompt a unique id")
        seen[p.id] = 1
    return prompts


def _check_text(path: Path, line: int, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputFileError(f"{path}:{line}: 'prompt' must be a non-empty string")
    if len(value) > MAX_PROMPT_CHARS:
        raise InputFileError(f"{path}:{line}: prompt longer than {MAX_PROMPT_CHARS} characters; shorten it")
    return value


def _read_jsonl(path: Path, text: str) -> list[Prompt]:
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(
                f"{path}:{number}: not valid JSON ({exc.msg}); each line must be an object like {{\"prompt\": \"...\"}}"
            ) from None
        if isinstance(record, str):
            record = {"prompt": record}
        if not isinstance(record, dict) or "prompt" not in record:
            raise InputFileError(f"{path}:{number}: missing the 'prompt' key; write {{\"prompt\": \"...\"}}")
        prompt_id = str(record.get("id", f"p{number}"))
        prompts.append(Prompt(id=prompt_id, text=_check_text(path, number, record["prompt"])))
    return prompts


def _read_csv(path: Path, text: str) -> list[Prompt]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "prompt" not in reader.fieldnames:
        raise InputFileError(f"{path}:1: no 'prompt' column in the header; add a header line 'prompt' (and optionally 'id')")
    prompts = []
    for row in reader:
        number = reader.line_num
        prompt_id = (row.get("id") or "").strip() or f"p{number}"
        prompts.append(Prompt(id=prompt_id, text=_check_text(path, number, row.get("prompt"))))
    return prompts
