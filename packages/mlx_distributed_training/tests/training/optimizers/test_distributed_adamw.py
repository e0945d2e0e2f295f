"""DistributedAdamW: gradient averaging, sharded state and checkpoints.

The multi-rank tests start two real ranks of a ring group on loopback.
"""

import json

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_distributed_training.training.optimizers.distributed_adamw import (
    DistributedAdamW,
    OptimizerStateError,
)

# Max of ||a - b|| / ||b|| over the arrays of two weight sets. Adam divides by
# sqrt(v), so a summation-order difference in a near-zero gradient can move
# single elements by more than this; whole arrays stay within it.
RELATIVE_TOLERANCE = 1e-5


def load(workdir, name):
    return mx.load(str(workdir / f"{name}.safetensors"))


def assert_bitwise_equal(first, second):
    assert sorted(first) == sorted(second)
    for key in first:
        assert mx.array_equal(first[key], second[key]), key


def relative_difference(actual, expected):
    assert sorted(actual) == sorted(expected)
    return max(
        (mx.linalg.norm(actual[k] - expected[k]) / mx.linalg.norm(expected[k])).item()
        for k in expected
    )


def tiny_model():
    mx.random.seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def regression_loss_and_grad(model):
    inputs = mx.random.normal((16, 4), key=mx.random.key(1))
    targets = mx.random.normal((16, 3), key=mx.random.key(2))
    return nn.value_and_grad(model, lambda m: ((m(inputs) - targets) ** 2).mean())


def train(model, optimizer, steps=3):
    loss_and_grad = regression_loss_and_grad(model)
    for _ in range(steps):
        _, gradients = loss_and_grad(model)
        optimizer.apply_gradients(optimizer.average_gradients(gradients), model)
        mx.eval(model.parameters(), optimizer.state)


# -- one process ---------------------------------------------------------------


def test_average_gradients_single_process_is_identity():
    optimizer = DistributedAdamW(1e-3)
    gradients = {"w": mx.ones((2, 2))}
    assert optimizer.average_gradients(gradients) is gradients


def test_apply_gradients_matches_mlx_adamw():
    schedule = optim.cosine_decay(1e-2, 10)
    model, reference = tiny_model(), tiny_model()
    train(model, DistributedAdamW(schedule, weight_decay=0.05))
    reference_optimizer = optim.AdamW(schedule, weight_decay=0.05)
    loss_and_grad = regression_loss_and_grad(reference)
    for _ in range(3):
        _, gradients = loss_and_grad(reference)
        reference_optimizer.update(reference, gradients)
        mx.eval(reference.parameters(), reference_optimizer.state)

    assert_bitwise_equal(
        dict(tree_flatten(model.parameters())),
        dict(tree_flatten(reference.parameters())),
    )


def test_sharded_single_process_matches_unsharded():
    full, sharded = tiny_model(), tiny_model()
    train(full, DistributedAdamW(1e-2))
    train(sharded, DistributedAdamW(1e-2, shard_state=True, bucket_size_bytes=64))
    assert_bitwise_equal(
        dict(tree_flatten(full.parameters())),
        dict(tree_flatten(sharded.parameters())),
    )


def test_checkpoint_state_restores_step_and_moments():
    model = tiny_model()
    optimizer = DistributedAdamW(optim.linear_schedule(1e-2, 0.0, 10))
    train(model, optimizer, steps=3)
    state = optimizer.checkpoint_state()

    restored = DistributedAdamW(optim.linear_schedule(1e-2, 0.0, 10))
    restored.load_checkpoint_state(state)
    restored.init(model.trainable_parameters())

    assert restored.step.item() == 3
    assert_bitwise_equal(restored.checkpoint_state(), state)


def test_checkpoint_state_loads_across_sharding():
    model = tiny_model()
    sharded = DistributedAdamW(1e-2, shard_state=True, bucket_size_bytes=64)
    train(model, sharded, steps=2)
    unsharded = DistributedAdamW(1e-2)
    unsharded.init(model.trainable_parameters())
    unsharded.load_checkpoint_state(sharded.checkpoint_state())
    assert_bitwise_equal(unsharded.checkpoint_state(), sharded.checkpoint_state())


def test_load_checkpoint_state_rejects_missing_moment():
    model = tiny_model()
    optimizer = DistributedAdamW(1e-2)
    train(model, optimizer, steps=1)
    state = optimizer.checkpoint_state()
    del state["layers.0.bias.v"]
    with pytest.raises(OptimizerStateError) as raised:
        optimizer.load_checkpoint_state(state)
    assert str(raised.value) == (
        "optimizer state does not match the trainable parameters: "
        "missing 'layers.0.bias.v'"
    )


def test_load_checkpoint_state_rejects_wrong_shape():
    model = tiny_model()
    optimizer = DistributedAdamW(1e-2, shard_state=True)
    train(model, optimizer, steps=1)
    state = optimizer.checkpoint_state()
    state["layers.2.bias.m"] = mx.zeros((4,))
    with pytest.raises(OptimizerStateError) as raised:
        optimizer.load_checkpoint_state(state)
    assert str(raised.value) == (
        "optimizer state does not match the trainable parameters: "
        "'layers.2.bias.m' has shape (4,), expected (3,)"
    )


def test_load_checkpoint_state_requires_step():
    with pytest.raises(OptimizerStateError, match="missing the 'step' entry"):
        DistributedAdamW(1e-2).load_checkpoint_state({})


def test_checkpoint_state_before_init_raises():
    with pytest.raises(OptimizerStateError, match="not initialized"):
        DistributedAdamW(1e-2).checkpoint_state()


def test_reduce_gradients_keeps_slices_and_empties_input():
    parameters = {"a": mx.zeros((3,)), "b": mx.zeros((2, 2))}
    optimizer = DistributedAdamW(0.1, shard_state=True, bucket_size_bytes=16)
    gradients = {"a": mx.array([1.0, 2.0, 3.0]), "b": mx.full((2, 2), 4.0)}
    optimizer.init(parameters)
    shards = optimizer.reduce_gradients(gradients)
    assert gradients == {}
    assert [s.tolist() for s in shards.slices] == [[1.0, 2.0, 3.0], [4.0] * 4]


def test_shard_norm_and_clipping_match_mlx():
    gradients = {"a": mx.array([3.0, 0.0]), "b": mx.array([[4.0]])}
    sharded = DistributedAdamW(0.1, shard_state=True)
    shards = sharded.reduce_gradients(dict(gradients))
    norm = sharded.gradient_norm(shards)
    clipped_tree, expected_norm = optim.clip_grad_norm(gradients, 1.0)
    clipped = sharded.clip_gradients(shards, norm, 1.0)
    assert norm.item() == pytest.approx(expected_norm.item())
    expected = [*clipped_tree["a"].tolist(), *clipped_tree["b"].reshape(-1).tolist()]
    assert clipped.slices[0].tolist() == pytest.approx(expected)


def test_unsharded_reduce_returns_gradient_tree():
    optimizer = DistributedAdamW(0.1)
    reduced = optimizer.reduce_gradients({"layers.0.w": mx.ones((2,))})
    assert reduced["layers"][0]["w"].tolist() == [1.0, 1.0]


def test_apply_gradients_returns_tree_for_parameter_dict():
    parameters = {"w": mx.ones((3,))}
    optimizer = DistributedAdamW(0.1, weight_decay=0.0, shard_state=True)
    updated = optimizer.apply_gradients({"w": mx.ones((3,))}, parameters)
    # First step without bias correction: m = 0.1 g, v = 0.001 g^2.
    expected = 1 - 0.1 * 0.1 / (0.001**0.5 + 1e-8)
    assert sorted(updated) == ["w"]
    assert np.allclose(np.array(updated["w"]), expected, rtol=1e-6)


# -- two ranks -----------------------------------------------------------------


@pytest.fixture(scope="module")
def averaged_run(launch_ranks):
    runs = launch_ranks("average_gradients.py", ["--bucket-size-bytes", "256"])
    assert all(run.returncode == 0 for run in runs), runs.describe()
    return runs.workdir


@pytest.fixture(scope="module")
def adamw_run(launch_ranks):
    runs = launch_ranks("adamw_steps.py", ["--steps", "4"])
    assert all(run.returncode == 0 for run in runs), runs.describe()
    return runs.workdir


def test_averaged_gradients_identical_on_both_ranks(averaged_run):
    assert_bitwise_equal(
        load(averaged_run, "averaged-rank0"), load(averaged_run, "averaged-rank1")
    )


def test_averaged_gradients_equal_mean(averaged_run):
    first = load(averaged_run, "inputs-rank0")
    second = load(averaged_run, "inputs-rank1")
    averaged = load(averaged_run, "averaged-rank0")
    for key, value in averaged.items():
        expected = (first[key].astype(mx.float32) + second[key]) / 2
        tolerance = 1e-2 if value.dtype == mx.bfloat16 else 1e-6
        assert value.dtype == first[key].dtype, key
        assert mx.allclose(value.astype(mx.float32), expected, atol=tolerance), key


def test_sharded_weights_equal_unsharded(adamw_run):
    for rank in (0, 1):
        assert_bitwise_equal(
            load(adamw_run, f"weights-sharded-rank{rank}"),
            load(adamw_run, f"weights-full-rank{rank}"),
        )


def test_reduced_shards_give_unsharded_weights(adamw_run):
    for rank in (0, 1):
        assert_bitwise_equal(
            load(adamw_run, f"weights-reduced-rank{rank}"),
            load(adamw_run, f"weights-full-rank{rank}"),
        )


def test_shard_norm_matches_full_norm(adamw_run):
    def norms(mode, rank):
        return json.loads((adamw_run / f"norms-{mode}-rank{rank}.json").read_text())

    full = norms("full", 0)
    assert norms("reduced", 0) == norms("reduced", 1)
    np.testing.assert_allclose(norms("reduced", 0), full, rtol=1e-6)
    assert full[0] > 0


def test_sharded_weights_identical_on_both_ranks(adamw_run):
    assert_bitwise_equal(
        load(adamw_run, "weights-sharded-rank0"),
        load(adamw_run, "weights-sharded-rank1"),
    )


def test_sharded_checkpoint_state_gathers_full_state(adamw_run):
    full = load(adamw_run, "state-full-rank0")
    for rank in (0, 1):
        assert_bitwise_equal(load(adamw_run, f"state-sharded-rank{rank}"), full)
    assert full["step"].item() == 4


def test_sharded_restore_continues_like_uninterrupted(adamw_run):
    for rank in (0, 1):
        assert_bitwise_equal(
            load(adamw_run, f"resumed-rank{rank}"),
            load(adamw_run, f"continued-rank{rank}"),
        )


@pytest.mark.parametrize("shard_flag", [[], ["--shard-state"]], ids=["full", "sharded"])
def test_two_ranks_match_one_rank_with_global_batch(launch_ranks, shard_flag):
    """2 ranks x micro-batch 4 train like 1 rank x batch 8 (relative 1e-5)."""
    one = launch_ranks("data_parallel_training.py", shard_flag, world_size=1)
    two = launch_ranks("data_parallel_training.py", shard_flag, world_size=2)
    assert all(run.returncode == 0 for run in [*one, *two]), two.describe()

    single = load(one.workdir, "weights-rank0")
    for rank in (0, 1):
        weights = load(two.workdir, f"weights-rank{rank}")
        assert relative_difference(weights, single) <= RELATIVE_TOLERANCE
    single_losses = json.loads((one.workdir / "losses.json").read_text())
    parallel_losses = json.loads((two.workdir / "losses.json").read_text())
    np.testing.assert_allclose(parallel_losses, single_losses, rtol=RELATIVE_TOLERANCE)
