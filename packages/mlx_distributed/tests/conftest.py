import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import write_tiny_llama  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 4-layer float32 llama with tied embeddings."""
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_model_untied(tmp_path_factory) -> Path:
    """A 3-layer bfloat16 llama with a separate LM head."""
    return write_tiny_llama(
        tmp_path_factory.mktemp("tiny_untied") / "model",
        num_layers=3,
        tie_word_embeddings=False,
        dtype=__import__("mlx.core").core.bfloat16,
        seed=1,
    )


@pytest.fixture
def node_servers():
    """Start in-process nodes on free loopback ports; stop them afterwards."""
    from mlx_distributed.grpc_server import serve
    from mlx_distributed.shard_node import ShardNode

    started = []

    def start(count: int, **node_options):
        addresses = []
        for _ in range(count):
            node = ShardNode(**node_options)
            server, port = serve(node, "127.0.0.1", 0)
            started.append(server)
            addresses.append((node, f"127.0.0.1:{port}"))
        return addresses

    yield start
    for server in started:
        server.stop(grace=None)
