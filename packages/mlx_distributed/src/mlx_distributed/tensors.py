"""Convert MLX arrays to and from the protocol's raw-bytes `Tensor` message."""

import mlx.core as mx
import numpy as np

from mlx_distributed._proto import pipeline_pb2

# Wire name -> (MLX dtype, numpy dtype of the same width used to read bytes).
# numpy has no bfloat16, so bfloat16 bytes are read as uint16 and viewed back.
WIRE_DTYPES: dict[str, tuple[mx.Dtype, type]] = {
    "bfloat16": (mx.bfloat16, np.uint16),
    "float16": (mx.float16, np.float16),
    "float32": (mx.float32, np.float32),
}
DTYPE_NAMES = {mlx_dtype: name for name, (mlx_dtype, _) in WIRE_DTYPES.items()}


def dtype_name(dtype: mx.Dtype) -> str:
    """Return the wire name of an MLX floating dtype, or raise ValueError."""
    try:
        return DTYPE_NAMES[dtype]
    except KeyError:
        raise ValueError(
            f"unsupported tensor dtype {dtype}; expected one of "
            f"{', '.join(WIRE_DTYPES)}"
        ) from None


def parse_dtype(name: str) -> mx.Dtype:
    """Return the MLX dtype for a wire name, or raise ValueError."""
    try:
        return WIRE_DTYPES[name][0]
    except KeyError:
        raise ValueError(
            f"unsupported tensor dtype {name!r}; expected one of "
            f"{', '.join(WIRE_DTYPES)}"
        ) from None


def to_message(array: mx.array) -> pipeline_pb2.Tensor:
    """Pack an array's bytes, unconverted, into a `Tensor` message."""
    name = dtype_name(array.dtype)
    # memoryview forces evaluation and exposes the row-major bytes as they are.
    data = bytes(memoryview(array))
    return pipeline_pb2.Tensor(dtype=name, shape=list(array.shape), data=data)


def from_message(message: pipeline_pb2.Tensor) -> mx.array:
    """Rebuild an array from a `Tensor` message; raise ValueError if inconsistent."""
    mlx_dtype = parse_dtype(message.dtype)
    numpy_dtype = WIRE_DTYPES[message.dtype][1]
    shape = tuple(int(size) for size in message.shape)
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(numpy_dtype).itemsize
    if len(message.data) != expected:
        raise ValueError(
            f"tensor of shape {list(shape)} and dtype {message.dtype} needs "
            f"{expected} bytes, found {len(message.data)}"
        )
    flat = np.frombuffer(message.data, dtype=numpy_dtype).reshape(shape)
    array = mx.array(flat)
    if mlx_dtype == mx.bfloat16:
        array = array.view(mx.bfloat16)
        # Evaluated here: a lazy view is tied to this thread's MLX stream.
        mx.eval(array)
    return array
