import json

import numpy as np
import pytest
from mlx_distributed_training.training.datasets.encode import ChatEncoder
from mlx_distributed_training.training.datasets.errors import DataError
from mlx_distributed_training.training.datasets.formats import Example, parse_split
from mlx_distributed_training.training.datasets.loading import load_training_data
from mlx_distributed_training.training.datasets.records import Record, read_splits
from training_fixtures import chat_record, write_jsonl


def records_of(*values):
    return [Record(value, f"train.jsonl:{i + 1}") for i, value in enumerate(values)]


def test_every_format_is_detected():
    cases = {
        "chat": {"messages": [{"role": "user", "content": "hi"}]},
        "completions": {"prompt": "a", "completion": "b"},
        "text": {"text": "plain"},
        "alpaca": {"instruction": "do", "input": "x", "output": "y"},
        "sharegpt": {"conversations": [{"from": "human", "value": "hi"}]},
    }
    for expected, value in cases.items():
        data_format, _ = parse_split(records_of(value))
        assert data_format == expected


def test_mixed_formats_name_first_differing_record():
    records = records_of(
        {"text": "a"}, {"text": "b"}, {"prompt": "p", "completion": "c"}
    )
    with pytest.raises(DataError) as caught:
        parse_split(records)
    assert caught.value.location == "train.jsonl:3"
    assert "completions format but the split started in text format" in str(
        caught.value
    )


def test_wrongly_typed_key_is_reported():
    with pytest.raises(DataError) as caught:
        parse_split(records_of({"prompt": "p", "completion": 3}))
    assert str(caught.value) == (
        "train.jsonl:1: key 'completion': expected a string, got int"
    )


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "ok"}\n{"text": broken}\n')
    with pytest.raises(DataError) as caught:
        read_splits(tmp_path)
    assert caught.value.location == f"{path}:2"
    assert "invalid JSON" in caught.value.message


def test_empty_file_is_an_error(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n")
    with pytest.raises(DataError) as caught:
        read_splits(tmp_path)
    assert caught.value.message == "file contains no records"


def test_missing_train_split_is_an_error(tmp_path):
    write_jsonl(tmp_path / "valid.jsonl", [{"text": "a"}])
    with pytest.raises(DataError) as caught:
        read_splits(tmp_path)
    assert "no train split" in caught.value.message


def test_json_and_parquet_files_are_read(tmp_path):
    import datasets

    (tmp_path / "train.json").write_text(json.dumps([{"text": "a"}, {"text": "b"}]))
    datasets.Dataset.from_list([{"text": "c"}]).to_parquet(
        str(tmp_path / "valid.parquet")
    )
    splits = read_splits(tmp_path)
    assert [r.value["text"] for r in splits["train"]] == ["a", "b"]
    assert [r.value["text"] for r in splits["valid"]] == ["c"]


def test_prompt_mask_covers_answer_and_end_of_turn_only(tiny_tokenizer):
    encoder = ChatEncoder(tiny_tokenizer, mask_prompt=True)
    example = Example(
        "x",
        messages=(
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "world"},
        ),
    )
    encoded = encoder.encode(example)
    hf = tiny_tokenizer._tokenizer
    targets = hf.decode(encoded.tokens[encoded.loss_mask].tolist())
    assert targets == "world<|im_end|>"
    # The newline after <|im_end|> carries no loss.
    assert not encoded.loss_mask[-1]


def test_prompt_mask_marks_every_assistant_turn(tiny_tokenizer):
    encoder = ChatEncoder(tiny_tokenizer, mask_prompt=True)
    example = Example(
        "x",
        messages=(
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "one"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "two"},
        ),
    )
    encoded = encoder.encode(example)
    hf = tiny_tokenizer._tokenizer
    targets = hf.decode(encoded.tokens[encoded.loss_mask].tolist())
    assert targets == "one<|im_end|>two<|im_end|>"


def test_without_prompt_mask_every_token_is_a_target(tiny_tokenizer):
    encoder = ChatEncoder(tiny_tokenizer, mask_prompt=False)
    encoded = encoder.encode(
        Example("x", messages=tuple(chat_record("q", "a")["messages"]))
    )
    assert encoded.loss_mask.all()


def test_text_examples_end_with_eos(tiny_tokenizer):
    encoded = ChatEncoder(tiny_tokenizer).encode(Example("x", text="hello world"))
    assert encoded.tokens[-1] == tiny_tokenizer.eos_token_id
    assert encoded.loss_mask.all()


def test_chat_data_without_template_is_an_error(tmp_path):
    from mlx_lm.utils import load_tokenizer
    from training_fixtures import build_tiny_model

    folder = build_tiny_model(tmp_path / "model", with_chat_template=False)
    data = write_jsonl(
        tmp_path / "data" / "train.jsonl",
        [{"messages": [{"role": "user", "content": "hi"}]}],
    ).parent
    with pytest.raises(DataError) as caught:
        load_training_data(data, load_tokenizer(folder), max_seq_length=64)
    assert caught.value.location.endswith("train.jsonl:1")
    assert "needs a model with a chat template" in caught.value.message


def test_truncation_that_leaves_no_target_is_an_error(tmp_path, tiny_tokenizer):
    long_question = "what is " * 40
    data = write_jsonl(
        tmp_path / "data" / "train.jsonl", [chat_record(long_question, "May")]
    ).parent
    with pytest.raises(DataError) as caught:
        load_training_data(data, tiny_tokenizer, max_seq_length=16)
    assert caught.value.location.endswith("train.jsonl:1")
    assert "nothing to learn" in caught.value.message


def test_truncated_examples_are_counted(tmp_path, tiny_tokenizer, caplog):
    data = write_jsonl(
        tmp_path / "data" / "train.jsonl",
        [{"text": "hello world " * 20}, {"text": "hi"}],
    ).parent
    loaded = load_training_data(data, tiny_tokenizer, max_seq_length=16)
    assert loaded.train.truncated == 1
    assert max(len(e.tokens) for e in loaded.train.examples) == 16
    assert "1 of 2 examples were longer than max_seq_length (16)" in caplog.text


def test_references_come_from_final_assistant_turn(chat_data_dir, tiny_tokenizer):
    loaded = load_training_data(chat_data_dir, tiny_tokenizer, max_seq_length=128)
    reference = loaded.held_out_references()[0]
    assert reference.answer == "2021-06-01"
    prompt = tiny_tokenizer._tokenizer.decode(reference.prompt_tokens)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert np.all([e.target_count > 0 for e in loaded.train.examples])
