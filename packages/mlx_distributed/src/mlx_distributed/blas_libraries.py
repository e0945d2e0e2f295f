"""Locate OpenBLAS and make its libgfortran dependency resolvable.

`cmeel-openblas` ships `libopenblas.so.0`, which needs `libgfortran.so.5`.
A fresh Linux machine may lack that library, but the `mlx-cpu` wheel bundles
a copy under a hashed file name. `gfortran_link_folder_or_none()` makes a
folder of links under the names the dynamic loader looks for, to be put on
`LD_LIBRARY_PATH`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from mlx_distributed.user_cache import cache_root

logger = logging.getLogger(__name__)

OPENBLAS_PACKAGE = "cmeel-openblas"
_OPENBLAS_FILE = "cmeel.prefix/lib/libopenblas.so.0"
_MLX_CPU_PACKAGE = "mlx-cpu"


def openblas_path_or_none() -> Path | None:
    """Return the path of cmeel-openblas's libopenblas.so.0, or None."""
    try:
        located = distribution(OPENBLAS_PACKAGE).locate_file(_OPENBLAS_FILE)
    except PackageNotFoundError:
        return None
    path = Path(str(located))
    return path if path.is_file() else None


def is_mapped(library: Path) -> bool:
    """Return whether `library` is loaded into this process."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return os.path.realpath(library) in maps


def gfortran_link_folder_or_none() -> Path | None:
    """Return a folder where libgfortran.so.5 resolves to mlx-cpu's copy.

    The links keep the names the loader searches for: `libgfortran.so.5` for
    OpenBLAS, and the hashed libquadmath name that the gfortran copy needs.
    Returns None when mlx-cpu bundles no gfortran, leaving the lookup to the
    system libraries.
    """
    try:
        files = distribution(_MLX_CPU_PACKAGE).files or []
    except PackageNotFoundError:
        return None
    bundled = {Path(str(f.locate())) for f in files if f.parent.name == "mlx_cpu.libs"}
    gfortran = [p for p in bundled if p.name.startswith("libgfortran")]
    if not gfortran:
        return None
    links = {"libgfortran.so.5": gfortran[0]}
    links.update({p.name: p for p in bundled if p.name.startswith("libquadmath")})

    # One folder per gfortran copy, since each virtual environment has its own.
    digest = hashlib.sha256(str(gfortran[0].resolve()).encode()).hexdigest()[:12]
    folder = cache_root() / "blas" / f"gfortran-links-{digest}"
    if _links_match(folder, links):
        return folder
    # Build the links in a staging folder, then rename it into place, so a
    # concurrent process never finds a partial set.
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".links-", dir=folder.parent))
        for name, target in links.items():
            (staging / name).symlink_to(target.resolve())
    except OSError as error:
        logger.debug("Cannot create the gfortran links in %s: %s", folder, error)
        return None
    try:
        os.rename(staging, folder)
    except OSError:
        if not _links_match(folder, links):
            # A damaged folder, e.g. a link removed by hand: swap it out.
            _replace_folder(folder, staging)
        # Else another process renamed its identical folder into place first.
        shutil.rmtree(staging, ignore_errors=True)
    return folder if _links_match(folder, links) else None


def _replace_folder(folder: Path, replacement: Path) -> None:
    damaged = folder.with_name(f".{folder.name}.damaged-{os.getpid()}")
    try:
        os.rename(folder, damaged)
        os.rename(replacement, folder)
    except OSError as error:
        logger.debug("Cannot replace the gfortran links in %s: %s", folder, error)
    shutil.rmtree(damaged, ignore_errors=True)


def _links_match(folder: Path, links: dict[str, Path]) -> bool:
    return all(
        os.path.realpath(folder / name) == str(target.resolve())
        for name, target in links.items()
    )
