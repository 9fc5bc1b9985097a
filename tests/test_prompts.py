import pytest

from mturk_tune.errors import InputFileError
from mturk_tune.prompts import read_prompts


def test_jsonl_and_csv_prompts(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "Once upon a time", "id": "a"}\n\n"Just a string"\n', encoding="utf-8")
    assert [(p.id, p.text) for p in read_prompts(jsonl)] == [("a", "Once upon a time"), ("p3", "Just a string")]
    csv = tmp_path / "p.csv"
    csv.write_text('id,prompt\nx,"Hello, world"\n,Second\n', encoding="utf-8")
    assert [(p.id, p.text) for p in read_prompts(csv)] == [("x", "Hello, world"), ("p3", "Second")]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("p.jsonl", b'{"prompt": "ok"}\n{"prompt": oops}\n', r"p.jsonl:2: not valid JSON"),
        ("p.jsonl", b'{"prompt": "ok"}\n{"text": "no key"}\n', r"p.jsonl:2: missing the 'prompt' key"),
        ("p.jsonl", b'{"prompt": "ok"}\n\xff\xfe bad\n', r"p.jsonl:2: not UTF-8"),
        ("p.jsonl", b"", r"no prompts found"),
        ("p.jsonl", b'{"prompt": "a", "id": 1}\n{"prompt": "b", "id": 1}\n', r"appears twice"),
        ("p.csv", b"text\nhello\n", r"p.csv:1: no 'prompt' column"),
        ("p.jsonl", b'{"prompt": ""}\n', r"p.jsonl:1: 'prompt' must be a non-empty string"),
    ],
)
def test_bad_prompt_files_name_the_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=message):
        read_prompts(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_prompts(tmp_path / "nope.jsonl")
