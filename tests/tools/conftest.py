"""Fixtures for the boundary-check tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TOOLS = HERE.parents[1] / "tools"
for folder in (TOOLS, HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from boundary_repos import GitRepo, make_monorepo  # noqa: E402


@pytest.fixture
def monorepo(tmp_path: Path) -> GitRepo:
    return make_monorepo(tmp_path / "repo")


@pytest.fixture
def run_check(capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    from boundaries.cli import main

    def run(repo: GitRepo | Path, *args: str) -> tuple[int, str, str]:
        root = repo.root if isinstance(repo, GitRepo) else repo
        status = main(["--repo", str(root), "--format", "text", *args])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run
