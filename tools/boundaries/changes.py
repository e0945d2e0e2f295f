"""The change check: paths owned by a frozen team change only with that team.

A changed path is judged by the CODEOWNERS rules and the configuration of the
merge base, so a pull request cannot grant itself ownership or an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import gitrepo, report
from .codeowners import CodeOwners, find_codeowners, parse_codeowners
from .config import Config, load_config
from .errors import CheckError
from .gitrepo import ChangedPath, Commit
from .report import Violation

_STATUS_WORDS = {
    "A": "added",
    "C": "copied",
    "D": "deleted",
    "M": "modified",
    "T": "type changed",
    "U": "unmerged",
}


@dataclass
class ChangeSet:
    """The net change between the merge base and the head, with its commits."""

    base: str
    head: str
    paths: list[ChangedPath]
    commits: list[Commit]
    touched_by: dict[str, list[Commit]]
    head_tree: dict[str, tuple[str, str]] = field(default_factory=dict)


def load_change_set(repo: Path, base_ref: str, head_ref: str) -> ChangeSet:
    """Resolve the refs, find their merge base and read the change between them."""
    head = gitrepo.resolve_commit(repo, head_ref)
    base_tip = gitrepo.resolve_commit(repo, base_ref)
    base = gitrepo.merge_base(repo, base_tip, head)
    paths = gitrepo.changed_paths(repo, base, head)
    commits, touched_by = gitrepo.commits_by_path(repo, base, head)
    head_tree = gitrepo.tree_entries(repo, head)
    return ChangeSet(base, head, paths, commits, touched_by, head_tree)


def load_rules_at(repo: Path, revision: str) -> tuple[Config, CodeOwners]:
    """Read the configuration and CODEOWNERS as they are at `revision`."""
    text = gitrepo.read_text_at(repo, revision, "pyproject.toml")
    if text is None:
        raise CheckError(f"pyproject.toml not found at {revision[:10]}")
    config = load_config(text, f"pyproject.toml at {revision[:10]}")
    location, owners_text = find_codeowners(
        lambda path: gitrepo.read_text_at(repo, revision, path)
    )
    codeowners = parse_codeowners(owners_text, f"{location} at {revision[:10]}")
    check_owners_known(codeowners, config)
    return config, codeowners


def check_owners_known(codeowners: CodeOwners, config: Config) -> None:
    """Reject CODEOWNERS owners that belong to no configured team.

    An unknown owner could hide a frozen path, so this fails closed.
    """
    problems = [
        f"{codeowners.source}:{rule.line}: owner {owner} belongs to no team in "
        f"[tool.check-boundaries.teams]; add it to a team's members, emails or "
        f"github-team"
        for rule in codeowners.rules
        for owner in rule.owners
        if not config.teams_of_owner(owner)
    ]
    if problems:
        raise CheckError("unknown CODEOWNERS owners:\n  " + "\n  ".join(problems))


def owning_teams(path: str, codeowners: CodeOwners, config: Config) -> set[str]:
    teams: set[str] = set()
    for owner in codeowners.owners_of(path):
        teams |= config.teams_of_owner(owner)
    return teams


def check_changes(
    repo: Path,
    change: ChangeSet,
    config: Config,
    codeowners: CodeOwners,
    team: str | None,
) -> list[Violation]:
    """Return a violation for each frozen path changed without its owning team."""
    if team is not None and team not in config.teams:
        known = ", ".join(sorted(config.teams))
        raise CheckError(f"--team {team!r}: unknown team; known teams: {known}")
    frozen = set(config.frozen_teams)
    violations: list[Violation] = []
    for changed in change.paths:
        owners = owning_teams(changed.path, codeowners, config)
        commits = change.touched_by.get(changed.path, [])
        editors = _editing_teams(commits, config, team)
        if owners & frozen and not owners & editors:
            verb = _STATUS_WORDS.get(changed.status, changed.status)
            rule = codeowners.rule_for(changed.path)
            assigned = " ".join(rule.owners) if rule else ""
            violations.append(
                _violation(
                    changed.path,
                    report.FROZEN_PATH_CHANGED,
                    f"{verb} path owned by {assigned} (team {_team_list(owners)}, "
                    f"frozen; {codeowners.source}, line {rule.line if rule else '?'})",
                    owners,
                    commits,
                    team,
                )
            )
        if changed.new_mode == gitrepo.SYMLINK_MODE and changed.status != "D":
            found = _check_symlink(
                repo, changed, change, codeowners, config, editors, team, commits
            )
            if found is not None:
                violations.append(found)
    return violations


def _check_symlink(
    repo: Path,
    changed: ChangedPath,
    change: ChangeSet,
    codeowners: CodeOwners,
    config: Config,
    editors: set[str],
    team: str | None,
    commits: list[Commit],
) -> Violation | None:
    target = gitrepo.read_blob(repo, changed.new_blob).decode(errors="surrogateescape")
    resolved = gitrepo.resolve_symlink(changed.path, target, change.head_tree, repo)
    if resolved is None:
        return None
    # The target may be a folder: every file under it counts, and so does the
    # target path itself (it may not exist yet, or be a file).
    prefix = f"{resolved}/" if resolved else ""
    reached = [resolved] if resolved else []
    reached += [path for path in change.head_tree if path.startswith(prefix)]
    owners: set[str] = set()
    for path in reached:
        owners |= owning_teams(path, codeowners, config)
    frozen_owners = owners & set(config.frozen_teams)
    if not frozen_owners or frozen_owners & editors:
        return None
    return _violation(
        changed.path,
        report.SYMLINK_INTO_FROZEN,
        f"symlink to {target!r} points into {resolved or '.'}, owned by "
        f"team {_team_list(frozen_owners)} (frozen)",
        frozen_owners,
        commits,
        team,
    )


def _editing_teams(commits: list[Commit], config: Config, team: str | None) -> set[str]:
    if team is not None:
        return {team}
    teams: set[str] = set()
    for commit in commits:
        teams |= config.teams_of_email(commit.author_email)
    return teams


def _team_list(teams: set[str]) -> str:
    return ", ".join(sorted(teams))


def _violation(
    path: str,
    code: str,
    finding: str,
    owners: set[str],
    commits: list[Commit],
    team: str | None,
) -> Violation:
    if team is not None:
        attribution = f"the change is from team {team}"
    elif commits:
        listed = ", ".join(f"{c.short} by {c.author_email}" for c in commits)
        attribution = f"no commit by an owning team touched it: {listed}"
    else:
        attribution = (
            "no commit in the range touched it directly, so its author is unknown"
        )
    return Violation(
        path,
        1,
        code,
        f"{finding}; {attribution}",
        {
            "teams": sorted(owners),
            "commits": [
                {"sha": c.sha, "author_email": c.author_email} for c in commits
            ],
        },
    )
