"""The `[tool.check-boundaries]` table of the root `pyproject.toml`, validated."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Any

from .codeowners import compile_pattern
from .errors import CheckError

TABLE = "tool.check-boundaries"
CODES = ("BND100", "BND101", "BND200", "BND201", "BND300", "BND301")

_TOP_KEYS = ("frozen-teams", "teams", "imports", "exceptions")
_TEAM_KEYS = ("github-team", "members", "emails")
_IMPORT_KEYS = ("provider", "consumer", "public-modules")
_EXCEPTION_KEYS = ("path", "reason", "codes")

_TEAM_NAME = re.compile(r"[a-z][a-z0-9-]*")
_HANDLE = re.compile(r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_GITHUB_TEAM = re.compile(r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9_.-]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class Team:
    """A team: the GitHub handles and commit e-mails that belong to it."""

    name: str
    github_team: str | None
    members: tuple[str, ...]
    emails: tuple[str, ...]


@dataclass(frozen=True)
class ImportRules:
    """The two package folders and the provider modules declared public."""

    provider: str
    consumer: str
    public_modules: tuple[str, ...]


@dataclass(frozen=True)
class SanctionedException:
    """A path pattern whose findings are accepted, with the reason they are."""

    index: int
    path: str
    reason: str
    codes: tuple[str, ...]

    def covers(self, path: str, code: str) -> bool:
        if self.codes and code not in self.codes:
            return False
        return compile_pattern(self.path).match(path) is not None


@dataclass(frozen=True)
class Config:
    """The validated boundary-check configuration."""

    source: str
    teams: dict[str, Team]
    frozen_teams: tuple[str, ...]
    imports: ImportRules
    exceptions: tuple[SanctionedException, ...]

    def teams_of_owner(self, owner: str) -> set[str]:
        """Return the teams that a CODEOWNERS owner (handle, team or e-mail) maps to."""
        found: set[str] = set()
        for team in self.teams.values():
            if owner.casefold() == (team.github_team or "").casefold():
                found.add(team.name)
            elif owner.casefold() in {m.casefold() for m in team.members}:
                found.add(team.name)
            elif owner.casefold() in {e.casefold() for e in team.emails}:
                found.add(team.name)
        return found

    def teams_of_email(self, email: str) -> set[str]:
        """Return the teams whose commit e-mails include `email` (case-insensitive)."""
        folded = email.casefold()
        return {
            team.name
            for team in self.teams.values()
            if folded in {address.casefold() for address in team.emails}
        }

    def exception_for(self, path: str, code: str) -> SanctionedException | None:
        for entry in self.exceptions:
            if entry.covers(path, code):
                return entry
        return None


def load_config(text: str, source: str = "pyproject.toml") -> Config:
    """Parse `pyproject.toml` text and validate its boundary table.

    Every problem found is collected and raised once as a CheckError naming each key.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CheckError(f"{source}: invalid TOML: {error}") from error
    table = document.get("tool", {}).get("check-boundaries")
    if not isinstance(table, dict):
        raise CheckError(
            f"{source}: missing [{TABLE}] table; docs/boundaries.md shows its keys"
        )

    problems: list[str] = []
    _check_keys(table, TABLE, _TOP_KEYS, problems)
    teams = _read_teams(table.get("teams"), problems)
    frozen = _read_frozen(table.get("frozen-teams"), teams, problems)
    imports = _read_imports(table.get("imports"), problems)
    exceptions = _read_exceptions(table.get("exceptions", []), problems)
    if problems or imports is None:
        listing = "\n  ".join(problems)
        raise CheckError(f"{source}: invalid [{TABLE}] configuration:\n  {listing}")
    return Config(
        source=source,
        teams=teams,
        frozen_teams=frozen,
        imports=imports,
        exceptions=exceptions,
    )


def _check_keys(
    table: dict[str, Any], where: str, allowed: tuple[str, ...], problems: list[str]
) -> None:
    for key in table:
        if key not in allowed:
            expected = ", ".join(allowed)
            problems.append(f"{where}.{key}: unknown key; expected one of {expected}")


def _string_list(
    value: Any, where: str, form: re.Pattern[str], expected: str, problems: list[str]
) -> tuple[str, ...]:
    if not isinstance(value, list):
        problems.append(f"{where}: expected a list of {expected}, got {value!r}")
        return ()
    good: list[str] = []
    for item in value:
        if isinstance(item, str) and form.fullmatch(item):
            good.append(item)
        else:
            problems.append(f"{where}: {item!r} is not {expected}")
    return tuple(good)


def _read_teams(value: Any, problems: list[str]) -> dict[str, Team]:
    where = f"{TABLE}.teams"
    if not isinstance(value, dict) or not value:
        problems.append(f"{where}: expected a table with at least one team")
        return {}
    teams: dict[str, Team] = {}
    for name, body in value.items():
        team_where = f"{where}.{name}"
        if not _TEAM_NAME.fullmatch(name):
            problems.append(
                f"{team_where}: invalid team name; use lowercase letters, digits, '-'"
            )
        if not isinstance(body, dict):
            problems.append(f"{team_where}: expected a table, got {body!r}")
            continue
        _check_keys(body, team_where, _TEAM_KEYS, problems)
        github_team = body.get("github-team")
        if github_team is not None and not (
            isinstance(github_team, str) and _GITHUB_TEAM.fullmatch(github_team)
        ):
            problems.append(
                f"{team_where}.github-team: {github_team!r} is not an @org/team name"
            )
            github_team = None
        members = _string_list(
            body.get("members", []),
            f"{team_where}.members",
            _HANDLE,
            "a GitHub handle (@name)",
            problems,
        )
        emails = _string_list(
            body.get("emails", []),
            f"{team_where}.emails",
            _EMAIL,
            "an e-mail address",
            problems,
        )
        if not emails:
            problems.append(
                f"{team_where}.emails: expected at least one commit e-mail address"
            )
        teams[name] = Team(name, github_team, members, emails)
    return teams


def _read_frozen(
    value: Any, teams: dict[str, Team], problems: list[str]
) -> tuple[str, ...]:
    where = f"{TABLE}.frozen-teams"
    if value is None:
        problems.append(f"{where}: missing; list the teams whose paths are frozen")
        return ()
    names = _string_list(value, where, _TEAM_NAME, "a team name", problems)
    for name in names:
        if teams and name not in teams:
            known = ", ".join(sorted(teams))
            problems.append(f"{where}: unknown team {name!r}; known teams: {known}")
    return names


def _read_imports(value: Any, problems: list[str]) -> ImportRules | None:
    where = f"{TABLE}.imports"
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a table with provider and consumer")
        return None
    _check_keys(value, where, _IMPORT_KEYS, problems)
    folders: dict[str, str] = {}
    for key in ("provider", "consumer"):
        folder = value.get(key)
        if not isinstance(folder, str) or not folder.strip("/"):
            problems.append(
                f"{where}.{key}: expected the package's project folder, "
                f"e.g. 'packages/name', got {folder!r}"
            )
            folder = ""
        folders[key] = folder.strip("/")
    public = _string_list(
        value.get("public-modules", []),
        f"{where}.public-modules",
        _MODULE,
        "a dotted module name",
        problems,
    )
    return ImportRules(folders["provider"], folders["consumer"], public)


def _read_exceptions(
    value: Any, problems: list[str]
) -> tuple[SanctionedException, ...]:
    where = f"{TABLE}.exceptions"
    if not isinstance(value, list):
        problems.append(f"{where}: expected an array of tables ([[{where}]])")
        return ()
    entries: list[SanctionedException] = []
    for index, body in enumerate(value):
        entry_where = f"{where}[{index}]"
        if not isinstance(body, dict):
            problems.append(f"{entry_where}: expected a table, got {body!r}")
            continue
        _check_keys(body, entry_where, _EXCEPTION_KEYS, problems)
        path = body.get("path")
        reason = body.get("reason")
        valid = True
        if not isinstance(path, str) or not path.strip():
            problems.append(f"{entry_where}.path: expected a path pattern")
            valid = False
        else:
            try:
                compile_pattern(path)
            except ValueError as error:
                problems.append(f"{entry_where}.path: {error}")
                valid = False
        if not isinstance(reason, str) or not reason.strip():
            problems.append(
                f"{entry_where}.reason: expected a sentence saying why it is allowed"
            )
            valid = False
        codes = _string_list(
            body.get("codes", []),
            f"{entry_where}.codes",
            re.compile("|".join(CODES)),
            f"one of {', '.join(CODES)}",
            problems,
        )
        if valid:
            entries.append(SanctionedException(index, path, reason.strip(), codes))
    return tuple(entries)
