import os
import shutil
import subprocess
import sys

import pytest
from mlx_distributed.blas_libraries import (
    gfortran_link_folder_or_none,
    openblas_path_or_none,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="OpenBLAS is preloaded on Linux only"
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_DISTRIBUTED_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_openblas_library_is_found():
    library = openblas_path_or_none()
    assert library is not None
    assert library.name == "libopenblas.so.0"


def test_link_folder_points_into_mlx_cpu(cache):
    folder = gfortran_link_folder_or_none()
    assert folder is not None
    assert folder.parent == cache / "blas"
    target = os.path.realpath(folder / "libgfortran.so.5")
    assert os.path.basename(os.path.dirname(target)) == "mlx_cpu.libs"


def test_link_folder_is_reused(cache):
    first = gfortran_link_folder_or_none()
    inode = (first / "libgfortran.so.5").lstat().st_ino
    second = gfortran_link_folder_or_none()
    assert second == first
    assert (second / "libgfortran.so.5").lstat().st_ino == inode


def test_damaged_link_folder_is_repaired(cache):
    folder = gfortran_link_folder_or_none()
    expected = os.path.realpath(folder / "libgfortran.so.5")
    (folder / "libgfortran.so.5").unlink()
    (folder / "libgfortran.so.5").symlink_to("/nonexistent/libgfortran.so.5")
    assert gfortran_link_folder_or_none() == folder
    assert os.path.realpath(folder / "libgfortran.so.5") == expected
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


@pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd is not installed")
def test_openblas_dependencies_resolve_through_links(cache):
    folder = gfortran_link_folder_or_none()
    result = subprocess.run(
        ["ldd", str(openblas_path_or_none())],
        env=dict(os.environ, LD_LIBRARY_PATH=str(folder)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "not found" not in result.stdout
    assert f"libgfortran.so.5 => {folder}/libgfortran.so.5" in result.stdout
