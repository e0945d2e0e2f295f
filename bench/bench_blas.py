"""Compare MLX and numpy float32 matmul speed in an `mlx-train`-like process.

The script calls `ensure_fast_blas()` first, as `mlx-train` does, so on Linux
it re-executes itself with OpenBLAS preloaded before measuring. It then times
an N x N float32 matmul in MLX (CPU) and in numpy in the same process and
prints GFLOP/s for both and their ratio; the target is MLX >= 0.8x numpy.

    uv run python bench/bench_blas.py [--size 1024] [--repeats 20] [--blas reference]

numpy ships its own OpenBLAS build. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE,
where set, change which kernels that build picks, so the script prints them
and numpy's kernel name next to the result.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import time
from collections.abc import Callable

from mlx_distributed.blas import BLAS_CHOICES, ensure_fast_blas

TARGET_RATIO = 0.8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="matrix side N")
    parser.add_argument(
        "--repeats", type=int, default=20, help="timed matmuls per library"
    )
    parser.add_argument(
        "--blas", choices=BLAS_CHOICES, default=None, help="BLAS for MLX to use"
    )
    args = parser.parse_args()
    status = ensure_fast_blas(args.blas)

    # Imported only after a possible re-exec, as in the real entry points.
    import mlx.core as mx
    import numpy as np

    size = args.size
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a_mlx, b_mlx = mx.array(a), mx.array(b)
    mx.eval(a_mlx, b_mlx)

    # mx.eval waits for the matmul to finish, so the timing covers the work.
    mlx_seconds = _median_seconds(lambda: mx.eval(a_mlx @ b_mlx), args.repeats)
    numpy_seconds = _median_seconds(lambda: a @ b, args.repeats)
    error = float(np.abs(np.array(a_mlx @ b_mlx) - a @ b).max())

    flop = 2 * size**3
    mlx_gflops = flop / mlx_seconds / 1e9
    numpy_gflops = flop / numpy_seconds / 1e9
    ratio = mlx_gflops / numpy_gflops
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"

    print(status.summary())
    print(f"numpy BLAS: {_numpy_blas()}")
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS"):
        print(f"{name}={os.environ.get(name, '(unset)')}")
    print(f"{size}x{size} float32 matmul, median of {args.repeats}:")
    print(f"  mlx   {mlx_gflops:8.1f} GFLOP/s")
    print(f"  numpy {numpy_gflops:8.1f} GFLOP/s")
    print(f"  ratio {ratio:8.2f}x ({verdict} the {TARGET_RATIO}x target)")
    print(f"  max abs difference mlx vs numpy: {error:.2e}")


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # Warm-up: first-call allocation and thread start-up.
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def _numpy_blas() -> str:
    """Return numpy's BLAS build and, where it can be read, its kernel name."""
    import numpy as np

    config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    text = f"{config.get('name')} {config.get('version')}"
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "scipy_openblas" in line}
    for path in paths:
        library = ctypes.CDLL(path)
        for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename"):
            if hasattr(library, symbol):
                function = getattr(library, symbol)
                function.restype = ctypes.c_char_p
                return f"{text}, core {function().decode()}"
    return text


if __name__ == "__main__":
    main()
