"""Best-fit-decreasing packing and the choice of its row length."""

import numpy as np
import pytest
from mlx_distributed_training.training.datasets import packing
from mlx_distributed_training.training.datasets.encode import EncodedExample
from mlx_distributed_training.training.datasets.packing import (
    best_fit_rows,
    pack_examples,
    packing_row_length,
)


def examples_of(lengths):
    return [
        EncodedExample(
            np.arange(length, dtype=np.int32) + 1000 * number,
            np.ones(length, bool),
            f"line {number + 1}",
        )
        for number, length in enumerate(lengths)
    ]


def brute_force_best_fit(lengths, row_length, seed):
    """Best fit decreasing by scanning every open row, for comparison.

    Which of two rows with equal room takes an example changes no row count.
    """
    order = np.random.default_rng(seed).permutation(len(lengths))
    order = order[np.argsort(-lengths[order], kind="stable")]
    rooms = []
    for index in order.tolist():
        fitting = [r for r, room in enumerate(rooms) if room >= lengths[index]]
        if fitting:
            row = min(fitting, key=lambda r: rooms[r])
            rooms[row] -= lengths[index]
        else:
            rooms.append(row_length - lengths[index])
    return len(rooms)


def test_best_fit_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(20):
        lengths = rng.integers(1, 90, size=rng.integers(1, 200))
        rows = best_fit_rows(lengths, 96, seed=1)
        assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
        assert all(lengths[row].sum() <= 96 for row in rows)
        assert len(rows) == brute_force_best_fit(lengths, 96, seed=1)


def test_best_fit_picks_fullest_row():
    # 6 opens a row with room 4, and 5 opens a second with room 5. Then 4 fits
    # both, and goes beside 6, where the least room is left.
    rows = best_fit_rows(np.array([6, 5, 4]), 10, seed=0)
    assert rows == [[0, 2], [1]]


def test_example_longer_than_row_rejected():
    with pytest.raises(ValueError, match="an example of 12 tokens does not fit"):
        best_fit_rows(np.array([3, 12]), 10, seed=0)


def test_row_length_shortest_full():
    # Examples of 60 tokens: rows of 64 to 112 hold one each (94% tokens at
    # most); rows of 120 hold two, with no padding.
    lengths = np.full(40, 60)
    assert packing_row_length(lengths, 512, seed=0) == 120
    assert packing_row_length(lengths, 112, seed=0) == 64


def test_row_length_fullest_fallback():
    # 83 tokens take 3 rows of 40 (69% tokens) or 2 rows of 48, 56 or 64
    # (86%, 74%, 65%). None reaches 95%, so the fullest length wins: 48.
    assert packing_row_length(np.array([40, 40, 3]), 64, seed=0) == 48


def test_row_length_uneven_max_seq_length():
    assert packing_row_length(np.array([98, 97]), 100, seed=0) == 100


def test_row_length_from_sample(monkeypatch):
    packed_sizes = []
    real_best_fit_rows = packing.best_fit_rows

    def recording(lengths, row_length, seed):
        packed_sizes.append(len(lengths))
        return real_best_fit_rows(lengths, row_length, seed)

    monkeypatch.setattr(packing, "CHOICE_SAMPLE", 50)
    monkeypatch.setattr(packing, "best_fit_rows", recording)
    lengths = np.full(5000, 60)
    assert packing_row_length(lengths, 512, seed=0) == 120
    assert packed_sizes == [50] * len(range(64, 121, 8))


def test_pack_keeps_every_token_once():
    lengths = [30, 7, 62, 45, 12, 50, 19, 3]
    examples = examples_of(lengths)
    packed = pack_examples(examples, 64, seed=5)
    assert packed.row_length == 64
    tokens = np.concatenate([row.tokens for row in packed.rows])
    assert sorted(tokens.tolist()) == sorted(
        np.concatenate([e.tokens for e in examples]).tolist()
    )
    assert all(len(row.tokens) <= 64 for row in packed.rows)
    assert packed.fill == pytest.approx(sum(lengths) / (64 * len(packed.rows)))
    for row in packed.rows:
        # Segments count 0, 1, ... and change where an example starts.
        starts = np.flatnonzero(np.diff(row.segments)) + 1
        assert (row.tokens[starts] % 1000 == 0).all()
        assert row.segments[-1] == len(starts)


def test_pack_order_follows_seed():
    examples = examples_of([20] * 12)
    first = pack_examples(examples, 64, seed=1).rows
    again = pack_examples(examples, 64, seed=1).rows
    other = pack_examples(examples, 64, seed=2).rows
    assert [r.tokens.tolist() for r in first] == [r.tokens.tolist() for r in again]
    assert [r.tokens.tolist() for r in first] != [r.tokens.tolist() for r in other]


def test_row_length_fits_unsampled_longest(monkeypatch):
    monkeypatch.setattr(packing, "CHOICE_SAMPLE", 50)
    lengths = np.full(5000, 40)
    lengths[123] = 300
    for seed in range(5):
        assert packing_row_length(lengths, 512, seed=seed) >= 300
