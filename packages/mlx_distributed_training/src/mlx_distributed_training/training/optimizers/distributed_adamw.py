"""AdamW for data-parallel training on an ``mx.distributed`` group.

Gradients are averaged with one ``all_sum`` per bucket of packed arrays. With
``shard_state=True`` every rank keeps the AdamW moments only for its slice of
each bucket, updates that slice of the weights, and an ``all_gather`` puts the
full weights back together on every rank. AdamW works element by element, so
the sharded update computes the same numbers as the unsharded one.
:meth:`DistributedAdamW.reduce_gradients` also keeps only this rank's slice of
the averaged gradients when sharded, reducing bucket by bucket.

Every method that communicates is a collective: every rank must call it, with
the same parameter tree, in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map_with_path, tree_unflatten

from .buckets import DEFAULT_BUCKET_SIZE_BYTES, Bucket, plan_buckets
from .gradient_shards import GradientShards

STEP_KEY = "step"
LEARNING_RATE_KEY = "learning_rate"


class OptimizerStateError(ValueError):
    """A checkpointed optimizer state that does not match the parameters."""


class DistributedAdamW(optim.AdamW):
    """AdamW whose gradients are averaged, and whose state is optionally
    sharded, across the ranks of ``group``.

    ``group=None`` means a single process: nothing is communicated.
    ``learning_rate`` may be a float or an ``mlx.optimizers`` schedule.
    """

    def __init__(
        self,
        learning_rate: float | Callable[[mx.array], mx.array],
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        group: mx.distributed.Group | None = None,
        shard_state: bool = False,
        bucket_size_bytes: int = DEFAULT_BUCKET_SIZE_BYTES,
        bias_correction: bool = False,
    ):
        super().__init__(
            learning_rate=learning_rate,
            betas=list(betas),
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
        )
        if bucket_size_bytes <= 0:
            raise ValueError(
                f"bucket_size_bytes must be positive, got {bucket_size_bytes}"
            )
        self.group = group
        self.world_size = group.size() if group is not None else 1
        self.rank = group.rank() if group is not None else 0
        self.shard_state = shard_state
        self.bucket_size_bytes = bucket_size_bytes
        self._layouts: dict[tuple, tuple[Bucket, ...]] = {}
        self._buckets: tuple[Bucket, ...] = ()
        self._pending_state: dict[str, mx.array] | None = None

    # -- gradient averaging -------------------------------------------------

    def average_gradients(self, gradients: dict) -> dict:
        """Return ``gradients`` averaged over the group, with the same structure.

        A collective: one ``all_sum`` per bucket, entered by every rank in the
        same order. Every rank gets bit-identical results because ``all_sum``
        returns the same reduced vector to all ranks.
        """
        if self.world_size == 1:
            return gradients
        flat = tree_flatten(gradients)
        arrays = dict(flat)
        averaged: dict[str, mx.array] = {}
        for bucket in self._layout(flat):
            total = mx.distributed.all_sum(bucket.pack(arrays), group=self.group)
            averaged.update(bucket.unpack(total / self.world_size))
        return tree_map_with_path(lambda path, _: averaged[path], gradients)

    def reduce_gradients(
        self, gradients: MutableMapping[str, mx.array]
    ) -> dict | GradientShards:
        """Average a flat ``{name: array}`` gradient dict over the group.

        Unsharded, this returns the averaged gradient tree. Sharded, it returns
        only this rank's slice of each bucket, and the host waits for one
        bucket at a time, last bucket first. Each bucket's entries are removed
        from ``gradients`` as it is reduced, so that their memory is freed: with
        lazy gradients the backward pass then runs bucket by bucket too, and
        the full gradients never exist at once. A collective.
        """
        if not self.shard_state:
            tree = tree_unflatten(list(gradients.items()))
            gradients.clear()
            return self.average_gradients(tree)
        if not self._initialized:
            self.init(dict(gradients))
        slices: list[mx.array | None] = [None] * len(self._buckets)
        # Backward computes the last layers' gradients first.
        for index in reversed(range(len(self._buckets))):
            piece = self._reduce_bucket(self._buckets[index], gradients)
            mx.eval(piece)
            slices[index] = piece
        return GradientShards(tuple(slices))

    def _reduce_bucket(
        self, bucket: Bucket, gradients: MutableMapping[str, mx.array]
    ) -> mx.array:
        """Build (lazily) this rank's slice of the averaged bucket, taking the
        bucket's arrays out of ``gradients``."""
        packed = bucket.pack({e.key: gradients.pop(e.key) for e in bucket.entries})
        if self.world_size > 1:
            packed = mx.distributed.all_sum(packed, group=self.group)
        start, stop = bucket.shard_bounds(self.rank, self.world_size)
        padding = stop - max(start, bucket.size)
        if padding > 0:
            packed = mx.concatenate([packed, mx.zeros((padding,), packed.dtype)])
        # The division makes a new array, so the full packed vector is freed.
        return packed[start:stop] / self.world_size

    def gradient_norm(self, gradients: dict | GradientShards) -> mx.array:
        """Return the L2 norm of the averaged gradients over all parameters.

        For shards this is a collective: one ``all_sum`` of a scalar.
        """
        if not isinstance(gradients, GradientShards):
            return optim.clip_grad_norm(gradients, max_norm=math.inf)[1]
        squared = gradients.squared_norm()
        if self.world_size > 1:
            squared = mx.distributed.all_sum(squared, group=self.group)
        return mx.sqrt(squared)

    def clip_gradients(
        self, gradients: dict | GradientShards, norm: mx.array, max_norm: float
    ) -> dict | GradientShards:
        """Scale ``gradients`` of norm ``norm`` down to at most ``max_norm``,
        with the factor ``mlx.optimizers.clip_grad_norm`` uses."""
        if not isinstance(gradients, GradientShards):
            return optim.clip_grad_norm(gradients, max_norm)[0]
        return gradients.scaled(mx.minimum(max_norm / (norm + 1e-6), 1.0))

    # -- state initialization -------------------------------------------------

    def init(self, parameters: dict) -> None:
        """Create the AdamW state for ``parameters`` (the trainable tree).

        With sharding, each rank allocates the moments of its slice only. A
        state given to :meth:`load_checkpoint_state` before this call is
        applied here.
        """
        if self.shard_state:
            self._buckets = self._layout(tree_flatten(parameters))
            shards = []
            for bucket in self._buckets:
                slot: dict[str, mx.array] = {}
                shape = (bucket.shard_size(self.world_size),)
                self.init_single(mx.zeros(shape, dtype=bucket.dtype), slot)
                shards.append(slot)
            self._state["shards"] = shards
            self._initialized = True
        else:
            super().init(parameters)
        if self._pending_state is not None:
            pending, self._pending_state = self._pending_state, None
            self._apply_checkpoint_state(pending)

    # -- update -------------------------------------------------------------

    def apply_gradients(self, gradients: dict, parameters: dict) -> dict:
        """Take one AdamW step and return the updated parameter tree.

        ``gradients`` must already be averaged (see :meth:`average_gradients`),
        or be this rank's shards from :meth:`reduce_gradients`.
        ``parameters`` is the model or its parameter tree. A model is updated
        in place as well, so every rank ends the step with the full weights.
        With sharding this is a collective, one ``all_gather`` per bucket,
        and the host waits for each bucket before building the next (see
        ``_apply_sharded``), so with a watchdog it belongs inside the
        collective block.
        """
        if self.shard_state:
            model = parameters if isinstance(parameters, nn.Module) else None
            return self._apply_sharded(gradients, parameters, model)
        if isinstance(gradients, GradientShards):
            raise TypeError("gradient shards need an optimizer with shard_state=True")
        if isinstance(parameters, nn.Module):
            updated = super().apply_gradients(gradients, parameters.parameters())
            parameters.update(updated)
            return updated
        return super().apply_gradients(gradients, parameters)

    def _apply_sharded(
        self,
        gradients: dict | GradientShards,
        parameters: dict,
        model: nn.Module | None,
    ) -> dict:
        shards = gradients if isinstance(gradients, GradientShards) else None
        if not self._initialized:
            if shards is not None:
                raise OptimizerStateError(
                    "gradient shards come from reduce_gradients(), which "
                    "initializes the state; call it on this optimizer first"
                )
            self.init(gradients)

        # Same order as Optimizer.apply_gradients: schedule, then count.
        for name, schedule in self._schedulers.items():
            self.state[name] = schedule(self.step)
        self.state[STEP_KEY] = self.step + 1

        flat_gradients = {} if shards is not None else dict(tree_flatten(gradients))
        if model is not None:
            parameters = model.parameters()
        flat_parameters = dict(tree_flatten(parameters))
        del parameters
        updated: dict[str, mx.array] = {}
        for index, (bucket, slot) in enumerate(
            zip(self._buckets, self.state["shards"], strict=True)
        ):
            if shards is not None:
                gradient_slice = shards.slices[index]
            else:
                start, stop = bucket.shard_bounds(self.rank, self.world_size)
                gradient_slice = bucket.pack_range(flat_gradients, start, stop)
            weights = self._update_bucket(bucket, slot, gradient_slice, flat_parameters)
            del gradient_slice
            # The host waits for each bucket, so only one bucket's packed
            # copies exist at a time and replaced weights are freed early.
            # One lazy graph over all buckets would keep all of them alive.
            mx.eval(weights, slot)
            if model is not None:
                model.update(tree_unflatten(list(weights.items())))
            for key in weights:
                del flat_parameters[key]
            updated.update(weights)
        return tree_unflatten(list(updated.items()))

    def _update_bucket(
        self,
        bucket: Bucket,
        slot: dict[str, mx.array],
        gradient_slice: mx.array,
        flat_parameters: dict[str, mx.array],
    ) -> dict[str, mx.array]:
        """Build (lazily) this rank's AdamW update of its slice of ``bucket``
        and the gather of every rank's slice into full weights.

        Kept apart so that no Python name references the packed slices when
        the graph is evaluated, which lets MLX reuse their buffers in place.
        """
        start, stop = bucket.shard_bounds(self.rank, self.world_size)
        new_slice = self.apply_single(
            gradient_slice, bucket.pack_range(flat_parameters, start, stop), slot
        )
        return bucket.unpack(self._gather(new_slice))

    # -- checkpoints ----------------------------------------------------------

    def checkpoint_state(self) -> dict[str, mx.array]:
        """Return the full optimizer state as a flat ``{name: array}`` dict.

        Names are ``"step"``, ``"learning_rate"`` and ``"<parameter>.<moment>"``
        (for example ``"layers.0.mlp.up_proj.weight.m"``), the same with and
        without sharding and for any world size. With sharding this is a
        collective and it blocks until the slices are gathered, so call it on
        every rank even when only rank 0 writes the result.
        """
        if not self._initialized:
            raise OptimizerStateError(
                "optimizer state is not initialized: call init() with the "
                "trainable parameters or take a step first"
            )
        if not self.shard_state:
            return dict(tree_flatten(self.state))

        flat = {STEP_KEY: self.step, LEARNING_RATE_KEY: self.learning_rate}
        for bucket, slot in zip(self._buckets, self.state["shards"], strict=True):
            for moment, values in slot.items():
                full = bucket.unpack(self._gather(values))
                flat.update({f"{key}.{moment}": a for key, a in full.items()})
        # The host waits here so that every rank takes part in the gathers,
        # not only the rank that later evaluates the arrays to save them.
        mx.eval(flat)
        return flat

    def load_checkpoint_state(self, flat: Mapping[str, mx.array]) -> None:
        """Restore a state returned by :meth:`checkpoint_state`.

        Each rank keeps only its own slice when sharded. Before the state is
        initialized the arrays are kept and applied by :meth:`init`.
        """
        if STEP_KEY not in flat:
            raise OptimizerStateError("optimizer state is missing the 'step' entry")
        if self._initialized:
            self._apply_checkpoint_state(dict(flat))
        else:
            self._pending_state = dict(flat)

    def _apply_checkpoint_state(self, flat: dict[str, mx.array]) -> None:
        moments = self._moment_names()
        if self.shard_state:
            entries = [e for b in self._buckets for e in b.entries]
            expected = {e.key: e.shape for e in entries}
        else:
            expected = {
                key.rsplit(".", 1)[0]: value.shape
                for key, value in tree_flatten(self.state)
                if key.rsplit(".", 1)[-1] in moments
            }
        _check_state_names(flat, expected, moments)

        step = flat[STEP_KEY].astype(mx.uint64)
        learning_rate = flat.get(LEARNING_RATE_KEY, self.learning_rate)
        if self.shard_state:
            shards = []
            for bucket in self._buckets:
                start, stop = bucket.shard_bounds(self.rank, self.world_size)
                slot = {}
                for moment in moments:
                    named = {
                        e.key: flat[f"{e.key}.{moment}"].astype(bucket.dtype)
                        for e in bucket.entries
                    }
                    slot[moment] = bucket.pack_range(named, start, stop)
                shards.append(slot)
            self._state["shards"] = shards
        else:
            self._state = tree_map_with_path(
                lambda path, value: (
                    flat[path].astype(value.dtype) if path in flat else value
                ),
                self._state,
            )
        self._state[STEP_KEY] = step
        self._state[LEARNING_RATE_KEY] = mx.array(learning_rate)

    # -- helpers --------------------------------------------------------------

    def _layout(self, flat: Sequence[tuple[str, mx.array]]) -> tuple[Bucket, ...]:
        signature = tuple((key, tuple(a.shape), a.dtype) for key, a in flat)
        layout = self._layouts.get(signature)
        if layout is None:
            layout = plan_buckets(flat, self.bucket_size_bytes)
            self._layouts[signature] = layout
        return layout

    def _gather(self, values: mx.array) -> mx.array:
        if self.world_size == 1:
            return values
        return mx.distributed.all_gather(values, group=self.group)

    def _moment_names(self) -> tuple[str, ...]:
        template: dict[str, mx.array] = {}
        self.init_single(mx.zeros((1,)), template)
        return tuple(sorted(template))


def _check_state_names(
    flat: Mapping[str, mx.array],
    expected: Mapping[str, tuple[int, ...]],
    moments: Sequence[str],
) -> None:
    """Raise OptimizerStateError unless ``flat`` contains every moment of
    every expected parameter with its shape, and nothing else."""
    expected_names = {
        f"{key}.{moment}": shape
        for key, shape in expected.items()
        for moment in moments
    }
    missing = sorted(set(expected_names) - set(flat))
    unexpected = sorted(set(flat) - set(expected_names) - {STEP_KEY, LEARNING_RATE_KEY})
    problems = []
    if missing:
        problems.append(f"missing {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected {_first(unexpected)}")
    for name, shape in expected_names.items():
        if name in flat and tuple(flat[name].shape) != tuple(shape):
            problems.append(
                f"'{name}' has shape {tuple(flat[name].shape)}, expected {tuple(shape)}"
            )
    if problems:
        raise OptimizerStateError(
            "optimizer state does not match the trainable parameters: "
            + "; ".join(problems)
        )


def _first(names: Sequence[str], limit: int = 3) -> str:
    listed = ", ".join(f"'{name}'" for name in names[:limit])
    if len(names) > limit:
        listed += f" and {len(names) - limit} more"
    return listed
