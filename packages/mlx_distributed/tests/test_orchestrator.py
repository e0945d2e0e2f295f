import pytest
from mlx_distributed.distributed_config import ClusterConfig, NodeConfig
from mlx_distributed.orchestrator import DistributedInferenceOrchestrator
from mlx_distributed.planner import PlanError


def _config(addresses, **fields):
    layers = fields.pop("layers", None)
    nodes = tuple(
        NodeConfig(address, layers[index] if layers else None)
        for index, address in enumerate(addresses)
    )
    return ClusterConfig(nodes=nodes, **fields)


def test_even_split_loads_every_node(node_servers, tiny_model):
    servers = node_servers(3)
    config = _config([address for _, address in servers], model=str(tiny_model))
    with DistributedInferenceOrchestrator(config) as orchestrator:
        described = orchestrator.describe()
    assert [node.shard.info["layer_start"] for node, _ in servers] == [0, 2, 3]
    assert [node["layers"] for node in described["nodes"]] == [[0, 2], [2, 3], [3, 4]]
    assert described["healthy"]
    assert described["num_layers"] == 4


def test_explicit_split_uses_given_ranges(node_servers, tiny_model):
    servers = node_servers(2)
    config = _config(
        [address for _, address in servers],
        model=str(tiny_model),
        split="explicit",
        layers=[(0, 1), (1, 4)],
    )
    with DistributedInferenceOrchestrator(config):
        ranges = [
            (node.shard.spec.layer_start, node.shard.spec.layer_end)
            for node, _ in servers
        ]
    assert ranges == [(0, 1), (1, 4)]


def test_memory_split_asks_nodes_for_capabilities(node_servers, tiny_model):
    servers = node_servers(2)
    config = _config(
        [address for _, address in servers], model=str(tiny_model), split="memory"
    )
    with DistributedInferenceOrchestrator(config) as orchestrator:
        layers = [node["layers"] for node in orchestrator.describe()["nodes"]]
    # Both nodes run in this process and report the same free memory.
    assert layers == [[0, 2], [2, 4]]


def test_explicit_ranges_must_cover_model(node_servers, tiny_model):
    servers = node_servers(2)
    config = _config(
        [address for _, address in servers],
        model=str(tiny_model),
        split="explicit",
        layers=[(0, 1), (1, 3)],
    )
    orchestrator = DistributedInferenceOrchestrator(config)
    with pytest.raises(PlanError) as error:
        orchestrator.start()
    orchestrator.close()
    assert str(error.value) == (
        "explicit layer ranges end at 3, but the model has 4 layers"
    )


def test_local_nodes_are_started_and_stopped(tiny_model):
    config = ClusterConfig(model=str(tiny_model), local_nodes=2)
    orchestrator = DistributedInferenceOrchestrator(config)
    orchestrator.start()
    processes = [local.process for local in orchestrator.local_nodes]
    try:
        described = orchestrator.describe()
        assert all(node["local"] for node in described["nodes"])
        assert all(node["healthy"] for node in described["nodes"])
        assert all(process.poll() is None for process in processes)
    finally:
        orchestrator.close()
    assert all(process.poll() is not None for process in processes)
