"""The cluster file: which model, which nodes, and how layers are split.

A cluster file is YAML or JSON::

    model: ~/models/SmolLM2-135M-Instruct   # omit for the embedded default
    dtype: bfloat16                         # optional; stored dtype if omitted
    split: even                             # even | memory | explicit
    nodes:
      - address: 10.0.0.2:50051
      - address: 10.0.0.3:50051
        layers: [15, 30]                    # [start, end), explicit split only

or, to have the orchestrator start nodes on this machine, `local_nodes: 2`
in place of `nodes`.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SPLIT_MODES = ("even", "memory", "explicit")
DTYPES = ("bfloat16", "float16", "float32")


class ClusterConfigError(ValueError):
    """Every problem found in a cluster file, reported at once."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"invalid cluster config {source}:\n{lines}")


@dataclass(frozen=True)
class NodeConfig:
    """One node of the cluster."""

    address: str
    # Half-open [start, end) layer range; set only for the explicit split.
    layers: tuple[int, int] | None = None

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


@dataclass(frozen=True)
class ClusterConfig:
    """A validated cluster description."""

    model: str | None = None
    dtype: str | None = None
    adapter: str | None = None
    # Expand quantized weights to dense `dtype` (float32 if unset) on load.
    dequantize: bool = False
    split: str = "even"
    nodes: tuple[NodeConfig, ...] = ()
    # Nodes the orchestrator starts on 127.0.0.1 itself; 0 uses `nodes`.
    local_nodes: int = 0
    # Seconds between health checks of every node.
    health_interval_s: float = 1.0
    # Deadline of one forward call during decoding, in seconds.
    step_timeout_s: float = 5.0
    # Deadline of one forward call while processing a prompt, in seconds.
    prefill_timeout_s: float = 120.0
    # Prompt positions sent per forward call while processing a prompt.
    prefill_step_size: int = 2048

    @property
    def node_count(self) -> int:
        return self.local_nodes or len(self.nodes)


def default_cluster_config() -> ClusterConfig:
    """Return the config that splits the default model over two local nodes."""
    return ClusterConfig(model=None, local_nodes=2)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise ClusterConfigError(str(path), [f"cannot read file: {error}"]) from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise ClusterConfigError(
            str(path), [f"line {error.lineno}: invalid JSON: {error.msg}"]
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ClusterConfigError(
            str(path), [f"{where}invalid YAML: {problem}"]
        ) from None
    if not isinstance(data, dict):
        raise ClusterConfigError(
            str(path), [f"expected a mapping at the top level, found {data!r}"]
        )
    return data


def load_cluster_config(path: str | Path) -> ClusterConfig:
    """Read and validate a YAML or JSON cluster file."""
    path = Path(path)
    return parse_cluster_config(_read_mapping(path), source=str(path))


def _positive_number(data, key, default, problems, kind=float):
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{key}: expected a number, found {value!r}")
        return default
    if kind is int and not isinstance(value, int):
        problems.append(f"{key}: expected an integer, found {value!r}")
        return default
    if value <= 0:
        problems.append(f"{key}: must be > 0, found {value!r}")
        return default
    return kind(value)


def _parse_address(value: Any, where: str, problems: list[str]) -> str | None:
    if not isinstance(value, str) or ":" not in value:
        problems.append(f"{where}: expected 'host:port', found {value!r}")
        return None
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        problems.append(f"{where}: expected 'host:port', found {value!r}")
        return None
    return value


def _parse_layers(value: Any, where: str, problems: list[str]):
    valid = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(item, int) and not isinstance(item, bool) for item in value)
    )
    if not valid or not 0 <= value[0] < value[1]:
        problems.append(
            f"{where}: expected [start, end) with 0 <= start < end, found {value!r}"
        )
        return None
    return (value[0], value[1])


def _parse_nodes(data, split, problems) -> tuple[NodeConfig, ...]:
    raw_nodes = data.get("nodes", [])
    if not isinstance(raw_nodes, list):
        problems.append(f"nodes: expected a list, found {raw_nodes!r}")
        return ()
    nodes = []
    for index, raw in enumerate(raw_nodes):
        where = f"nodes[{index}]"
        if isinstance(raw, str):
            raw = {"address": raw}
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected a mapping, found {raw!r}")
            continue
        unknown = sorted(set(raw) - {"address", "layers"})
        if unknown:
            problems.append(f"{where}: unknown keys {unknown}")
        address = _parse_address(raw.get("address"), f"{where}.address", problems)
        layers = None
        if "layers" in raw:
            if split != "explicit":
                problems.append(
                    f"{where}.layers: only allowed with split: explicit, "
                    f"found split: {split}"
                )
            else:
                layers = _parse_layers(raw["layers"], f"{where}.layers", problems)
        elif split == "explicit":
            problems.append(f"{where}.layers: missing, required by split: explicit")
        if address is not None:
            nodes.append(NodeConfig(address=address, layers=layers))
    _check_explicit_ranges(nodes, split, problems)
    return tuple(nodes)


def _check_explicit_ranges(nodes, split, problems) -> None:
    if split != "explicit" or not nodes or any(n.layers is None for n in nodes):
        return
    expected_start = 0
    for index, node in enumerate(nodes):
        if node.layers[0] != expected_start:
            problems.append(
                f"nodes[{index}].layers: starts at {node.layers[0]}, expected "
                f"{expected_start} so ranges are contiguous from layer 0"
            )
        expected_start = node.layers[1]


def parse_cluster_config(data: dict[str, Any], source: str = "<dict>") -> ClusterConfig:
    """Validate a cluster mapping; raise ClusterConfigError naming every bad key."""
    problems: list[str] = []
    known = set(ClusterConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        problems.append(f"unknown keys {unknown}; expected some of {sorted(known)}")

    model = data.get("model")
    if model is not None and not isinstance(model, str):
        problems.append(f"model: expected a path or hub id, found {model!r}")
    dtype = data.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        problems.append(f"dtype: expected one of {list(DTYPES)}, found {dtype!r}")
    adapter = data.get("adapter")
    if adapter is not None and not isinstance(adapter, str):
        problems.append(f"adapter: expected a folder path, found {adapter!r}")
    dequantize = data.get("dequantize", False)
    if not isinstance(dequantize, bool):
        problems.append(f"dequantize: expected true or false, found {dequantize!r}")
        dequantize = False
    split = data.get("split", "even")
    if split not in SPLIT_MODES:
        problems.append(f"split: expected one of {list(SPLIT_MODES)}, found {split!r}")
        split = "even"

    local_nodes = data.get("local_nodes", 0)
    if isinstance(local_nodes, bool) or not isinstance(local_nodes, int):
        problems.append(f"local_nodes: expected an integer, found {local_nodes!r}")
        local_nodes = 0
    elif local_nodes < 0:
        problems.append(f"local_nodes: must be >= 0, found {local_nodes}")
        local_nodes = 0
    nodes = _parse_nodes(data, split, problems)
    if local_nodes and "nodes" in data:
        problems.append("nodes: not allowed together with local_nodes")
    if not local_nodes and not nodes and "nodes" not in data:
        problems.append("nodes: missing; list node addresses or set local_nodes")
    elif not local_nodes and not data.get("nodes"):
        problems.append("nodes: expected at least one node")
    if local_nodes and split == "explicit":
        problems.append("split: explicit needs nodes with layers, not local_nodes")

    defaults = ClusterConfig()
    config = ClusterConfig(
        model=model if isinstance(model, str) else None,
        dtype=dtype if dtype in DTYPES else None,
        adapter=adapter if isinstance(adapter, str) else None,
        dequantize=dequantize,
        split=split,
        nodes=nodes,
        local_nodes=local_nodes,
        health_interval_s=_positive_number(
            data, "health_interval_s", defaults.health_interval_s, problems
        ),
        step_timeout_s=_positive_number(
            data, "step_timeout_s", defaults.step_timeout_s, problems
        ),
        prefill_timeout_s=_positive_number(
            data, "prefill_timeout_s", defaults.prefill_timeout_s, problems
        ),
        prefill_step_size=_positive_number(
            data, "prefill_step_size", defaults.prefill_step_size, problems, kind=int
        ),
    )
    if problems:
        raise ClusterConfigError(source, problems)
    return config
