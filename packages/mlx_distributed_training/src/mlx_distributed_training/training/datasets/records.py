"""Read raw records of one split, each tagged with where it came from.

Local JSONL and JSON files are parsed here line by line so that an error can
name the exact line, and so that records keep their own keys: loading them
through an Arrow table would merge every record's keys into one schema and
hand templates `None` for keys a record never had. Parquet files are read
with pyarrow, and hub datasets through Hugging Face `datasets`.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx_distributed_training.training.datasets.errors import DataError

SPLITS = ("train", "valid", "test")
SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class Record:
    """One raw example and its location, e.g. `data/train.jsonl:12`."""

    value: Any
    location: str


def find_split_file(folder: Path, split: str) -> Path | None:
    """Return `folder/<split>.<suffix>` for the first suffix that exists."""
    found = [folder / f"{split}{suffix}" for suffix in SUFFIXES]
    existing = [path for path in found if path.is_file()]
    if len(existing) > 1:
        names = ", ".join(path.name for path in existing)
        raise DataError(str(folder), f"more than one file for split {split}: {names}")
    return existing[0] if existing else None


def read_jsonl(path: Path) -> list[Record]:
    records = []
    # Lines are decoded one by one so that bad UTF-8 is reported with its line.
    with open(path, "rb") as handle:
        for line_number, raw_line in enumerate(handle, start=1):
            location = f"{path}:{line_number}"
            if line_number == 1:
                raw_line = raw_line.removeprefix(codecs.BOM_UTF8)
            line = _decode_line(raw_line, location)
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    location, f"invalid JSON at column {error.colno}: {error.msg}"
                ) from None
            # Only a \uXXXX escape can make a lone surrogate, so most lines skip this.
            if "\\ud" in line.lower():
                _check_no_lone_surrogate(value, location)
            records.append(Record(value, location))
    return records


def _decode_line(raw_line: bytes, location: str) -> str:
    try:
        return raw_line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(location, _bad_utf8_message(error.start)) from None


def _check_no_lone_surrogate(value: Any, location: str) -> None:
    """Reject strings with a `\\ud800`-`\\udfff` escape that has no pair.

    JSON allows such escapes, but they decode to no character, and the
    tokenizer fails on them.
    """
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        escape = f"\\u{ord(error.object[error.start]):04x}"
        raise DataError(
            location,
            f"invalid JSON string: unpaired surrogate escape {escape}, "
            "which is not a Unicode character",
        ) from None


def _bad_utf8_message(byte_in_line: int) -> str:
    return f"invalid UTF-8 at byte {byte_in_line} of the line; save the file as UTF-8"


def read_json_array(path: Path) -> list[Record]:
    raw = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line_number = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1)
        raise DataError(f"{path}:{line_number}", _bad_utf8_message(column)) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}:{error.lineno}",
            f"invalid JSON at column {error.colno}: {error.msg}",
        ) from None
    if isinstance(value, dict) and len(value) == 1:
        # Accept the common {"data": [...]} wrapper as well as a bare list.
        value = next(iter(value.values()))
    if not isinstance(value, list):
        raise DataError(str(path), "expected a JSON list of records")
    records = [Record(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if "\\ud" in text.lower():
        for record in records:
            _check_no_lone_surrogate(record.value, record.location)
    return records


def read_parquet(path: Path) -> list[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as error:
        raise DataError(str(path), f"cannot read Parquet file: {error}") from None
    return [
        Record(_without_nulls(row), f"{path} row {i}") for i, row in enumerate(rows)
    ]


def _without_nulls(value: Any) -> Any:
    """Drop null-valued keys, which a Parquet schema adds for keys a row lacks."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def read_file(path: Path) -> list[Record]:
    """Read every record of one local data file."""
    if path.suffix == ".jsonl":
        records = read_jsonl(path)
    elif path.suffix == ".json":
        records = read_json_array(path)
    elif path.suffix == ".parquet":
        records = read_parquet(path)
    else:
        raise DataError(str(path), f"unsupported file type; use one of {SUFFIXES}")
    if not records:
        raise DataError(str(path), "file contains no records")
    return records


def read_hub_split(name: str, split: str) -> list[Record] | None:
    """Read one split of a Hugging Face hub dataset; None if it has no such split."""
    import datasets

    hub_split = "validation" if split == "valid" else split
    try:
        table = datasets.load_dataset(name, split=hub_split)
    except ValueError as error:
        if "split" in str(error).lower():
            return None
        raise DataError(name, f"cannot load dataset: {error}") from None
    except (ConnectionError, OSError) as error:
        raise DataError(
            name, f"cannot load dataset from the Hugging Face hub: {error}"
        ) from None
    return [Record(row, f"{name}[{split}] row {i}") for i, row in enumerate(table)]


def read_splits(data: str | Path) -> dict[str, list[Record]]:
    """Read the train, valid and test splits found at `data`.

    `data` is a folder holding `train`, `valid` and `test` files, or a hub
    dataset name. The train split is required; the others are optional.
    """
    folder = Path(data)
    splits: dict[str, list[Record]] = {}
    if folder.is_dir():
        for split in SPLITS:
            path = find_split_file(folder, split)
            if path is not None:
                splits[split] = read_file(path)
        if "train" not in splits:
            raise DataError(
                str(folder), f"no train split: expected train{'|'.join(SUFFIXES)}"
            )
        return splits
    if folder.exists() or str(data).startswith((".", "/")):
        raise DataError(str(data), "data path is not a folder of split files")
    for split in SPLITS:
        records = read_hub_split(str(data), split)
        if records is not None:
            if not records:
                raise DataError(f"{data}[{split}]", "split contains no records")
            splits[split] = records
    if "train" not in splits:
        raise DataError(str(data), "dataset has no train split")
    return splits
