"""Time our import check next to import-linter on a synthetic 5,000-module monorepo.

Both tools get the same two rules:
- the provider package never imports the consumer package;
- the consumer imports the provider only through its public API, which here means
  never importing `synth_provider.internal` (where every private module lives).

import-linter runs with `allow_indirect_imports = True` because our check judges
direct imports only. One provider module and one consumer module break the rules,
so both tools must report exactly those two and exit non-zero. Each tool runs once,
as a command in a fresh process, so start-up time counts for both.

    uv run python bench/bench_boundaries.py [--modules 5000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKER = ROOT / "tools" / "check_boundaries.py"
FOLDERS_PER_PACKAGE = 25

ROOT_PYPROJECT = """\
[project]
name = "synthetic-workspace"
version = "0.1.0"

[tool.check-boundaries]
frozen-teams = ["provider"]

[tool.check-boundaries.teams.provider]
emails = ["provider@example.com"]

[tool.check-boundaries.teams.consumer]
emails = ["consumer@example.com"]

[tool.check-boundaries.imports]
provider = "packages/provider"
consumer = "packages/consumer"
public-modules = ["synth_provider.api"]
"""

IMPORTLINTER = """\
[importlinter]
root_packages =
    synth_provider
    synth_consumer

[importlinter:contract:provider-independent]
name = The provider does not import the consumer
type = forbidden
source_modules =
    synth_provider
forbidden_modules =
    synth_consumer
allow_indirect_imports = True

[importlinter:contract:consumer-public-api]
name = The consumer imports only the provider's public API
type = forbidden
source_modules =
    synth_consumer
forbidden_modules =
    synth_provider.internal
allow_indirect_imports = True
"""

MODULE_BODY = '''

class {name}Config:
    """Settings of {name}."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.items: list[int] = []

    def grow(self, count: int) -> int:
        for index in range(count):
            self.items.append(index * self.size)
        return len(self.items)


def build_{index}(values: list[int]) -> dict[str, int]:
    """Summarize `values`."""
    total = sum(values)
    return {{"total": total, "count": len(values), "max": max(values, default=0)}}
'''


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def module_source(
    name: str, index: int, siblings: list[str], extra_imports: list[str]
) -> str:
    lines = [f'"""Synthetic module {name}."""', "", "import os", "import typing", ""]
    lines += [f"import {sibling}" for sibling in siblings]
    lines += extra_imports
    return "\n".join(lines) + MODULE_BODY.format(name=f"M{index}", index=index)


def generate(root: Path, modules: int, public_share: float, seed: int) -> None:
    """Write the synthetic monorepo with `modules` modules split over two packages."""
    rng = random.Random(seed)
    per_package = modules // 2
    write(root / "pyproject.toml", ROOT_PYPROJECT)
    write(root / ".importlinter", IMPORTLINTER)
    write(root / ".github" / "CODEOWNERS", "/packages/provider/ provider@example.com\n")

    # The provider: an `api` facade over private modules in `internal`.
    provider = root / "packages" / "provider"
    write(
        provider / "pyproject.toml",
        '[project]\nname = "synth-provider"\nversion = "0.1.0"\n',
    )
    source = provider / "src" / "synth_provider"
    write(source / "__init__.py", '__all__ = ["build_model"]\n\nbuild_model = None\n')
    write(source / "api.py", "from synth_provider.internal.f00 import m0000\n")
    write(source / "internal" / "__init__.py", "")
    provider_names = _layout("synth_provider.internal", per_package - 3)
    for index, name in enumerate(provider_names):
        folder = name.rpartition(".")[0]
        write(source.parent.joinpath(*folder.split("."), "__init__.py"), "")
        siblings = rng.sample(provider_names[:index], min(index, 3))
        write(
            source.parent.joinpath(*name.split(".")).with_suffix(".py"),
            module_source(name, index, siblings, []),
        )

    # The consumer: some modules use the provider's public API.
    consumer = root / "packages" / "consumer"
    write(
        consumer / "pyproject.toml",
        '[project]\nname = "synth-consumer"\nversion = "0.1.0"\n'
        'dependencies = ["synth-provider"]\n',
    )
    source = consumer / "src" / "synth_consumer"
    write(source / "__init__.py", "")
    consumer_names = _layout("synth_consumer", per_package - 1)
    for index, name in enumerate(consumer_names):
        folder = name.rpartition(".")[0]
        write(source.parent.joinpath(*folder.split("."), "__init__.py"), "")
        siblings = rng.sample(consumer_names[:index], min(index, 3))
        extra = []
        if rng.random() < public_share:
            extra = [
                "from synth_provider import build_model",
                "import synth_provider.api",
            ]
        write(
            source.parent.joinpath(*name.split(".")).with_suffix(".py"),
            module_source(name, index, siblings, extra),
        )

    # One violation of each rule, which both tools must find.
    _append(root, "packages/provider/src", provider_names[-1], "import synth_consumer")
    _append(
        root,
        "packages/consumer/src",
        consumer_names[-1],
        f"import {provider_names[0]}",
    )


def _layout(package: str, count: int) -> list[str]:
    return [
        f"{package}.f{index % FOLDERS_PER_PACKAGE:02d}.m{index:04d}"
        for index in range(count)
    ]


def _append(root: Path, source_root: str, module: str, line: str) -> None:
    path = root.joinpath(source_root, *module.split(".")).with_suffix(".py")
    path.write_text(path.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Timing:
    """One timed command: wall seconds, CPU seconds (user + system), output."""

    wall: float
    cpu: float
    output: str
    status: int


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> Timing:
    """Run `command` once; measure wall time and the CPU time of the process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu, completed.stdout + completed.stderr, completed.returncode)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=5000, help="modules in all")
    parser.add_argument(
        "--public-share",
        type=float,
        default=0.3,
        help="share of consumer modules that import the provider (0-1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--keep", type=Path, help="write the monorepo here and keep it")
    arguments = parser.parse_args()

    lint_imports = shutil.which("lint-imports")
    if lint_imports is None:
        print(
            "lint-imports not found: run 'uv sync' (import-linter is a dev dependency)"
        )
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="bench-boundaries-"))
    root = arguments.keep or workdir / "monorepo"
    try:
        generate(root, arguments.modules, arguments.public_share, arguments.seed)
        files = sum(1 for _ in root.glob("packages/*/src/**/*.py"))
        env = {
            **os.environ,
            "GITHUB_ACTIONS": "",
            "PYTHONPATH": os.pathsep.join(
                str(root / "packages" / name / "src")
                for name in ("provider", "consumer")
            ),
        }

        ours = timed(
            [sys.executable, str(CHECKER), "imports", "--repo", str(root)], root, env
        )
        theirs = timed(
            [lint_imports, "--no-cache", "--config", str(root / ".importlinter")],
            root,
            env,
        )

        ours_found = sum(" BND2" in line for line in ours.output.splitlines())
        theirs_broken = theirs.output.count(" BROKEN")
        print(f"synthetic monorepo: {files} Python files in {root}")
        print(
            f"check-boundaries imports: {ours.wall:.2f} s wall, {ours.cpu:.2f} s CPU, "
            f"exit {ours.status}, {ours_found} import violations"
        )
        print(
            f"lint-imports --no-cache:  {theirs.wall:.2f} s wall, "
            f"{theirs.cpu:.2f} s CPU, exit {theirs.status}, "
            f"{theirs_broken} contracts broken"
        )
        if ours_found != 2 or theirs_broken != 2:
            print("the tools disagree with the two planted violations:")
            print(ours.output[-2000:])
            print(theirs.output[-2000:])
            return 1
        print(
            f"ratio (import-linter / ours): {theirs.wall / ours.wall:.1f}x wall, "
            f"{theirs.cpu / ours.cpu:.1f}x CPU"
        )
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
