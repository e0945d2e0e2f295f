import mlx.core as mx
import pytest
from mlx_distributed._proto import pipeline_pb2
from mlx_distributed.tensors import from_message, to_message


@pytest.mark.parametrize(
    ("dtype", "itemsize"), [(mx.bfloat16, 2), (mx.float16, 2), (mx.float32, 4)]
)
def test_round_trip_keeps_dtype_and_bytes(dtype, itemsize):
    array = mx.random.normal((2, 3, 8)).astype(dtype)
    message = to_message(array)
    assert message.dtype == str(dtype).split(".")[-1]
    assert len(message.data) == 2 * 3 * 8 * itemsize
    restored = from_message(message)
    assert restored.dtype == dtype
    assert restored.shape == array.shape
    assert mx.array_equal(restored, array).item()


def test_bfloat16_travels_without_widening():
    array = mx.array([1.0, -2.5, 3.0e-3], dtype=mx.bfloat16)
    message = to_message(array)
    assert message.data == bytes(memoryview(array))
    assert len(message.data) == 6


def test_wrong_byte_count_is_rejected():
    message = pipeline_pb2.Tensor(dtype="float32", shape=[2, 2], data=b"\x00" * 12)
    with pytest.raises(ValueError) as error:
        from_message(message)
    assert str(error.value) == (
        "tensor of shape [2, 2] and dtype float32 needs 16 bytes, found 12"
    )


def test_unknown_dtype_is_rejected():
    message = pipeline_pb2.Tensor(dtype="int8", shape=[1], data=b"\x00")
    with pytest.raises(ValueError, match="unsupported tensor dtype 'int8'"):
        from_message(message)
