"""Time training steps of the default model in float32 and in bfloat16 on CPU.

Shows why the GGUF import writes float32 weights: with OpenBLAS preloaded,
MLX's CPU backend sends float32 matmuls to BLAS, while bfloat16 and float16
matmuls run its own much slower kernels.

    uv run python bench/bench_train_dtype.py [--tokens 128] [--steps 3]

Each step is a forward and backward pass over all weights of one sequence of
`--tokens` random token ids (plus one warm-up step, not timed).
"""

from __future__ import annotations

import argparse
import time

from mlx_distributed.blas import ensure_fast_blas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=128, help="sequence length")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per dtype")
    parser.add_argument(
        "--dtypes", default="float32,bfloat16", help="comma-separated MLX dtypes"
    )
    args = parser.parse_args()
    print(ensure_fast_blas().summary())

    import mlx.core as mx
    import mlx.nn as nn
    from mlx_distributed import load_model

    model, _ = load_model(None)
    inputs = mx.random.randint(0, 49152, (1, args.tokens + 1), key=mx.random.key(0))

    def loss_fn(model: nn.Module) -> mx.array:
        logits = model(inputs[:, :-1])
        return nn.losses.cross_entropy(logits, inputs[:, 1:], reduction="mean")

    step = nn.value_and_grad(model, loss_fn)
    for name in args.dtypes.split(","):
        model.set_dtype(getattr(mx, name))
        # mx.eval waits for the step to finish, so the timing covers the work.
        mx.eval(step(model))
        start = time.perf_counter()
        for _ in range(args.steps):
            mx.eval(step(model))
        seconds = (time.perf_counter() - start) / args.steps
        print(
            f"{name:9s} {seconds:7.2f} s/step  "
            f"{args.tokens / seconds:8.1f} tokens/s (forward + backward)"
        )


if __name__ == "__main__":
    main()
