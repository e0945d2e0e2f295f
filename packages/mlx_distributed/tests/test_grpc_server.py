import grpc
import mlx.core as mx
import pytest
from mlx_distributed._proto import pipeline_pb2
from mlx_distributed.node_connection import NodeConnection, NodeRequestError
from mlx_distributed.tensors import to_message


def _load(connection, model, start, end, dtype=""):
    request = pipeline_pb2.LoadShardRequest(
        model=str(model), layer_start=start, layer_end=end, dtype=dtype
    )
    return connection.call("LoadShard", request, 60)


def _forward(connection, **fields):
    fields.setdefault("batch", 1)
    return connection.call("Forward", pipeline_pb2.ForwardRequest(**fields), 30)


def test_health_reports_empty_node(node_servers):
    (_, address) = node_servers(1)[0]
    reply = NodeConnection(address).health(5)
    assert reply.status == "empty"
    assert reply.protocol == "mlx_distributed.pipeline.v1"


def test_capabilities_report_device_and_memory(node_servers):
    (_, address) = node_servers(1, max_sessions=7)[0]
    reply = NodeConnection(address).call(
        "Capabilities", pipeline_pb2.CapabilitiesRequest(), 5
    )
    assert reply.mlx_version == mx.__version__
    assert reply.device
    assert reply.memory_bytes > 0
    assert reply.max_sessions == 7


def test_load_shard_reports_range(node_servers, tiny_model):
    (_, address) = node_servers(1)[0]
    connection = NodeConnection(address)
    reply = _load(connection, tiny_model, 1, 3)
    assert reply.shard.layer_start == 1
    assert reply.shard.layer_end == 3
    assert reply.shard.num_layers == 4
    assert not reply.shard.is_first
    assert not reply.shard.is_last
    health = connection.health(5)
    assert health.status == "ok"
    assert health.shard.layer_end == 3


def test_load_shard_rejects_range_past_model(node_servers, tiny_model):
    (_, address) = node_servers(1)[0]
    with pytest.raises(NodeRequestError) as error:
        _load(NodeConnection(address), tiny_model, 2, 9)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details == (
        "layer range [2, 9) is invalid for a model with 4 layers"
    )


def test_forward_without_shard_fails_precondition(node_servers):
    (_, address) = node_servers(1)[0]
    with pytest.raises(NodeRequestError) as error:
        _forward(NodeConnection(address), session_id="s", token_ids=[1], length=1)
    assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.value.details == "no shard is loaded on this node; call LoadShard"


def test_first_shard_returns_hidden_for_new_positions_only(node_servers, tiny_model):
    (_, address) = node_servers(1)[0]
    connection = NodeConnection(address)
    _load(connection, tiny_model, 0, 2)
    reply = _forward(connection, session_id="s", token_ids=[5, 6, 7], length=3)
    assert list(reply.hidden.shape) == [1, 3, 64]
    reply = _forward(connection, session_id="s", token_ids=[8], length=1, position=3)
    assert list(reply.hidden.shape) == [1, 1, 64]
    assert reply.hidden.dtype == "float32"


def test_bfloat16_shard_sends_bfloat16_bytes(node_servers, tiny_model_untied):
    (_, address) = node_servers(1)[0]
    connection = NodeConnection(address)
    _load(connection, tiny_model_untied, 0, 1)
    reply = _forward(connection, session_id="s", token_ids=[5, 6], length=2)
    assert reply.hidden.dtype == "bfloat16"
    assert len(reply.hidden.data) == 2 * 64 * 2


def test_dtype_override_casts_shard(node_servers, tiny_model):
    (_, address) = node_servers(1)[0]
    connection = NodeConnection(address)
    reply = _load(connection, tiny_model, 0, 2, dtype="float16")
    assert reply.shard.dtype == "float16"


def test_hidden_with_wrong_dtype_is_rejected(node_servers, tiny_model):
    (_, address) = node_servers(1)[0]
    connection = NodeConnection(address)
    _load(connection, tiny_model, 2, 4)
    hidden = to_message(mx.zeros((1, 1, 64), dtype=mx.float16))
    with pytest.raises(NodeRequestError) as error:
        _forward(connection, session_id="s", hidden=hidden, length=1)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details == (
        "hidden has dtype mlx.core.float16, the shard computes in mlx.core.float32"
    )


def test_hidden_with_wrong_shape_is_rejected(node_servers, tiny_model):
    (_, address) = node_servers(1)[0]
    connection = NodeConnection(address)
    _load(connection, tiny_model, 2, 4)
    hidden = to_message(mx.zeros((1, 2, 64)))
    with pytest.raises(NodeRequestError) as error:
        _forward(connection, session_id="s", hidden=hidden, length=1)
    assert error.value.details == "hidden has shape [1, 2, 64], expected [1, 1, 64]"


def test_stale_position_is_rejected_and_ends_nothing(node_servers, tiny_model):
    (node, address) = node_servers(1)[0]
    connection = NodeConnection(address)
    _load(connection, tiny_model, 0, 4)
    _forward(connection, session_id="s", token_ids=[5, 6], length=2)
    with pytest.raises(NodeRequestError) as error:
        _forward(connection, session_id="s", token_ids=[7], length=1, position=5)
    assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.value.details == (
        "session s is at position 2, but the request starts at 5"
    )


def test_new_prompt_cannot_reuse_open_session(node_servers, tiny_model):
    (_, address) = node_servers(1)[0]
    connection = NodeConnection(address)
    _load(connection, tiny_model, 0, 4)
    _forward(connection, session_id="s", token_ids=[5, 6], length=2)
    with pytest.raises(NodeRequestError, match="session s already exists"):
        _forward(connection, session_id="s", token_ids=[9], length=1)


def test_last_shard_samples_one_token_per_row(node_servers, tiny_model):
    (_, address) = node_servers(1)[0]
    connection = NodeConnection(address)
    _load(connection, tiny_model, 0, 4)
    reply = _forward(
        connection,
        session_id="s",
        token_ids=[5, 6, 7, 8],
        batch=2,
        length=2,
        sample=True,
    )
    assert len(reply.token_ids) == 2
    assert len(reply.logprobs) == 2
    assert all(logprob <= 0 for logprob in reply.logprobs)


def test_end_session_frees_cache(node_servers, tiny_model):
    (node, address) = node_servers(1)[0]
    connection = NodeConnection(address)
    _load(connection, tiny_model, 0, 4)
    _forward(connection, session_id="s", token_ids=[5], length=1)
    assert len(node.sessions) == 1
    reply = connection.call(
        "EndSession", pipeline_pb2.EndSessionRequest(session_id="s"), 5
    )
    assert reply.existed
    assert len(node.sessions) == 0


def test_failed_forward_frees_session(node_servers, tiny_model):
    (node, address) = node_servers(1)[0]
    connection = NodeConnection(address)
    _load(connection, tiny_model, 0, 4)
    _forward(connection, session_id="s", token_ids=[5], length=1)
    with pytest.raises(NodeRequestError, match="keep_rows"):
        _forward(
            connection,
            session_id="s",
            token_ids=[5],
            length=1,
            position=1,
            keep_rows=[3],
        )
    assert len(node.sessions) == 0


def test_session_limit_returns_resource_exhausted(node_servers, tiny_model):
    (_, address) = node_servers(1, max_sessions=1)[0]
    connection = NodeConnection(address)
    _load(connection, tiny_model, 0, 4)
    _forward(connection, session_id="a", token_ids=[5], length=1)
    with pytest.raises(NodeRequestError) as error:
        _forward(connection, session_id="b", token_ids=[5], length=1)
    assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_loading_new_shard_ends_open_sessions(node_servers, tiny_model):
    (node, address) = node_servers(1)[0]
    connection = NodeConnection(address)
    _load(connection, tiny_model, 0, 4)
    _forward(connection, session_id="a", token_ids=[5], length=1)
    _load(connection, tiny_model, 0, 2)
    assert len(node.sessions) == 0
