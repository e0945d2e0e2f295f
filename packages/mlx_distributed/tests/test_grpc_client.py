import signal
import time

import mlx.core as mx
import pytest
from mlx_distributed.distributed_config import ClusterConfig, NodeConfig
from mlx_distributed.grpc_client import DistributedInferenceClient
from mlx_distributed.local_nodes import start_local_node
from mlx_distributed.node_connection import NodeUnavailableError
from mlx_lm import generate as mlx_generate
from mlx_lm import load as mlx_load
from mlx_lm.generate import generate_step

PROMPTS = ["hello there", "the quick brown fox", "x", "Once upon a time, far away"]


def _client(node_servers, model, count, **config_fields):
    addresses = [address for _, address in node_servers(count)]
    config = ClusterConfig(
        model=str(model),
        nodes=tuple(NodeConfig(address) for address in addresses),
        **config_fields,
    )
    return DistributedInferenceClient(config)


def _reference_tokens(model, tokenizer, prompt, max_tokens):
    ids = tokenizer.encode(prompt)
    tokens = []
    for token, _ in generate_step(mx.array(ids), model, max_tokens=max_tokens):
        if token in tokenizer.eos_token_ids:
            break
        tokens.append(token)
    return tokens


@pytest.mark.parametrize("shards", [2, 3])
def test_greedy_matches_mlx_lm_generate(node_servers, tiny_model, shards):
    model, tokenizer = mlx_load(str(tiny_model))
    with _client(node_servers, tiny_model, shards) as client:
        for prompt in PROMPTS:
            result = client.generate(prompt, max_tokens=16)
            expected = _reference_tokens(model, tokenizer, prompt, 16)
            assert result.token_ids == expected, prompt
            assert result.text == mlx_generate(model, tokenizer, prompt, max_tokens=16)


def test_greedy_matches_with_bfloat16_untied_head(node_servers, tiny_model_untied):
    model, tokenizer = mlx_load(str(tiny_model_untied))
    with _client(node_servers, tiny_model_untied, 3) as client:
        for prompt in PROMPTS:
            result = client.generate(prompt, max_tokens=16)
            assert result.token_ids == _reference_tokens(model, tokenizer, prompt, 16)


def test_long_prompt_is_processed_in_steps(node_servers, tiny_model):
    model, tokenizer = mlx_load(str(tiny_model))
    prompt = "abcdefghij" * 5
    with _client(node_servers, tiny_model, 2, prefill_step_size=7) as client:
        result = client.generate(prompt, max_tokens=8)
    # mlx-lm processes the same prompt in steps of 2048, in one piece here;
    # equal tokens show the step size does not change the result.
    assert result.token_ids == _reference_tokens(model, tokenizer, prompt, 8)


def test_interleaved_sessions_match_separate_runs(node_servers, tiny_model):
    with _client(node_servers, tiny_model, 2) as client:
        alone_a = client.generate(PROMPTS[1], max_tokens=12).token_ids
        alone_b = client.generate(PROMPTS[3], max_tokens=12).token_ids
        stream_a = client.stream(PROMPTS[1], max_tokens=12)
        stream_b = client.stream(PROMPTS[3], max_tokens=12)
        tokens_a, tokens_b = [], []
        done_a = done_b = False
        while not (done_a and done_b):
            if not done_a:
                chunk = next(stream_a)
                done_a = chunk.finish_reason is not None
                if chunk.token_id is not None:
                    tokens_a.append(chunk.token_id)
            if not done_b:
                chunk = next(stream_b)
                done_b = chunk.finish_reason is not None
                if chunk.token_id is not None:
                    tokens_b.append(chunk.token_id)
        stream_a.close()
        stream_b.close()
    assert tokens_a == alone_a
    assert tokens_b == alone_b


def test_stream_yields_each_token_as_produced(node_servers, tiny_model):
    with _client(node_servers, tiny_model, 2) as client:
        chunks = list(client.stream(PROMPTS[3], max_tokens=10))
        result = client.generate(PROMPTS[3], max_tokens=10)
    token_chunks = [chunk for chunk in chunks if chunk.token_id is not None]
    assert len(token_chunks) == len(result.token_ids)
    assert "".join(chunk.text for chunk in chunks) == result.text
    assert chunks[-1].finish_reason == result.finish_reason


def test_closing_stream_ends_sessions(node_servers, tiny_model):
    servers = node_servers(2)
    config = ClusterConfig(
        model=str(tiny_model), nodes=tuple(NodeConfig(a) for _, a in servers)
    )
    with DistributedInferenceClient(config) as client:
        stream = client.stream(PROMPTS[3], max_tokens=50)
        next(stream)
        assert [len(node.sessions) for node, _ in servers] == [1, 1]
        stream.close()
        assert [len(node.sessions) for node, _ in servers] == [0, 0]


def test_batch_matches_single_generations(node_servers, tiny_model):
    with _client(node_servers, tiny_model, 2) as client:
        singles = [client.generate(p, max_tokens=12).token_ids for p in PROMPTS]
        batch = client.generate_batch(PROMPTS, max_tokens=12)
    assert [result.token_ids for result in batch] == singles


def test_stop_string_truncates_text(node_servers, tiny_model):
    with _client(node_servers, tiny_model, 2) as client:
        full = client.generate(PROMPTS[3], max_tokens=12)
        stop = full.text[4:6]
        result = client.generate(PROMPTS[3], max_tokens=12, stop=[stop])
    assert result.text == full.text[: full.text.find(stop)]
    assert result.finish_reason == "stop"


def test_end_of_sequence_comes_from_tokenizer(node_servers, tmp_path, tiny_model):
    # Make the token the model emits third the end-of-sequence token.
    import shutil

    from tiny_models import write_tokenizer

    with _client(node_servers, tiny_model, 2) as client:
        tokens = client.generate(PROMPTS[3], max_tokens=8).token_ids
        eos_token = client.tokenizer.convert_ids_to_tokens(tokens[2])
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    write_tokenizer(folder, eos_token=eos_token)
    with _client(node_servers, folder, 2) as client:
        result = client.generate(PROMPTS[3], max_tokens=8)
    assert result.token_ids == tokens[:2]
    assert result.finish_reason == "stop"


def test_seeded_sampling_repeats(node_servers, tiny_model):
    with _client(node_servers, tiny_model, 2) as client:
        first = client.generate(PROMPTS[0], max_tokens=12, temperature=1.0, seed=3)
        second = client.generate(PROMPTS[0], max_tokens=12, temperature=1.0, seed=3)
        other = client.generate(PROMPTS[0], max_tokens=12, temperature=1.0, seed=4)
    assert first.token_ids == second.token_ids
    assert first.token_ids != other.token_ids


def test_invalid_arguments_are_rejected(node_servers, tiny_model):
    with _client(node_servers, tiny_model, 2) as client:
        with pytest.raises(ValueError, match="max_tokens must be >= 1, found 0"):
            client.generate("hi", max_tokens=0)
        with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\], found 2"):
            client.generate("hi", top_p=2)
        with pytest.raises(ValueError, match="prompt is empty"):
            client.generate("")
        with pytest.raises(ValueError, match=r"prompt token ids must be in \[0, 99\)"):
            client.generate([1, 500])


def test_killed_node_fails_fast_and_recovers(tmp_path, tiny_model):
    nodes = [start_local_node(log_dir=tmp_path) for _ in range(2)]
    config = ClusterConfig(
        model=str(tiny_model),
        nodes=tuple(NodeConfig(node.address) for node in nodes),
        health_interval_s=0.2,
    )
    client = DistributedInferenceClient(config)
    try:
        expected = client.generate(PROMPTS[3], max_tokens=30).token_ids
        victim = nodes[1]
        stream = client.stream(PROMPTS[3], max_tokens=1000)
        next(stream)

        # Kill the last node in the middle of the generation.
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        started = time.monotonic()
        with pytest.raises(NodeUnavailableError) as error:
            for _ in stream:
                pass
        assert time.monotonic() - started < 5
        assert error.value.address == victim.address
        assert str(error.value).startswith(f"node {victim.address} is unavailable")

        # Health reports it down, and new requests fail naming it.
        time.sleep(0.5)
        down = [n for n in client.health()["nodes"] if not n["healthy"]]
        assert [n["address"] for n in down] == [victim.address]
        with pytest.raises(NodeUnavailableError, match=victim.address):
            client.generate(PROMPTS[0], max_tokens=2)

        # Restart it on the same port: the monitor reloads its shard.
        nodes[1] = start_local_node(port=victim.port, log_dir=tmp_path)
        deadline = time.monotonic() + 30
        while not client.health()["healthy"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.health()["healthy"]
        assert client.generate(PROMPTS[3], max_tokens=30).token_ids == expected
    finally:
        client.close()
        for node in nodes:
            node.stop()


def test_dequantized_shards_match_dequantized_model(node_servers, tmp_path, tiny_model):
    from mlx_lm import convert
    from mlx_lm.utils import dequantize_model

    quantized = tmp_path / "quantized"
    convert(str(tiny_model), mlx_path=str(quantized), quantize=True, q_group_size=32)
    model, tokenizer = mlx_load(str(quantized))
    model = dequantize_model(model)
    with _client(node_servers, quantized, 2, dequantize=True) as client:
        shards = client.orchestrator.nodes
        for prompt in PROMPTS[:2]:
            result = client.generate(prompt, max_tokens=12)
            assert result.token_ids == _reference_tokens(model, tokenizer, prompt, 12)
        health = shards[0].health(5)
    assert health.shard.dequantized
    assert health.shard.dtype == "float32"
