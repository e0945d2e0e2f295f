"""Command line: `check-boundaries [all|changes|imports] [options]`.

Exit status: 0 when clean, 1 when there are violations, 2 when the check cannot
run (usage, configuration, CODEOWNERS or git errors).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from . import changes, dependencies, imports, report
from .codeowners import compile_pattern
from .config import Config, load_config
from .errors import CheckError
from .report import Report, Violation

CHECKS = ("all", "changes", "imports")
_SKIPPED_WALK = {".git", ".venv", "node_modules", "__pycache__"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="check-boundaries",
        description=(
            "Check team boundaries: paths owned by a frozen team change only with "
            "that team, and the two packages import each other only as allowed."
        ),
    )
    parser.add_argument(
        "check",
        nargs="?",
        choices=CHECKS,
        default="all",
        help="which check to run: both (all, the default), the change check "
        "(changes) or the import check on the working tree (imports)",
    )
    parser.add_argument(
        "--repo",
        type=Path,
        help="repository root (default: the nearest folder upwards whose "
        "pyproject.toml has a [tool.check-boundaries] table)",
    )
    parser.add_argument(
        "--base",
        default="origin/main",
        help="the change is judged from the merge base of this ref and --head "
        "(default: origin/main)",
    )
    parser.add_argument("--head", default="HEAD", help="last commit of the change")
    parser.add_argument(
        "--team",
        help="team making the change; by default the teams of the commit authors "
        "in the range, mapped through their e-mail addresses",
    )
    parser.add_argument(
        "--format",
        choices=report.FORMATS,
        help="output format (default: github when GITHUB_ACTIONS=true, else text)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    output_format = arguments.format or (
        "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
    )
    try:
        result = run(arguments)
    except CheckError as error:
        stream = sys.stderr if output_format == "text" else sys.stdout
        print(report.render_error(str(error), output_format), file=stream)
        return 2
    print(report.render(result, output_format))
    return result.exit_code


def run(arguments: argparse.Namespace) -> Report:
    """Run the requested checks and return their report."""
    repo = (arguments.repo or find_repository(Path.cwd())).resolve()
    result = Report()
    files: list[str]
    if arguments.check in ("all", "changes"):
        change = changes.load_change_set(repo, arguments.base, arguments.head)
        config, codeowners = changes.load_rules_at(repo, change.base)
        result.violations += changes.check_changes(
            repo, change, config, codeowners, arguments.team
        )
        result.changed_paths = len(change.paths)
        result.commits = len(change.commits)
        result.base = change.base[:10]
        files = list(change.head_tree)
    else:
        config = read_working_config(repo)
        files = working_tree_files(repo)
    if arguments.check in ("all", "imports"):
        provider, consumer = imports.load_packages(repo, config.imports)
        api = imports.load_public_api(provider, config.imports)
        found, count = imports.check_imports(repo, provider, consumer, api)
        result.violations += found
        result.violations += dependencies.check_dependencies(provider, consumer)
        result.python_files = count
    apply_exceptions(result, config, files, read_text(repo / "pyproject.toml"))
    return result


def find_repository(start: Path) -> Path:
    """Return the nearest folder upwards with a configured pyproject.toml."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "[tool.check-boundaries" in read_text(candidate):
            return folder
    raise CheckError(
        f"no pyproject.toml with a [tool.check-boundaries] table in {start} or "
        f"above; run from the repository or pass --repo"
    )


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise CheckError(f"{path} not found") from error


def read_working_config(repo: Path) -> Config:
    return load_config(read_text(repo / "pyproject.toml"), "pyproject.toml")


def working_tree_files(repo: Path) -> list[str]:
    """Return the repository's files: tracked and untracked, less ignored ones."""
    try:
        completed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        completed = None
    if completed is not None and completed.returncode == 0:
        return [p for p in completed.stdout.decode().split("\0") if p]
    # Not a git work tree: walk the folder instead.
    found: list[str] = []
    for folder, subfolders, names in os.walk(repo):
        subfolders[:] = [d for d in subfolders if d not in _SKIPPED_WALK]
        base = Path(folder).relative_to(repo)
        found.extend((base / name).as_posix() for name in names)
    return found


def apply_exceptions(
    result: Report, config: Config, files: list[str], pyproject_text: str
) -> None:
    """Move sanctioned findings aside and report exceptions that match no file."""
    unsanctioned: list[Violation] = []
    for violation in result.violations:
        entry = config.exception_for(violation.path, violation.code)
        if entry is None:
            unsanctioned.append(violation)
        else:
            result.sanctioned.append((violation, entry.reason))
    result.violations = unsanctioned

    for entry in config.exceptions:
        pattern = compile_pattern(entry.path)
        if any(pattern.match(path) for path in files):
            continue
        unsanctioned.append(
            Violation(
                "pyproject.toml",
                _line_of_path(pyproject_text, entry.path),
                report.STALE_EXCEPTION,
                f"exception {entry.index} (path {entry.path!r}) matches no file any "
                f"more; remove it from [[tool.check-boundaries.exceptions]]",
            )
        )


def _line_of_path(text: str, path: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith("path") and path in line:
            return number
    return 1


if __name__ == "__main__":
    sys.exit(main())
