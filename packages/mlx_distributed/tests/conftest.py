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
