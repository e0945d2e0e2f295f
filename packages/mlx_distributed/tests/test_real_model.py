"""Greedy equality on the embedded SmolLM2-135M-Instruct model (30 layers)."""

import pytest
from mlx_distributed import load_model
from mlx_distributed.distributed_config import ClusterConfig, NodeConfig
from mlx_distributed.grpc_client import DistributedInferenceClient
from mlx_lm import generate as mlx_generate

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def reference():
    model, tokenizer = load_model(None)
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True)
    return prompt, mlx_generate(model, tokenizer, prompt, max_tokens=16)


@pytest.mark.parametrize("shards", [2, 3])
def test_default_model_matches_mlx_lm(node_servers, reference, shards):
    prompt, expected = reference
    addresses = [address for _, address in node_servers(shards)]
    config = ClusterConfig(
        model=None, nodes=tuple(NodeConfig(address) for address in addresses)
    )
    with DistributedInferenceClient(config) as client:
        assert client.encode_chat(MESSAGES) == prompt
        result = client.generate(prompt, max_tokens=16)
    assert result.text == expected
    assert "Paris" in result.text
