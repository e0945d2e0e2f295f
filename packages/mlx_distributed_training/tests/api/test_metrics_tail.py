"""Tests of the incremental metrics.jsonl reader."""

import json

from mlx_distributed_training.api.metrics_tail import read_new_records


def test_reads_complete_lines_and_returns_offset(tmp_path):
    path = tmp_path / "metrics.jsonl"
    text = '{"event": "train", "step": 1}\n{"event": "train", "step": 2}\n'
    path.write_text(text)

    records, offset = read_new_records(path, 0)

    assert records == [{"event": "train", "step": 1}, {"event": "train", "step": 2}]
    assert offset == len(text)


def test_partial_last_line_waits_for_newline(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": ')

    records, offset = read_new_records(path, 0)
    with path.open("a") as handle:
        handle.write("2}\n")
    later, later_offset = read_new_records(path, offset)

    assert records == [{"step": 1}]
    assert offset == len('{"step": 1}\n')
    assert later == [{"step": 2}]
    assert later_offset == path.stat().st_size


def test_invalid_lines_are_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('not json\n[1, 2]\n\n{"step": 3}\n')

    records, offset = read_new_records(path, 0)

    assert records == [{"step": 3}]
    assert offset == path.stat().st_size


def test_missing_file_yields_nothing(tmp_path):
    assert read_new_records(tmp_path / "metrics.jsonl", 0) == ([], 0)


def test_shrunk_file_is_read_from_start(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1}) + "\n")

    records, offset = read_new_records(path, 1000)

    assert records == [{"step": 1}]
    assert offset == path.stat().st_size


def test_reads_at_most_max_bytes_per_call(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": step}) + "\n" for step in range(10)]
    path.write_text("".join(lines))

    records, offset = read_new_records(path, 0, max_bytes=len(lines[0]) * 3)

    assert records == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert offset == len(lines[0]) * 3
