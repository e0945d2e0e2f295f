import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import uvicorn
from mlx_distributed.distributed_api import create_app
from mlx_distributed.distributed_config import ClusterConfig, NodeConfig
from mlx_distributed.grpc_client import DistributedInferenceClient
from mlx_distributed.local_nodes import start_local_node

PROMPT = "Once upon a time, far away"


class ServerThread:
    """uvicorn serving an app on a free loopback port, in this process."""

    def __init__(self, app):
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc_info):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def cluster_client(tiny_model):
    from mlx_distributed.grpc_server import serve
    from mlx_distributed.shard_node import ShardNode

    servers = [serve(ShardNode(), "127.0.0.1", 0) for _ in range(2)]
    config = ClusterConfig(
        model=str(tiny_model),
        nodes=tuple(NodeConfig(f"127.0.0.1:{port}") for _, port in servers),
    )
    client = DistributedInferenceClient(config)
    yield client
    client.close()
    for server, _ in servers:
        server.stop(grace=None)


@pytest.fixture(scope="module")
def api(cluster_client):
    with ServerThread(create_app(client=cluster_client)) as base_url:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            yield http


def _events(response: httpx.Response) -> list:
    events = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_health_is_ok(api):
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert len(response.json()["nodes"]) == 2


def test_cluster_lists_nodes_and_shards(api, tiny_model):
    body = api.get("/v1/cluster").json()
    assert body["model"] == str(tiny_model)
    assert [node["layers"] for node in body["nodes"]] == [[0, 2], [2, 4]]
    assert all(node["healthy"] for node in body["nodes"])


def test_models_lists_served_model(api, tiny_model):
    body = api.get("/v1/models").json()
    assert [model["id"] for model in body["data"]] == [str(tiny_model)]


def test_completion_matches_client(api, cluster_client):
    expected = cluster_client.generate(PROMPT, max_tokens=10)
    response = api.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 10})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == expected.text
    assert body["choices"][0]["finish_reason"] == expected.finish_reason
    assert body["usage"]["completion_tokens"] == len(expected.token_ids)


def test_completion_accepts_token_ids(api, cluster_client):
    ids = cluster_client.encode(PROMPT)
    by_text = api.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 6})
    by_ids = api.post("/v1/completions", json={"prompt": ids, "max_tokens": 6})
    assert by_ids.json()["choices"][0]["text"] == by_text.json()["choices"][0]["text"]


def test_chat_completion_uses_chat_template(api, cluster_client):
    messages = [{"role": "user", "content": "hello"}]
    expected = cluster_client.generate(cluster_client.encode_chat(messages), 10)
    response = api.post(
        "/v1/chat/completions", json={"messages": messages, "max_tokens": 10}
    )
    assert response.status_code == 200
    message = response.json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": expected.text}


def test_chat_stream_sends_events_per_token(api, cluster_client):
    messages = [{"role": "user", "content": "tell me a story"}]
    expected = cluster_client.generate(cluster_client.encode_chat(messages), 12)
    response = api.post(
        "/v1/chat/completions",
        json={"messages": messages, "max_tokens": 12, "stream": True},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(chunk["choices"][0]["delta"]["content"] for chunk in chunks)
    assert text == expected.text
    # One event per token with text, plus the closing event.
    assert len(chunks) >= len(expected.token_ids)
    assert chunks[-1]["choices"][0]["finish_reason"] == expected.finish_reason


def test_completion_stream_matches_plain(api):
    plain = api.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 8})
    streamed = api.post(
        "/v1/completions", json={"prompt": PROMPT, "max_tokens": 8, "stream": True}
    )
    chunks = _events(streamed)[:-1]
    text = "".join(chunk["choices"][0]["text"] for chunk in chunks)
    assert text == plain.json()["choices"][0]["text"]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/v1/completions",
            {"prompt": "hi", "max_tokens": 0},
            "max_tokens: Input should be greater than or equal to 1",
        ),
        ("/v1/completions", {"max_tokens": 4}, "prompt: Field required"),
        (
            "/v1/completions",
            {"prompt": "hi", "top_p": 0},
            "top_p: Input should be greater than 0",
        ),
        (
            "/v1/completions",
            {"prompt": ""},
            "prompt: Value error, prompt must not be empty",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "robot", "content": "x"}]},
            "messages.0.role: Input should be 'system', 'user' or 'assistant'",
        ),
    ],
)
def test_bad_request_names_field(api, path, body, message):
    response = api.post(path, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message


def test_out_of_vocabulary_token_is_rejected(api):
    response = api.post("/v1/completions", json={"prompt": [1, 100000]})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "prompt token ids must be in [0, 99), found [100000]"
    )


def test_failed_start_reports_503(tmp_path):
    config = ClusterConfig(model=str(tmp_path / "missing"), local_nodes=1)
    with ServerThread(create_app(config)) as base_url:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            health = httpx.get(f"{base_url}/health")
            if health.json()["status"] != "starting":
                break
            time.sleep(0.05)
        assert health.status_code == 503
        assert health.json()["status"] == "failed"
        response = httpx.post(f"{base_url}/v1/completions", json={"prompt": "x"})
        assert response.status_code == 503
        assert response.json()["error"]["message"].startswith("cluster failed to start")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_command_survives_node_restart(tmp_path, tiny_model):
    nodes = [start_local_node(log_dir=tmp_path) for _ in range(2)]
    config_path = tmp_path / "cluster.yaml"
    config_path.write_text(
        f"model: {tiny_model}\nhealth_interval_s: 0.2\nnodes:\n"
        + "".join(f"  - address: {node.address}\n" for node in nodes)
    )
    port = _free_port()
    env = {**os.environ, "MLX_DIST_PORT": str(port)}
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlx_distributed.distributed_api",
            "--config",
            str(config_path),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    base_url = f"http://127.0.0.1:{port}"
    body = {"prompt": PROMPT, "max_tokens": 6}
    try:
        _wait_for_health(base_url, 200)
        first = httpx.post(f"{base_url}/v1/completions", json=body, timeout=30)
        assert first.status_code == 200

        victim = nodes[0]
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        down = httpx.post(f"{base_url}/v1/completions", json=body, timeout=30)
        assert down.status_code == 503
        assert down.json()["error"]["message"].startswith(
            f"node {victim.address} is unavailable"
        )

        nodes[0] = start_local_node(port=victim.port, log_dir=tmp_path)
        _wait_for_health(base_url, 200)
        again = httpx.post(f"{base_url}/v1/completions", json=body, timeout=30)
        assert again.status_code == 200
        assert again.json()["choices"] == first.json()["choices"]
    finally:
        serve.terminate()
        serve.wait(timeout=10)
        for node in nodes:
            node.stop()


def _wait_for_health(base_url: str, status: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == status:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base_url}/health did not return {status}")
