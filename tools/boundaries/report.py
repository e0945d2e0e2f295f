"""Findings and how they are written: plain text, GitHub annotations or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

# Codes, one per kind of finding.
FROZEN_PATH_CHANGED = "BND100"
SYMLINK_INTO_FROZEN = "BND101"
PROVIDER_IMPORTS_CONSUMER = "BND200"
CONSUMER_IMPORTS_PRIVATE = "BND201"
CONSUMER_LACKS_PROVIDER_DEPENDENCY = "BND300"
PROVIDER_DEPENDS_ON_CONSUMER = "BND301"
STALE_EXCEPTION = "BND400"

FORMATS = ("text", "github", "json")


@dataclass(frozen=True)
class Violation:
    """One finding at a repository path; `line` is 1 for whole-file findings."""

    path: str
    line: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def sort_key(self) -> tuple[str, int, str]:
        return (self.path, self.line, self.code)


@dataclass
class Report:
    """The findings of one run and what was looked at."""

    violations: list[Violation] = field(default_factory=list)
    sanctioned: list[tuple[Violation, str]] = field(default_factory=list)
    changed_paths: int | None = None
    commits: int | None = None
    base: str | None = None
    python_files: int | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.violations else 0


def render(report: Report, output_format: str) -> str:
    """Return the whole output for `report` in `output_format`."""
    violations = sorted(report.violations, key=Violation.sort_key)
    if output_format == "json":
        return _render_json(report, violations)
    lines = [
        _github_line(violation) if output_format == "github" else _text_line(violation)
        for violation in violations
    ]
    lines.append(summary(report))
    return "\n".join(lines)


def render_error(message: str, output_format: str) -> str:
    """Return the output for a check that could not run (exit 2)."""
    if output_format == "json":
        return json.dumps({"error": message, "exit_code": 2}, indent=2)
    if output_format == "github":
        return f"::error title=check-boundaries::{_escape_data(message)}"
    return f"check-boundaries: error: {message}"


def summary(report: Report) -> str:
    """Return the one-line summary that closes the text output."""
    scope: list[str] = []
    if report.changed_paths is not None:
        paths = _count(report.changed_paths, "changed path")
        commits = _count(report.commits or 0, "commit")
        scope.append(f"{paths} in {commits} since {report.base}")
    if report.python_files is not None:
        scope.append(_count(report.python_files, "Python file"))
    checked = " and ".join(scope) or "nothing"
    sanctioned = (
        f", {len(report.sanctioned)} sanctioned by exceptions"
        if report.sanctioned
        else ""
    )
    return (
        f"{_count(len(report.violations), 'violation')}{sanctioned}; checked {checked}"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _text_line(violation: Violation) -> str:
    return f"{violation.path}:{violation.line}: {violation.code} {violation.message}"


def _github_line(violation: Violation) -> str:
    file = _escape_property(violation.path)
    title = _escape_property(violation.code)
    message = _escape_data(violation.message)
    return f"::error file={file},line={violation.line},title={title}::{message}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _render_json(report: Report, violations: list[Violation]) -> str:
    document = {
        "exit_code": report.exit_code,
        "violations": [asdict(violation) for violation in violations],
        "sanctioned": [
            {**asdict(violation), "reason": reason}
            for violation, reason in report.sanctioned
        ],
        "summary": {
            "violations": len(violations),
            "changed_paths": report.changed_paths,
            "commits": report.commits,
            "base": report.base,
            "python_files": report.python_files,
        },
    }
    return json.dumps(document, indent=2)
