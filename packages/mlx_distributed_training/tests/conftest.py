"""Fixtures: a tiny random llama model with a real tokenizer, and small data sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_fixtures import build_tiny_model, chat_record, write_jsonl


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture
def chat_data_dir(tmp_path) -> Path:
    """Train/valid/test splits of short chat examples."""
    months = ["January", "February", "March", "April", "May", "June"]
    records = [
        chat_record(f"what is {month} {day}", f"2021-{m + 1:02d}-{day:02d}")
        for m, month in enumerate(months)
        for day in range(1, 7)
    ]
    folder = tmp_path / "data"
    write_jsonl(folder / "train.jsonl", records[:24])
    write_jsonl(folder / "valid.jsonl", records[24:30])
    write_jsonl(folder / "test.jsonl", records[30:])
    return folder
