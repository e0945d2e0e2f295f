"""This rank's slices of the averaged gradients, for the sharded optimizer.

With the optimizer state sharded, a rank updates only its slice of every
bucket, so it needs only that slice of the averaged gradients. Keeping the
slices instead of the full gradients cuts a rank's gradient memory by the
world size. The gradient norm is then a sum over every rank's slices, which
one extra ``all_sum`` of a scalar provides.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx


@dataclass(frozen=True)
class GradientShards:
    """This rank's slice of each bucket of averaged gradients, bucket order.

    Positions past the end of a bucket are zeros, as in ``Bucket.pack_range``.
    """

    slices: tuple[mx.array, ...]

    def squared_norm(self) -> mx.array:
        """Return the sum of squares over this rank's slices (float32)."""
        total = mx.array(0.0, dtype=mx.float32)
        for values in self.slices:
            total = total + mx.sum(mx.square(values.astype(mx.float32)))
        return total

    def scaled(self, factor: mx.array) -> GradientShards:
        """Return the slices multiplied by ``factor``, each in its own dtype."""
        return GradientShards(
            tuple((values * factor).astype(values.dtype) for values in self.slices)
        )
