"""Read-only git queries the change check needs, each failing closed.

Every git failure becomes a CheckError (exit 2) saying how to fix it, so a missing
ref or a shallow clone can never turn into a silent pass.
"""

from __future__ import annotations

import posixpath
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckError

SYMLINK_MODE = "120000"
_MAX_SYMLINK_HOPS = 40


@dataclass(frozen=True)
class ChangedPath:
    """One path in the net diff; renames arrive as a deletion plus an addition."""

    status: str
    path: str
    old_mode: str
    new_mode: str
    new_blob: str


@dataclass(frozen=True)
class Commit:
    """A commit in the range and its author."""

    sha: str
    author_email: str
    author_name: str

    @property
    def short(self) -> str:
        return self.sha[:10]


def run_git(repo: Path, *args: str) -> bytes:
    """Run git in `repo` and return its stdout, raising CheckError on failure."""
    try:
        completed = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, check=False
        )
    except FileNotFoundError as error:
        raise CheckError(
            "git not found on PATH; install git to run the check"
        ) from error
    if completed.returncode != 0:
        stderr = completed.stderr.decode(errors="replace").strip()
        raise CheckError(f"git {' '.join(args)} failed: {stderr}")
    return completed.stdout


def resolve_commit(repo: Path, ref: str) -> str:
    """Return the commit `ref` names, or raise a CheckError saying how to fetch it."""
    completed = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    if completed.returncode != 0:
        raise CheckError(
            f"unknown ref {ref!r}: fetch it first (e.g. 'git fetch origin main') "
            f"or pass another --base/--head"
        )
    return completed.stdout.decode().strip()


def is_shallow(repo: Path) -> bool:
    output = run_git(repo, "rev-parse", "--is-shallow-repository")
    return output.decode().strip() == "true"


def merge_base(repo: Path, base: str, head: str) -> str:
    """Return the merge base of two commits; no merge base is an error, never a pass."""
    completed = subprocess.run(
        ["git", "merge-base", base, head], cwd=repo, capture_output=True, check=False
    )
    if completed.returncode == 0:
        return completed.stdout.decode().strip()
    if completed.returncode == 1:
        hint = (
            "this clone is shallow: run 'git fetch --unshallow' (or check out with "
            "fetch-depth: 0 in GitHub Actions)"
            if is_shallow(repo)
            else "the histories are unrelated: pass the intended --base"
        )
        raise CheckError(f"no merge base between {base} and {head}; {hint}")
    stderr = completed.stderr.decode(errors="replace").strip()
    raise CheckError(f"git merge-base {base} {head} failed: {stderr}")


def changed_paths(repo: Path, base: str, head: str) -> list[ChangedPath]:
    """Return every path the net change touches, renames split in two."""
    output = run_git(
        repo, "diff", "--raw", "--no-renames", "--no-abbrev", "-z", base, head
    )
    fields = output.split(b"\0")
    changes: list[ChangedPath] = []
    index = 0
    while index + 1 < len(fields) and fields[index]:
        meta = fields[index].decode().lstrip(":").split()
        path = fields[index + 1].decode(errors="surrogateescape")
        old_mode, new_mode, _old_blob, new_blob, status = meta
        changes.append(ChangedPath(status[0], path, old_mode, new_mode, new_blob))
        index += 2
    return changes


def commits_by_path(
    repo: Path, base: str, head: str
) -> tuple[list[Commit], dict[str, list[Commit]]]:
    """Return the commits in base..head and, per path, the commits that touched it.

    Renames count for both their old and new path. A merge commit counts only for
    the paths where its result differs from every parent (its own edits).
    """
    output = run_git(
        repo,
        "log",
        "--no-renames",
        "--cc",
        "--name-only",
        "-z",
        "--format=%x01%H%x00%ae%x00%an",
        f"{base}..{head}",
    )
    commits: list[Commit] = []
    touched: dict[str, list[Commit]] = {}
    for record in output.split(b"\x01")[1:]:
        fields = record.split(b"\0")
        commit = Commit(
            sha=fields[0].decode(),
            author_email=fields[1].decode(errors="replace"),
            author_name=fields[2].decode(errors="replace"),
        )
        commits.append(commit)
        for raw in fields[3:]:
            path = raw.lstrip(b"\n").decode(errors="surrogateescape")
            if path:
                touched.setdefault(path, []).append(commit)
    return commits, touched


def tree_entries(repo: Path, revision: str) -> dict[str, tuple[str, str]]:
    """Return {path: (mode, object id)} for every file in `revision`'s tree."""
    output = run_git(repo, "ls-tree", "-r", "-z", "--full-tree", revision)
    entries: dict[str, tuple[str, str]] = {}
    for record in output.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, _kind, object_id = meta.decode().split()
        entries[path.decode(errors="surrogateescape")] = (mode, object_id)
    return entries


def read_blob(repo: Path, object_id: str) -> bytes:
    return run_git(repo, "cat-file", "blob", object_id)


def read_text_at(repo: Path, revision: str, path: str) -> str | None:
    """Return the text of `path` at `revision`, or None when it is absent there."""
    output = run_git(repo, "ls-tree", "-z", revision, "--", path)
    if not output:
        return None
    meta, _, _ = output.split(b"\0")[0].partition(b"\t")
    mode, kind, object_id = meta.decode().split()
    if kind != "blob":
        return None
    return read_blob(repo, object_id).decode(errors="replace")


def resolve_symlink(
    link: str, target: str, tree: dict[str, tuple[str, str]], repo: Path
) -> str | None:
    """Return the repository path a symlink at `link` ends at, or None if outside.

    Symlinks met along the way (in the target or its parent folders) are followed
    through the tree of the same revision.
    """
    current = _join_target(link, target, repo)
    for _ in range(_MAX_SYMLINK_HOPS):
        if current is None:
            return None
        hop = _first_symlink_prefix(current, tree)
        if hop is None:
            return current
        prefix, rest = hop
        object_id = tree[prefix][1]
        inner = read_blob(repo, object_id).decode(errors="surrogateescape")
        joined = _join_target(prefix, inner, repo)
        if joined is None:
            return None
        current = posixpath.normpath(posixpath.join(joined, rest)) if rest else joined
    return current


def _join_target(link: str, target: str, repo: Path) -> str | None:
    if target.startswith("/"):
        root = str(repo.resolve())
        if target != root and not target.startswith(root + "/"):
            return None
        relative = target[len(root) :].lstrip("/")
    else:
        relative = posixpath.join(posixpath.dirname(link), target)
    normal = posixpath.normpath(relative)
    if normal == ".." or normal.startswith("../"):
        return None
    return "" if normal == "." else normal


def _first_symlink_prefix(
    path: str, tree: dict[str, tuple[str, str]]
) -> tuple[str, str] | None:
    parts = path.split("/") if path else []
    for count in range(1, len(parts) + 1):
        prefix = "/".join(parts[:count])
        entry = tree.get(prefix)
        if entry is not None and entry[0] == SYMLINK_MODE:
            return prefix, "/".join(parts[count:])
    return None
