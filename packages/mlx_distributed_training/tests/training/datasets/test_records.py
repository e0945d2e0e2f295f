"""Reading raw records from data files: text encoding problems."""

import json

import pytest
from mlx_distributed_training.training.datasets.errors import DataError
from mlx_distributed_training.training.datasets.records import read_splits


def test_jsonl_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError) as caught:
        read_splits(tmp_path)
    assert caught.value.location == f"{path}:2"
    assert caught.value.message == (
        "invalid UTF-8 at byte 13 of the line; save the file as UTF-8"
    )


def test_json_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "train.json"
    path.write_bytes(b'[\n{"text": "ok"},\n{"text": "caf\xe9"}\n]\n')
    with pytest.raises(DataError) as caught:
        read_splits(tmp_path)
    assert caught.value.location == f"{path}:3"
    assert caught.value.message == (
        "invalid UTF-8 at byte 13 of the line; save the file as UTF-8"
    )


def test_jsonl_byte_order_mark_is_skipped(tmp_path):
    (tmp_path / "train.jsonl").write_bytes(
        b'\xef\xbb\xbf{"text": "one"}\n{"text": "two"}\n'
    )
    records = read_splits(tmp_path)["train"]
    assert [record.value for record in records] == [{"text": "one"}, {"text": "two"}]


def test_json_byte_order_mark_is_skipped(tmp_path):
    text = json.dumps([{"text": "one"}])
    (tmp_path / "train.json").write_bytes(b"\xef\xbb\xbf" + text.encode())
    records = read_splits(tmp_path)["train"]
    assert [record.value for record in records] == [{"text": "one"}]


def test_json_invalid_utf8_in_last_byte(tmp_path):
    path = tmp_path / "train.json"
    path.write_bytes(b'[{"text": "ok"}]\xe9')
    with pytest.raises(DataError) as caught:
        read_splits(tmp_path)
    assert caught.value.location == f"{path}:1"
    assert caught.value.message.startswith("invalid UTF-8 at byte 16 of the line")


def test_jsonl_unpaired_surrogate_names_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "pair \\ud83d\\ude80 ok"}\n{"text": "lone \\ud800"}\n')
    with pytest.raises(DataError) as caught:
        read_splits(tmp_path)
    assert caught.value.location == f"{path}:2"
    assert caught.value.message == (
        "invalid JSON string: unpaired surrogate escape \\ud800, "
        "which is not a Unicode character"
    )


def test_json_unpaired_surrogate_names_record(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('[{"text": "ok"}, {"text": "\\udfff"}]')
    with pytest.raises(DataError) as caught:
        read_splits(tmp_path)
    assert caught.value.location == f"{path}[1]"
    assert "unpaired surrogate escape \\udfff" in caught.value.message


def test_corrupt_parquet_is_data_error(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_text("not a parquet file")
    with pytest.raises(DataError) as caught:
        read_splits(tmp_path)
    assert caught.value.location == str(path)
    assert caught.value.message.startswith("cannot read Parquet file: ")


def test_empty_parquet_has_no_records(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    with pytest.raises(DataError) as caught:
        read_splits(tmp_path)
    assert caught.value.location == str(path)
    assert caught.value.message == "file contains no records"


def test_parquet_null_columns_are_left_out(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": "a", "completion": "b", "text": None}, {"text": "c"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    records = read_splits(tmp_path)["train"]
    assert records[0].value == {"prompt": "a", "completion": "b"}
    assert records[1].value == {"text": "c"}
    assert records[1].location == f"{tmp_path / 'train.parquet'} row 1"
