"""Command line: output formats, exit statuses and both ways to start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from boundary_repos import BOB, INFERENCE_FILE

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "check_boundaries.py"


def _violating(monorepo) -> None:
    monorepo.write(INFERENCE_FILE, "X = 1\n")
    monorepo.commit("Edit the loader", BOB)


def test_text_output_ends_with_summary(monorepo, run_check):
    _violating(monorepo)

    status, out, _ = run_check(monorepo, "--base", "main")

    assert status == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"{INFERENCE_FILE}:1: BND100 ")
    assert lines[-1].startswith("1 violation; checked 1 changed path in 1 commit")
    assert lines[-1].endswith("and 6 Python files")


def test_github_format_writes_annotations(monorepo, run_check):
    _violating(monorepo)

    status, out, _ = run_check(monorepo, "--base", "main", "--format", "github")

    assert status == 1
    first = out.splitlines()[0]
    assert first.startswith(f"::error file={INFERENCE_FILE},line=1,title=BND100::")


def test_github_format_is_default_in_actions(monorepo, monkeypatch, capsys):
    from boundaries.cli import main

    _violating(monorepo)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")

    status = main(["--repo", str(monorepo.root), "--base", "main"])

    assert status == 1
    assert capsys.readouterr().out.startswith("::error file=")


def test_json_format_lists_violations(monorepo, run_check):
    _violating(monorepo)

    status, out, _ = run_check(monorepo, "--base", "main", "--format", "json")

    document = json.loads(out)
    assert status == 1
    assert document["exit_code"] == 1
    assert document["summary"]["violations"] == 1
    violation = document["violations"][0]
    assert violation["path"] == INFERENCE_FILE
    assert violation["code"] == "BND100"
    assert violation["details"]["teams"] == ["inference"]
    assert violation["details"]["commits"][0]["author_email"] == BOB[1]


def test_json_format_reports_errors(monorepo, run_check):
    status, out, _ = run_check(monorepo, "--base", "nope", "--format", "json")

    document = json.loads(out)
    assert status == 2
    assert document["exit_code"] == 2
    assert document["error"].startswith("unknown ref 'nope'")


def test_clean_run_exits_zero(monorepo, run_check):
    status, out, _ = run_check(monorepo, "--base", "main")

    assert status == 0
    assert out.startswith("0 violations; checked 0 changed paths in 0 commits")


def test_repository_is_found_from_a_subfolder(monorepo):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "imports"],
        cwd=monorepo.root / "packages",
        capture_output=True,
        text=True,
        env={**os.environ, "GITHUB_ACTIONS": ""},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("0 violations; checked 6 Python files")


def test_outside_any_repository_is_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "imports"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "GITHUB_ACTIONS": ""},
    )

    assert result.returncode == 2
    assert "no pyproject.toml with a [tool.check-boundaries] table" in result.stderr


def test_script_import_check_of_this_repository_is_clean():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "imports", "--format", "text"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("0 violations; checked ")


def test_installed_command_runs():
    command = Path(sys.executable).parent / "check-boundaries"
    assert command.is_file(), "run 'uv sync' to install the check-boundaries command"

    result = subprocess.run(
        [str(command), "imports", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["exit_code"] == 0


def test_import_check_of_this_repository_is_fast(capsys):
    from boundaries.cli import main

    # CPU time of this process, so a busy machine does not fail the test.
    start = time.process_time()
    status = main(["--repo", str(ROOT), "imports", "--format", "text"])
    elapsed = time.process_time() - start

    assert status == 0, capsys.readouterr().out
    assert elapsed < 1.0
