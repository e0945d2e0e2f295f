"""Layout that packs many named arrays into a few flat vectors (buckets).

Gradient averaging sends one ``all_sum`` per bucket instead of one per array,
and the sharded optimizer splits each bucket into ``world_size`` equal slices.
The layout depends only on the names, shapes and dtypes of the arrays, in
order, so every rank computes the same layout from the same parameter tree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mlx.core as mx

DEFAULT_BUCKET_SIZE_BYTES = 32 * 1024**2


@dataclass(frozen=True)
class BucketEntry:
    """One array's place inside a bucket, in elements."""

    key: str
    shape: tuple[int, ...]
    offset: int
    size: int


@dataclass(frozen=True)
class Bucket:
    """Arrays of one dtype laid out back to back in a flat vector."""

    dtype: mx.Dtype
    entries: tuple[BucketEntry, ...]
    size: int

    def shard_size(self, world_size: int) -> int:
        """Return the length of one rank's slice; the last slice is zero-padded."""
        return math.ceil(self.size / world_size)

    def shard_bounds(self, rank: int, world_size: int) -> tuple[int, int]:
        """Return the ``[start, stop)`` element range of ``rank``'s slice."""
        length = self.shard_size(world_size)
        return rank * length, (rank + 1) * length

    def pack(self, arrays: Mapping[str, mx.array]) -> mx.array:
        """Concatenate this bucket's arrays, flattened, into one vector."""
        pieces = [arrays[entry.key].reshape(-1) for entry in self.entries]
        if len(pieces) == 1:
            return pieces[0]
        return mx.concatenate(pieces)

    def pack_range(
        self, arrays: Mapping[str, mx.array], start: int, stop: int
    ) -> mx.array:
        """Return elements ``[start, stop)`` of the packed vector.

        Only the arrays that overlap the range are read, and positions past
        the end of the bucket are zeros, so every slice has the same length.
        """
        pieces = []
        for entry in self.entries:
            begin = max(start, entry.offset)
            end = min(stop, entry.offset + entry.size)
            if begin >= end:
                continue
            flat = arrays[entry.key].reshape(-1)
            pieces.append(flat[begin - entry.offset : end - entry.offset])
        padding = stop - max(start, self.size)
        if padding > 0:
            pieces.append(mx.zeros((padding,), dtype=self.dtype))
        if len(pieces) == 1:
            return pieces[0]
        return mx.concatenate(pieces)

    def unpack(self, flat: mx.array) -> dict[str, mx.array]:
        """Split a packed vector (padding allowed at the end) into named arrays."""
        return {
            entry.key: flat[entry.offset : entry.offset + entry.size].reshape(
                entry.shape
            )
            for entry in self.entries
        }


def plan_buckets(
    arrays: Sequence[tuple[str, mx.array]], bucket_size_bytes: int
) -> tuple[Bucket, ...]:
    """Group consecutive arrays of one dtype into buckets of at most
    ``bucket_size_bytes``.

    An array larger than the limit gets a bucket of its own. A change of dtype
    closes the current bucket, because a bucket is one contiguous vector.
    """
    if bucket_size_bytes <= 0:
        raise ValueError(f"bucket_size_bytes must be positive, got {bucket_size_bytes}")
    buckets: list[Bucket] = []
    entries: list[BucketEntry] = []
    dtype: mx.Dtype | None = None
    size = 0

    def close() -> None:
        if entries:
            buckets.append(Bucket(dtype, tuple(entries), size))

    for key, array in arrays:
        fits = (size + array.size) * array.dtype.size <= bucket_size_bytes
        if entries and (array.dtype != dtype or not fits):
            close()
            entries, size = [], 0
        dtype = array.dtype
        entries.append(BucketEntry(key, tuple(array.shape), size, array.size))
        size += array.size
    close()
    return tuple(buckets)
