"""Bucket layout: grouping by size and dtype, packing and shard slices."""

import mlx.core as mx
import pytest
from mlx_distributed_training.training.optimizers.buckets import plan_buckets


def arrays():
    return [
        ("a", mx.arange(6, dtype=mx.float32).reshape(2, 3)),
        ("b", mx.arange(4, dtype=mx.float32)),
        ("c", mx.arange(3, dtype=mx.bfloat16)),
        ("d", mx.arange(20, dtype=mx.float32)),
    ]


def test_plan_buckets_splits_on_size_and_dtype():
    buckets = plan_buckets(arrays(), bucket_size_bytes=40)
    assert [[e.key for e in b.entries] for b in buckets] == [["a", "b"], ["c"], ["d"]]
    assert [b.size for b in buckets] == [10, 3, 20]
    assert [b.dtype for b in buckets] == [mx.float32, mx.bfloat16, mx.float32]


def test_plan_buckets_rejects_non_positive_size():
    with pytest.raises(ValueError, match="bucket_size_bytes must be positive, got 0"):
        plan_buckets(arrays(), 0)


def test_pack_then_unpack_round_trips():
    named = dict(arrays())
    bucket = plan_buckets(arrays(), 40)[0]
    unpacked = bucket.unpack(bucket.pack(named))
    assert mx.array_equal(unpacked["a"], named["a"])
    assert mx.array_equal(unpacked["b"], named["b"])


def test_pack_range_slices_concatenate_to_padded_bucket():
    named = dict(arrays())
    bucket = plan_buckets(arrays(), 40)[0]
    slices = [bucket.pack_range(named, *bucket.shard_bounds(r, 3)) for r in range(3)]
    assert [s.size for s in slices] == [4, 4, 4]
    joined = mx.concatenate(slices)
    assert mx.array_equal(joined[:10], bucket.pack(named))
    assert mx.array_equal(joined[10:], mx.zeros((2,)))
