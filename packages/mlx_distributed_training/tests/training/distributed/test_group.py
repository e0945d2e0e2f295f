"""init_group: backend names, the one-process fallback and clear errors."""

import pytest
from mlx_distributed_training.training.distributed.group import (
    DistributedBackendError,
    init_group,
    init_single_process_group,
    launched_by_launcher,
)


@pytest.fixture
def no_launcher(monkeypatch):
    for name in ("MLX_RANK", "MLX_HOSTFILE", "MLX_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


def test_any_without_launcher_is_one_process(no_launcher):
    group = init_group("any")
    assert group.size() == 1
    assert group.rank() == 0


def test_unknown_backend_rejected():
    with pytest.raises(DistributedBackendError) as raised:
        init_group("gloo")
    assert str(raised.value) == (
        "unknown distributed backend 'gloo'; expected one of any, ring, mpi, nccl, "
        "jaccl"
    )


def test_ring_without_launcher_names_backend(no_launcher):
    with pytest.raises(DistributedBackendError) as raised:
        init_group("ring")
    message = str(raised.value)
    assert message.startswith("could not initialize distributed backend 'ring': ")
    assert "mlx-train -n N" in message


def test_launcher_variables_detected():
    assert launched_by_launcher({"MLX_RANK": "1", "MLX_HOSTFILE": "/tmp/h.json"})
    assert not launched_by_launcher({"HOME": "/root"})


def test_unavailable_backend_named():
    import mlx.core as mx

    if mx.distributed.is_available("nccl"):
        pytest.skip("this MLX build has NCCL")
    with pytest.raises(DistributedBackendError) as raised:
        init_group("nccl")
    assert str(raised.value).startswith("distributed backend 'nccl' is not available")


def test_single_process_group_has_one_rank(no_launcher):
    group = init_single_process_group()
    assert (group.size(), group.rank()) == (1, 0)


def test_single_process_group_rejected_under_launcher(no_launcher, monkeypatch):
    monkeypatch.setenv("MLX_RANK", "1")
    with pytest.raises(DistributedBackendError) as raised:
        init_single_process_group()
    assert str(raised.value).startswith("-n 1 trains in this process, but a launcher")
