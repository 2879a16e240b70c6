"""Dataset reading, format detection, validation messages (line and field), split and hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuning.datasets import dataset_hash, detect_format, load_samples, split
from tuning.errors import DatasetError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def jsonl(tmp_path: Path, records: list[object]) -> Path:
    return write(tmp_path, "data.jsonl", "".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize(("record", "expected"), [
    ({"instruction": "a", "input": "", "output": "b"}, "alpaca"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "chat"),
    ({"prompt": "a", "completion": "b"}, "prompt_completion"),
    ({"text": "plain"}, "text"),
])
def test_detect_format(record: dict[str, object], expected: str) -> None:
    assert detect_format(record) == expected


def test_detect_format_override_and_text_column() -> None:
    assert detect_format({"instruction": "a", "output": "b"}, "text") == "text"
    assert detect_format({"body": "x"}, text_column="body") == "text"
    with pytest.raises(DatasetError, match="cannot tell the format"):
        detect_format({"foo": 1})


def test_alpaca_is_normalised_to_chat(tmp_path: Path) -> None:
    path = jsonl(tmp_path, [{"instruction": "Sum", "input": "1 2", "output": "3"},
                            {"instruction": "Hi", "output": "Hello"}])
    first, second = load_samples(path)
    assert first.messages == [{"role": "user", "content": "Sum\n\n1 2"},
                              {"role": "assistant", "content": "3"}]
    assert second.messages[0]["content"] == "Hi"


def problems(path: Path, fmt: str = "auto") -> list[str]:
    with pytest.raises(DatasetError) as info:
        load_samples(path, fmt)
    return [str(p) for p in info.value.problems] or [str(info.value)]


def test_bad_json_line_and_missing_output_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"instruction": "a", "output": "b"}\n{not json\n\n'
                 '{"instruction": "c"}\n{"instruction": "d", "output": ""}\n')
    found = problems(path)
    assert found[0].startswith("line 2: invalid JSON")
    assert found[1] == "line 4, field 'output': is missing"
    assert found[2] == "line 5, field 'output': must be a non-empty string"


def test_chat_wrong_role_and_not_ending_with_assistant(tmp_path: Path) -> None:
    path = jsonl(tmp_path, [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "human", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "q"}]},
    ])
    found = problems(path)
    assert found[0].startswith("line 2, field 'messages[0].role': role 'human' must be one of")
    assert found[1].startswith("line 3, field 'messages[0].role': the last message must be the assistant")


def test_json_array_lines_are_record_indexes(tmp_path: Path) -> None:
    path = write(tmp_path, "d.json", json.dumps([{"prompt": "p", "completion": "c"},
                                                 {"prompt": "p", "completion": 5}]))
    assert problems(path) == ["line 2, field 'completion': must be a non-empty string"]


def test_csv_missing_column_and_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "instruction,input\nq,\n")
    assert problems(path, "alpaca")[0].startswith("line 1, field 'output': missing column")
    good = write(tmp_path, "g.csv", 'instruction,input,output\nq,,a\n"multi\nline",,\n')
    assert problems(good) == ["line 3, field 'output': must be a non-empty string"]


def test_text_format_uses_the_named_column(tmp_path: Path) -> None:
    path = jsonl(tmp_path, [{"body": "one"}, {"body": ""}])
    with pytest.raises(DatasetError) as info:
        load_samples(path, "text", text_column="body")
    assert str(info.value.problems[0]) == "line 2, field 'body': must be a non-empty string"


def test_errors_are_capped_at_twenty(tmp_path: Path) -> None:
    path = jsonl(tmp_path, [{"instruction": "q"}] * 30)
    with pytest.raises(DatasetError, match="30 invalid record") as info:
        load_samples(path)
    assert len(info.value.problems) == 20


def test_empty_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no records"):
        load_samples(write(tmp_path, "e.jsonl", "\n\n"))
    with pytest.raises(DatasetError, match="unsupported file type"):
        load_samples(write(tmp_path, "e.txt", "x"))


def test_split_is_deterministic_and_disjoint() -> None:
    items = list(range(50))
    train, val = split(items, 0.1, seed=7)
    assert (train, val) == split(items, 0.1, seed=7)
    assert len(val) == 5 and sorted(train + val) == items
    assert split(items, 0.1, seed=8)[1] != val
    assert split([1], 0.5) == ([1], [])


def test_dataset_hash_is_of_the_bytes(tmp_path: Path) -> None:
    a, b = write(tmp_path, "a.jsonl", "x"), write(tmp_path, "b.jsonl", "x")
    assert dataset_hash(a) == dataset_hash(b) != dataset_hash(write(tmp_path, "c.jsonl", "y"))


def test_csv_rows_with_extra_fields_name_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "instruction,output\nSay hi,hi\nSay bye,bye,EXTRA\n")
    assert problems(path) == ["line 3: 1 more field(s) than the header's 2 (quote values that hold "
                              "commas)"]


@pytest.mark.parametrize(("header", "fmt"), [("instruction,output", "alpaca"), ("text", "text"),
                                             ("prompt,completion", "prompt_completion")])
def test_a_valid_csv_is_stored_with_its_format(tmp_path: Path, header: str, fmt: str) -> None:
    from tuning.dataset_store import DatasetStore

    row = ",".join(["a"] * len(header.split(",")))
    path = write(tmp_path, "d.csv", f"{header}\n{row}\n{row}\n")
    record = DatasetStore(tmp_path / "store").add(path)
    assert (record.format, record.records) == (fmt, 2)


def test_an_oversized_example_is_refused_with_its_line(tmp_path: Path) -> None:
    from tuning.datasets import MAX_EXAMPLE_CHARS

    path = jsonl(tmp_path, [{"prompt": "p", "completion": "c"},
                            {"prompt": "x" * (MAX_EXAMPLE_CHARS + 1), "completion": "c"}])
    assert problems(path) == [f"line 2: the example is {MAX_EXAMPLE_CHARS + 2:,} characters; the "
                              f"limit is {MAX_EXAMPLE_CHARS:,} (a training example is truncated to "
                              "the model's context anyway)"]
