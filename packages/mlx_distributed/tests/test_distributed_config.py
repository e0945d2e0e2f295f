import json

import pytest
from mlx_distributed.distributed_config import (
    ClusterConfig,
    ClusterConfigError,
    NodeConfig,
    default_cluster_config,
    load_cluster_config,
)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_file_loads_nodes_and_split(tmp_path):
    path = _write(
        tmp_path,
        "cluster.yaml",
        "model: /models/tiny\n"
        "dtype: bfloat16\n"
        "split: explicit\n"
        "nodes:\n"
        "  - address: 10.0.0.2:50051\n"
        "    layers: [0, 10]\n"
        "  - address: 10.0.0.3:50051\n"
        "    layers: [10, 30]\n",
    )
    config = load_cluster_config(path)
    assert config.model == "/models/tiny"
    assert config.dtype == "bfloat16"
    assert config.split == "explicit"
    assert config.nodes == (
        NodeConfig("10.0.0.2:50051", (0, 10)),
        NodeConfig("10.0.0.3:50051", (10, 30)),
    )


def test_json_file_loads_local_nodes(tmp_path):
    path = _write(tmp_path, "cluster.json", json.dumps({"local_nodes": 3}))
    config = load_cluster_config(path)
    assert config.local_nodes == 3
    assert config.model is None
    assert config.node_count == 3


def test_default_config_is_two_local_nodes():
    assert default_cluster_config() == ClusterConfig(model=None, local_nodes=2)


def test_every_problem_is_reported_at_once(tmp_path):
    path = _write(
        tmp_path,
        "bad.yaml",
        "split: sideways\n"
        "dtype: int4\n"
        "step_timeout_s: -1\n"
        "nodes:\n"
        "  - address: nohost\n"
        "  - address: 10.0.0.3:99999\n",
    )
    with pytest.raises(ClusterConfigError) as error:
        load_cluster_config(path)
    assert error.value.problems == [
        "dtype: expected one of ['bfloat16', 'float16', 'float32'], found 'int4'",
        "split: expected one of ['even', 'memory', 'explicit'], found 'sideways'",
        "nodes[0].address: expected 'host:port', found 'nohost'",
        "nodes[1].address: expected 'host:port', found '10.0.0.3:99999'",
        "step_timeout_s: must be > 0, found -1",
    ]
    assert str(error.value).startswith(f"invalid cluster config {path}:\n")


def test_explicit_split_requires_layers(tmp_path):
    path = _write(tmp_path, "c.yaml", "split: explicit\nnodes:\n  - address: a:1\n")
    with pytest.raises(ClusterConfigError) as error:
        load_cluster_config(path)
    assert error.value.problems == [
        "nodes[0].layers: missing, required by split: explicit"
    ]


def test_explicit_ranges_must_be_contiguous(tmp_path):
    path = _write(
        tmp_path,
        "c.yaml",
        "split: explicit\nnodes:\n"
        "  - {address: 'a:1', layers: [0, 4]}\n"
        "  - {address: 'b:1', layers: [5, 8]}\n",
    )
    with pytest.raises(ClusterConfigError) as error:
        load_cluster_config(path)
    assert error.value.problems == [
        "nodes[1].layers: starts at 5, expected 4 so ranges are contiguous from layer 0"
    ]


def test_layers_without_explicit_split_are_rejected(tmp_path):
    path = _write(tmp_path, "c.yaml", "nodes:\n  - {address: 'a:1', layers: [0, 4]}\n")
    with pytest.raises(ClusterConfigError) as error:
        load_cluster_config(path)
    assert error.value.problems == [
        "nodes[0].layers: only allowed with split: explicit, found split: even"
    ]


def test_missing_nodes_is_rejected(tmp_path):
    path = _write(tmp_path, "c.yaml", "model: /m\n")
    with pytest.raises(ClusterConfigError) as error:
        load_cluster_config(path)
    assert error.value.problems == [
        "nodes: missing; list node addresses or set local_nodes"
    ]


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, "c.yaml", "local_nodes: 2\nnode: []\n")
    with pytest.raises(ClusterConfigError) as error:
        load_cluster_config(path)
    assert error.value.problems[0].startswith("unknown keys ['node']")


def test_yaml_syntax_error_names_line(tmp_path):
    path = _write(tmp_path, "c.yaml", "local_nodes: 2\nnodes: [a:1\n")
    with pytest.raises(ClusterConfigError) as error:
        load_cluster_config(path)
    assert error.value.problems[0].startswith("line 3: invalid YAML")


def test_json_syntax_error_names_line(tmp_path):
    path = _write(tmp_path, "c.json", '{\n  "local_nodes": 2,\n}\n')
    with pytest.raises(ClusterConfigError) as error:
        load_cluster_config(path)
    assert error.value.problems[0].startswith("line 3: invalid JSON")


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ClusterConfigError, match="cannot read file"):
        load_cluster_config(tmp_path / "absent.yaml")
