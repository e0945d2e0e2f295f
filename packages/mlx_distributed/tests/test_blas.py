import json
import os
import subprocess
import sys

import pytest
from mlx_distributed.blas import (
    BLAS_ENV_VAR,
    REEXEC_ENV_VAR,
    BlasUnavailableError,
    blas_environment,
    ensure_fast_blas,
    requested_blas,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="OpenBLAS is preloaded on Linux only"
)

# Prints the BLAS report, then checks MLX matmul and solve results against numpy.
_REPORT_SCRIPT = """
import json, os, sys
from mlx_distributed.blas import active_blas, ensure_fast_blas
if "--ensure" in sys.argv:
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else None
    status = ensure_fast_blas(num_threads=threads)
else:
    status = active_blas()
import numpy as np
import mlx.core as mx
rng = np.random.default_rng(0)
a = rng.standard_normal((300, 200), dtype=np.float32)
b = rng.standard_normal((200, 100), dtype=np.float32)
product = np.array(mx.array(a) @ mx.array(b))
square = rng.standard_normal((64, 64), dtype=np.float32)
square += 8 * np.eye(64, dtype=np.float32)
inverse = np.array(mx.linalg.inv(mx.array(square), stream=mx.cpu))
print(json.dumps({
    "summary": status.summary(),
    "optimized": status.optimized,
    "pid": os.getpid(),
    "matmul_error": float(np.abs(product - a @ b).max()),
    "inverse_error": float(np.abs(inverse - np.linalg.inv(square)).max()),
}))
"""


def run_report(environment: dict[str, str], *args: str) -> tuple[dict, str]:
    result = subprocess.run(
        [sys.executable, "-c", _REPORT_SCRIPT, *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0]), result.stderr


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_DISTRIBUTED_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(BLAS_ENV_VAR, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def not_preloaded():
    if "libopenblas" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("this pytest process was started with OpenBLAS preloaded")


@linux_only
def test_child_environment_uses_openblas(cache):
    report, _ = run_report(blas_environment())
    assert report["summary"].startswith("BLAS: OpenBLAS 0.")
    assert report["optimized"] is True
    assert report["matmul_error"] < 1e-3
    assert report["inverse_error"] < 1e-4


@linux_only
def test_ensure_fast_blas_reexecutes_with_openblas(cache):
    # The child inherits PYTEST_CURRENT_TEST, as programs that tests start do.
    assert "PYTEST_CURRENT_TEST" in os.environ
    report, stderr = run_report(dict(os.environ), "--ensure")
    assert report["summary"].startswith("BLAS: OpenBLAS 0.")
    assert report["matmul_error"] < 1e-3
    assert stderr == ""


@linux_only
def test_ensure_fast_blas_sets_thread_count(cache):
    report, _ = run_report(dict(os.environ), "--ensure", "1")
    assert report["summary"].endswith(", 1 thread)")


@linux_only
def test_preloaded_process_changes_thread_count(cache):
    report, _ = run_report(blas_environment(num_threads=2), "--ensure", "1")
    assert report["summary"].endswith(", 1 thread)")


@linux_only
def test_reference_setting_keeps_reference_blas(cache):
    environment = dict(os.environ, **{BLAS_ENV_VAR: "reference"})
    report, _ = run_report(environment, "--ensure")
    assert report["summary"] == (
        "BLAS: reference netlib BLAS (turned off by MLX_DISTRIBUTED_BLAS=reference)"
    )
    assert report["optimized"] is False
    assert report["matmul_error"] < 1e-3


@linux_only
def test_reference_setting_drops_inherited_preload(cache):
    environment = blas_environment()
    environment[BLAS_ENV_VAR] = "reference"
    report, _ = run_report(environment, "--ensure")
    assert report["optimized"] is False


@linux_only
def test_reference_environment_removes_openblas(cache):
    with_openblas = blas_environment()
    without = blas_environment(with_openblas, blas="reference")
    assert "libopenblas" not in without.get("LD_PRELOAD", "")
    assert without[BLAS_ENV_VAR] == "reference"
    report, _ = run_report(without)
    assert report["optimized"] is False


@linux_only
def test_environment_keeps_other_preloads(cache):
    base = {"LD_PRELOAD": "/opt/a.so /opt/b.so", "LD_LIBRARY_PATH": "/opt/lib"}
    environment = blas_environment(base, num_threads=1)
    preload = environment["LD_PRELOAD"].split(":")
    assert preload[0].endswith("libopenblas.so.0")
    assert preload[1:] == ["/opt/a.so", "/opt/b.so"]
    assert environment["LD_LIBRARY_PATH"].split(":")[-1] == "/opt/lib"
    assert environment["OPENBLAS_NUM_THREADS"] == "1"
    assert REEXEC_ENV_VAR not in environment


def _system_has_libgfortran() -> bool:
    try:
        listing = subprocess.run(
            ["ldconfig", "-p"], capture_output=True, text=True, timeout=30
        ).stdout
    except OSError:
        return True  # Unknown: assume it is there and skip.
    return "libgfortran.so.5 " in listing


@linux_only
@pytest.mark.skipif(
    _system_has_libgfortran(), reason="the system provides libgfortran.so.5"
)
def test_missing_gfortran_links_fall_back_with_warning(tmp_path):
    # A cache path that is a file: the gfortran links cannot be created, and
    # this machine has no system libgfortran.so.5 for OpenBLAS either.
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    environment = dict(os.environ, MLX_DISTRIBUTED_CACHE=str(blocked))
    environment.pop(BLAS_ENV_VAR, None)
    report, stderr = run_report(environment, "--ensure")
    assert report["optimized"] is False
    assert report["summary"].startswith(
        "BLAS: reference netlib BLAS (OpenBLAS unavailable: the test process failed:"
    )
    assert "libgfortran.so.5" in report["summary"]
    assert len(stderr.strip().splitlines()) == 1
    assert stderr.startswith("OpenBLAS unavailable (")


def test_invalid_blas_choice_is_rejected():
    with pytest.raises(ValueError) as error:
        requested_blas("mkl")
    assert str(error.value) == (
        "blas is 'mkl'; expected one of: auto, openblas, reference"
    )


def test_invalid_blas_env_var_is_rejected(monkeypatch):
    monkeypatch.setenv(BLAS_ENV_VAR, "fast")
    with pytest.raises(ValueError) as error:
        requested_blas()
    assert str(error.value) == (
        "MLX_DISTRIBUTED_BLAS is 'fast'; expected one of: auto, openblas, reference"
    )


@linux_only
def test_no_restart_inside_pytest(cache, caplog, not_preloaded):
    status = ensure_fast_blas()
    # Still running here proves no re-exec happened.
    assert status.optimized is False
    assert status.summary() == (
        "BLAS: reference netlib BLAS (OpenBLAS unavailable: not preloaded, and "
        "this process is running pytest)"
    )
    assert "OpenBLAS unavailable" in caplog.text


@linux_only
def test_explicit_openblas_raises_when_unavailable(cache, not_preloaded):
    with pytest.raises(BlasUnavailableError) as error:
        ensure_fast_blas("openblas")
    assert str(error.value) == (
        "OpenBLAS unavailable: not preloaded, and this process is running pytest"
    )


def test_default_choice_is_auto(monkeypatch):
    monkeypatch.delenv(BLAS_ENV_VAR, raising=False)
    assert requested_blas() == "auto"
