"""Sequence packing: several examples per row, so that few positions are padding.

Examples go into rows best fit decreasing: longest first, each into the open
row with the least room that still fits it, or into a new row. Each row
records which example every token comes from (`segments`), so that attention
stays within an example (see `training.sft.packed_attention`).

The row length is the shortest multiple of the padding step, from the longest
example up to `max_seq_length`, whose rows are at least 95% tokens. Longer
rows would fill a little better. But where attention is not fused (MLX on CPU),
its cost per token grows with the row length. A LoRA step on SmolLM2-135M ran
at 117 tokens/s in rows of 128 and 84 in rows of 512.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from mlx_distributed_training.training.datasets.batching import PAD_MULTIPLE
from mlx_distributed_training.training.datasets.encode import EncodedExample

FULL_ENOUGH = 0.95
# Choosing the row length packs at most this many examples per candidate length.
CHOICE_SAMPLE = 10_000


@dataclass(frozen=True)
class Packing:
    """Rows of examples and the length they were packed to."""

    rows: list[EncodedExample]
    row_length: int
    fill: float  # tokens / (rows x row_length)


def pack_examples(
    examples: list[EncodedExample], max_seq_length: int, seed: int
) -> Packing:
    """Pack `examples` at the row length `packing_row_length` chooses."""
    lengths = np.array([len(example.tokens) for example in examples])
    row_length = packing_row_length(lengths, max_seq_length, seed)
    members = best_fit_rows(lengths, row_length, seed)
    rows = [
        join_row(examples, indices, number) for number, indices in enumerate(members)
    ]
    return Packing(rows, row_length, _fill(lengths, len(rows), row_length))


def packing_row_length(lengths: np.ndarray, max_seq_length: int, seed: int) -> int:
    """Return the shortest candidate row length whose rows are FULL_ENOUGH,
    else the fullest; fill is measured on a sample of CHOICE_SAMPLE examples."""
    # Every example must fit a row, including any the sample leaves out.
    shortest = math.ceil(int(lengths.max()) / PAD_MULTIPLE) * PAD_MULTIPLE
    if len(lengths) > CHOICE_SAMPLE:
        rng = np.random.default_rng(seed)
        lengths = rng.choice(lengths, CHOICE_SAMPLE, replace=False)
    candidates = list(range(shortest, max_seq_length + 1, PAD_MULTIPLE))
    if not candidates:
        return max_seq_length
    best, best_fill = candidates[0], -1.0
    for row_length in candidates:
        fill = _fill(lengths, len(best_fit_rows(lengths, row_length, seed)), row_length)
        if fill >= FULL_ENOUGH:
            return row_length
        if fill > best_fill:
            best, best_fill = row_length, fill
    return best


def best_fit_rows(lengths: np.ndarray, row_length: int, seed: int) -> list[list[int]]:
    """Group example indices into rows of at most `row_length` tokens.

    Examples of equal length are taken in an order shuffled by `seed`, so that
    rows do not follow the file order.
    """
    if len(lengths) and int(lengths.max()) > row_length:
        raise ValueError(
            f"an example of {int(lengths.max())} tokens does not fit rows of "
            f"{row_length}"
        )
    order = np.random.default_rng(seed).permutation(len(lengths))
    order = order[np.argsort(-lengths[order], kind="stable")]
    rows: list[list[int]] = []
    rows_by_room: list[list[int]] = [[] for _ in range(row_length + 1)]
    rooms = _RoomCounts(row_length)
    for index in order.tolist():
        need = int(lengths[index])
        room = rooms.smallest_at_least(need)
        if room is None:
            rows.append([index])
            row, left = len(rows) - 1, row_length - need
        else:
            row = rows_by_room[room].pop()
            rooms.add(room, -1)
            rows[row].append(index)
            left = room - need
        if left > 0:
            rows_by_room[left].append(row)
            rooms.add(left, 1)
    return rows


def join_row(
    examples: list[EncodedExample], indices: list[int], number: int
) -> EncodedExample:
    """Concatenate the examples of one row and record their segments."""
    chosen = [examples[index] for index in indices]
    masks = []
    for example in chosen:
        # The first token of each example would be predicted from the previous
        # example's last token, which is outside its attention, so it is never
        # a target.
        mask = example.loss_mask.copy()
        mask[0] = False
        masks.append(mask)
    segments = [
        np.full(len(example.tokens), position, np.int32)
        for position, example in enumerate(chosen)
    ]
    return EncodedExample(
        np.concatenate([example.tokens for example in chosen]),
        np.concatenate(masks),
        f"packed row {number}",
        np.concatenate(segments),
    )


def _fill(lengths: np.ndarray, row_count: int, row_length: int) -> float:
    return float(lengths.sum()) / max(row_count * row_length, 1)


class _RoomCounts:
    """How many open rows have each amount of room, 1 to `size` tokens.

    A Fenwick tree: adding to a count and finding the smallest room of at
    least `need` tokens with an open row both take O(log size) steps.
    """

    def __init__(self, size: int):
        self.size = size
        self.tree = [0] * (size + 1)
        self.top_bit = 1 << (size.bit_length() - 1) if size else 0

    def add(self, room: int, delta: int) -> None:
        while room <= self.size:
            self.tree[room] += delta
            room += room & -room

    def _rows_below(self, room: int) -> int:
        """Return the number of open rows with less than `room` tokens of room."""
        total, room = 0, room - 1
        while room > 0:
            total += self.tree[room]
            room -= room & -room
        return total

    def smallest_at_least(self, need: int) -> int | None:
        """Return the smallest room of at least `need` tokens that an open row
        has, or None."""
        # Descend the tree to the first room whose running count reaches the
        # count of rows below `need`, plus one.
        remaining = self._rows_below(need) + 1
        position, step = 0, self.top_bit
        while step:
            following = position + step
            if following <= self.size and self.tree[following] < remaining:
                position = following
                remaining -= self.tree[following]
            step >>= 1
        return position + 1 if position < self.size else None
