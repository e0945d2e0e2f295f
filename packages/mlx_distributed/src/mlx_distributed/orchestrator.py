"""Plan shards from node capabilities, load them, and keep them loaded."""

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlx_distributed._proto import pipeline_pb2
from mlx_distributed.distributed_config import (
    ClusterConfig,
    default_cluster_config,
    load_cluster_config,
)
from mlx_distributed.local_nodes import LocalNode, start_local_node
from mlx_distributed.model_source import resolve_model_folder
from mlx_distributed.node_connection import (
    NodeConnection,
    NodeRequestError,
    NodeUnavailableError,
)
from mlx_distributed.planner import check_explicit, split_by_weight, split_even

logger = logging.getLogger(__name__)

# Generous: the first load of the default model imports it from GGUF.
LOAD_TIMEOUT_S = 600.0
HEALTH_TIMEOUT_S = 2.0


def read_num_layers(model: str | None) -> int:
    """Read the layer count from a model's config.json."""
    config_path = resolve_model_folder(model) / "config.json"
    config = json.loads(config_path.read_text())
    try:
        return int(config["num_hidden_layers"])
    except KeyError:
        raise ValueError(f"{config_path}: missing key 'num_hidden_layers'") from None


class DistributedInferenceOrchestrator:
    """Runs a cluster: starts local nodes if asked, plans and loads shards.

    A background monitor checks every node each `health_interval_s`. A node
    that comes back without its shard (for example after a restart) gets the
    shard loaded again, so serving resumes without restarting the caller.
    """

    def __init__(self, config: ClusterConfig | str | Path | None = None):
        if config is None:
            config = default_cluster_config()
        elif not isinstance(config, ClusterConfig):
            config = load_cluster_config(config)
        self.config = config
        self.local_nodes: list[LocalNode] = []
        self.nodes: list[NodeConnection] = []
        self.num_layers = 0
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None

    def start(self) -> None:
        """Start local nodes if configured, load every shard, start monitoring."""
        self.num_layers = read_num_layers(self.config.model)
        addresses = [node.address for node in self.config.nodes]
        if self.config.local_nodes:
            for _ in range(self.config.local_nodes):
                self.local_nodes.append(start_local_node())
            addresses = [node.address for node in self.local_nodes]
        self.nodes = [NodeConnection(address) for address in addresses]

        ranges = self.plan()
        for node, layers in zip(self.nodes, ranges, strict=True):
            node.layers = layers
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(self.load_shard, self.nodes))
        self._monitor = threading.Thread(
            target=self._monitor_forever, name="node-health", daemon=True
        )
        self._monitor.start()

    def plan(self) -> list[tuple[int, int]]:
        """Decide each node's layer range from the split mode."""
        split = self.config.split
        if split == "explicit":
            ranges = [node.layers for node in self.config.nodes]
            check_explicit(self.num_layers, ranges)
            return ranges
        if split == "memory":
            memory = [self.capabilities(node).memory_bytes for node in self.nodes]
            ranges = split_by_weight(self.num_layers, [float(m) for m in memory])
        else:
            ranges = split_even(self.num_layers, len(self.nodes))
        logger.info("planned %s split of %s layers: %s", split, self.num_layers, ranges)
        return ranges

    def capabilities(self, node: NodeConnection) -> pipeline_pb2.CapabilitiesReply:
        return node.call(
            "Capabilities", pipeline_pb2.CapabilitiesRequest(), HEALTH_TIMEOUT_S
        )

    def load_shard(self, node: NodeConnection) -> None:
        """Load a node's planned layer range on it."""
        start, end = node.layers
        request = pipeline_pb2.LoadShardRequest(
            model=self.config.model or "",
            layer_start=start,
            layer_end=end,
            dtype=self.config.dtype or "",
            adapter=self.config.adapter or "",
            dequantize=self.config.dequantize,
        )
        reply = node.call("LoadShard", request, LOAD_TIMEOUT_S)
        node.mark(True)
        logger.info(
            "node %s loaded layers [%s, %s) in %.2f s",
            node.address,
            start,
            end,
            reply.load_seconds,
        )

    def _has_planned_shard(self, reply: pipeline_pb2.HealthReply, node) -> bool:
        if reply.status != "ok":
            return False
        shard = reply.shard
        return (
            shard.model == (self.config.model or "")
            and (shard.layer_start, shard.layer_end) == node.layers
        )

    def check_node(self, node: NodeConnection) -> None:
        """Check one node once, reloading its shard if it lost it."""
        try:
            reply = node.health(HEALTH_TIMEOUT_S)
            if not self._has_planned_shard(reply, node):
                logger.warning(
                    "node %s is up without its shard; reloading", node.address
                )
                node.mark(False, "reloading its shard")
                self.load_shard(node)
                return
            if not node.healthy:
                logger.info("node %s is healthy again", node.address)
            node.mark(True)
        except (NodeUnavailableError, NodeRequestError) as error:
            if node.healthy:
                logger.warning("node %s is down: %s", node.address, error)
            node.mark(False, str(error))

    def _monitor_forever(self) -> None:
        while not self._stop.wait(self.config.health_interval_s):
            for node in self.nodes:
                if self._stop.is_set():
                    return
                self.check_node(node)

    def mark_down(self, address: str, reason: str) -> None:
        """Record a failure seen by a request, before the monitor notices."""
        for node in self.nodes:
            if node.address == address:
                node.mark(False, reason)

    def require_healthy(self) -> None:
        """Raise NodeUnavailableError for the first node known to be down."""
        for node in self.nodes:
            if not node.healthy:
                raise NodeUnavailableError(node.address, node.last_error)

    def describe(self) -> dict[str, Any]:
        """Return the cluster's nodes, shards and health as plain data."""
        return {
            "model": self.config.model or "default",
            "num_layers": self.num_layers,
            "split": self.config.split,
            "healthy": all(node.healthy for node in self.nodes),
            "nodes": [
                {
                    "address": node.address,
                    "layers": list(node.layers) if node.layers else None,
                    "healthy": node.healthy,
                    "error": None if node.healthy else node.last_error,
                    "last_checked": node.last_checked,
                    "local": any(
                        local.address == node.address for local in self.local_nodes
                    ),
                }
                for node in self.nodes
            ],
        }

    def close(self) -> None:
        """Stop monitoring, close channels and stop the nodes this object started."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        for node in self.nodes:
            node.close()
        for local in self.local_nodes:
            local.stop()
        self.local_nodes.clear()

    def __enter__(self) -> "DistributedInferenceOrchestrator":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
