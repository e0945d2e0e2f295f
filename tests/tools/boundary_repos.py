"""Helpers for the boundary-check tests: small real git monorepos with two teams."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

ALICE = ("Alice Inference", "alice@inference.example")
BOB = ("Bob Training", "bob@training.example")
MALLORY = ("Mallory Nobody", "mallory@elsewhere.example")

CONFIG = """\
[project]
name = "workspace"
version = "0.1.0"

[tool.check-boundaries]
frozen-teams = ["inference"]

[tool.check-boundaries.teams.inference]
github-team = "@acme/inference"
members = ["@alice"]
emails = ["alice@inference.example"]

[tool.check-boundaries.teams.training]
github-team = "@acme/training"
members = ["@bob"]
emails = ["bob@training.example"]

[tool.check-boundaries.imports]
provider = "packages/mlx_distributed"
consumer = "packages/mlx_distributed_training"
public-modules = ["mlx_distributed.api"]
"""

CODEOWNERS = """\
/packages/mlx_distributed/ @acme/inference
/packages/mlx_distributed_training/ @acme/training
/pyproject.toml @acme/inference @acme/training
/uv.lock @acme/inference @acme/training
/.github/ @acme/inference @acme/training
"""

PROVIDER_PYPROJECT = """\
[project]
name = "mlx-distributed"
version = "0.1.0"
dependencies = ["numpy>=1.26"]
"""

CONSUMER_PYPROJECT = """\
[project]
name = "mlx-distributed-training"
version = "0.1.0"
dependencies = ["mlx-distributed", "numpy>=1.26"]
"""

PROVIDER_INIT = """\
from mlx_distributed.model_loading import load_model

__all__ = ["load_model"]
"""

INFERENCE_FILE = "packages/mlx_distributed/src/mlx_distributed/model_loading.py"
TRAINING_FILE = (
    "packages/mlx_distributed_training/src/mlx_distributed_training/trainer.py"
)


class GitRepo:
    """A real git repository in a temporary folder, with helpers to commit."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def git(self, *args: str, author: tuple[str, str] = ALICE) -> str:
        name, email = author
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        completed = subprocess.run(
            ["git", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return completed.stdout

    def write(self, path: str, text: str) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text), encoding="utf-8")

    def symlink(self, path: str, target: str) -> None:
        link = self.root / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)

    def commit(self, message: str, author: tuple[str, str]) -> str:
        self.git("add", "-A", author=author)
        self.git("commit", "-q", "--allow-empty", "-m", message, author=author)
        return self.git("rev-parse", "HEAD").strip()

    def branch(self, name: str) -> None:
        self.git("checkout", "-q", "-b", name)


def make_monorepo(root: Path) -> GitRepo:
    """Create a committed two-package monorepo on `main`, then a `feature` branch."""
    root.mkdir(parents=True, exist_ok=True)
    repo = GitRepo(root)
    repo.git("init", "-q", "-b", "main")
    repo.write("pyproject.toml", CONFIG)
    repo.write("uv.lock", "version = 1\n")
    repo.write(".github/CODEOWNERS", CODEOWNERS)
    repo.write("packages/mlx_distributed/pyproject.toml", PROVIDER_PYPROJECT)
    repo.write(
        "packages/mlx_distributed/src/mlx_distributed/__init__.py", PROVIDER_INIT
    )
    repo.write(INFERENCE_FILE, "def load_model(path):\n    return path\n")
    repo.write("packages/mlx_distributed/src/mlx_distributed/api.py", "VERSION = 1\n")
    repo.write("packages/mlx_distributed/src/mlx_distributed/_cache.py", "SIZE = 1\n")
    repo.write("packages/mlx_distributed_training/pyproject.toml", CONSUMER_PYPROJECT)
    repo.write(
        "packages/mlx_distributed_training/src/mlx_distributed_training/__init__.py",
        "",
    )
    repo.write(TRAINING_FILE, "from mlx_distributed import load_model\n")
    repo.commit("Start the monorepo", ALICE)
    repo.branch("feature")
    return repo
