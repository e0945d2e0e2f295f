"""Declared dependencies between the two packages, read from their pyproject.toml.

The consumer must declare the provider in `[project].dependencies`; the provider
must not name the consumer in its dependencies, optional dependencies, dependency
groups or `[tool.uv.sources]`.
"""

from __future__ import annotations

import re

from . import report
from .layout import Package, normalize_distribution
from .report import Violation

_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def requirement_name(requirement: str) -> str | None:
    """Return the normalized distribution name a PEP 508 requirement starts with."""
    match = _REQUIREMENT_NAME.match(requirement)
    return normalize_distribution(match.group(1)) if match else None


def check_dependencies(provider: Package, consumer: Package) -> list[Violation]:
    """Return violations of the declared direction between the two packages."""
    violations: list[Violation] = []
    provider_name = normalize_distribution(provider.distribution)
    declared = consumer.project.get("project", {}).get("dependencies", [])
    if not any(requirement_name(item) == provider_name for item in declared):
        violations.append(
            Violation(
                consumer.pyproject,
                _line_of(consumer.project_text, "dependencies"),
                report.CONSUMER_LACKS_PROVIDER_DEPENDENCY,
                f"[project].dependencies does not declare {provider.distribution}; "
                f"the consumer must depend on the provider explicitly",
            )
        )

    forbidden = normalize_distribution(consumer.distribution)
    for where, requirement in _declared_requirements(provider.project):
        if requirement_name(requirement) == forbidden:
            violations.append(
                Violation(
                    provider.pyproject,
                    _line_of(provider.project_text, requirement),
                    report.PROVIDER_DEPENDS_ON_CONSUMER,
                    f"{where} declares {requirement!r}; the provider package must "
                    f"not depend on {consumer.distribution}",
                )
            )
    return violations


def _declared_requirements(project: dict) -> list[tuple[str, str]]:
    """Return (table, requirement) for every requirement the pyproject declares."""
    found: list[tuple[str, str]] = []
    metadata = project.get("project", {})
    for item in metadata.get("dependencies", []):
        found.append(("[project].dependencies", item))
    for extra, items in metadata.get("optional-dependencies", {}).items():
        found.extend((f"[project.optional-dependencies].{extra}", i) for i in items)
    for group, items in project.get("dependency-groups", {}).items():
        # Groups may also contain {include-group = "..."} tables, which name no
        # distribution.
        found.extend(
            (f"[dependency-groups].{group}", i) for i in items if isinstance(i, str)
        )
    sources = project.get("tool", {}).get("uv", {}).get("sources", {})
    found.extend(("[tool.uv.sources]", name) for name in sources)
    return [(where, item) for where, item in found if isinstance(item, str)]


def _line_of(text: str, needle: str) -> int:
    """Return the first line containing `needle`, or 1 if none does."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return 1
