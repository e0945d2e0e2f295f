"""CODEOWNERS parsing and path matching with GitHub's rules.

GitHub reads the first of `.github/CODEOWNERS`, `CODEOWNERS` and `docs/CODEOWNERS`.
Patterns follow gitignore, with these differences that GitHub documents:

- `!` negation, `[ ]` character ranges and a `\\#` escape of a leading `#` do not
  work. GitHub skips such lines; we report them as errors, with their line number.
- `docs/*` matches the files directly in `docs/`, not files in its subfolders.

Matching is case-sensitive, the last matching line wins, and a line without owners
leaves the paths it matches unowned.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import CheckError

CODEOWNERS_LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")

_USER = re.compile(r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_TEAM = re.compile(r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9_.-]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Rule:
    """One pattern line of a CODEOWNERS file."""

    line: int
    pattern: str
    owners: tuple[str, ...]
    regex: re.Pattern[str]

    def matches(self, path: str) -> bool:
        return self.regex.match(path) is not None


@dataclass(frozen=True)
class CodeOwners:
    """The parsed rules of one CODEOWNERS file, in file order."""

    source: str
    rules: tuple[Rule, ...]

    def rule_for(self, path: str) -> Rule | None:
        """Return the last rule matching the repository-relative `path`, if any."""
        for rule in reversed(self.rules):
            if rule.matches(path):
                return rule
        return None

    def owners_of(self, path: str) -> tuple[str, ...]:
        """Return the owners of `path`; empty when no rule or an owner-less one wins."""
        rule = self.rule_for(path)
        return rule.owners if rule else ()


def is_valid_owner(owner: str) -> bool:
    """Tell whether `owner` is a GitHub user, an `@org/team` or an e-mail address."""
    return any(form.fullmatch(owner) is not None for form in (_TEAM, _USER, _EMAIL))


def find_codeowners(read_file: Callable[[str], str | None]) -> tuple[str, str]:
    """Return the path and text of the CODEOWNERS file GitHub would use.

    `read_file` returns a repository file's text, or None when it does not exist.
    """
    for location in CODEOWNERS_LOCATIONS:
        text = read_file(location)
        if text is not None:
            return location, text
    searched = ", ".join(CODEOWNERS_LOCATIONS)
    raise CheckError(f"no CODEOWNERS file found; looked for {searched}")


def parse_codeowners(text: str, source: str = "CODEOWNERS") -> CodeOwners:
    """Parse CODEOWNERS `text`, raising CheckError that lists every invalid line."""
    rules: list[Rule] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            rule = _parse_line(raw, number)
        except ValueError as error:
            problems.append(f"{source}:{number}: {error}")
            continue
        if rule is not None:
            rules.append(rule)
    if problems:
        listing = "\n  ".join(problems)
        raise CheckError(
            f"invalid CODEOWNERS lines (GitHub would skip them), fix or remove:"
            f"\n  {listing}"
        )
    return CodeOwners(source=source, rules=tuple(rules))


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile one CODEOWNERS pattern, raising ValueError for forms GitHub rejects."""
    _reject_unsupported(pattern)
    tokens = _split_escapes(pattern)
    return _pattern_regex(tokens)


def _parse_line(raw: str, number: int) -> Rule | None:
    stripped = raw.strip()
    if not stripped or stripped.startswith("#"):
        return None
    words = _split_words(stripped)
    pattern, owner_words = words[0], words[1:]
    owners: list[str] = []
    for word in owner_words:
        # A word that starts with `#` opens a comment running to the end of line.
        if word.startswith("#"):
            break
        if not is_valid_owner(word):
            raise ValueError(
                f"invalid owner {word!r}: expected @user, @org/team or an e-mail"
            )
        owners.append(word)
    return Rule(
        line=number,
        pattern=pattern,
        owners=tuple(owners),
        regex=compile_pattern(pattern),
    )


def _split_words(line: str) -> list[str]:
    """Split a line on whitespace, keeping backslash-escaped spaces in words."""
    words: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(line):
        char = line[index]
        if char == "\\" and index + 1 < len(line):
            current.append(line[index : index + 2])
            index += 2
            continue
        if char.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
        index += 1
    if current:
        words.append("".join(current))
    return words


def _reject_unsupported(pattern: str) -> None:
    if pattern.startswith("\\#"):
        raise ValueError(
            f"pattern {pattern!r}: escaping a leading '#' with '\\' is not supported"
        )
    if pattern.startswith("!"):
        raise ValueError(f"pattern {pattern!r}: '!' negation is not supported")
    unescaped = re.sub(r"\\.", "", pattern)
    if "[" in unescaped or "]" in unescaped:
        raise ValueError(
            f"pattern {pattern!r}: '[ ]' character ranges are not supported"
        )


def _split_escapes(pattern: str) -> list[tuple[str, bool]]:
    """Split a pattern into (character, escaped) pairs."""
    tokens: list[tuple[str, bool]] = []
    index = 0
    while index < len(pattern):
        if pattern[index] == "\\" and index + 1 < len(pattern):
            tokens.append((pattern[index + 1], True))
            index += 2
        else:
            tokens.append((pattern[index], False))
            index += 1
    return tokens


def _split_segments(tokens: list[tuple[str, bool]]) -> list[list[tuple[str, bool]]]:
    segments: list[list[tuple[str, bool]]] = [[]]
    for char, escaped in tokens:
        if char == "/" and not escaped:
            segments.append([])
        else:
            segments[-1].append((char, escaped))
    return segments


def _is_double_star(segment: list[tuple[str, bool]]) -> bool:
    return segment == [("*", False), ("*", False)]


def _is_single_star(segment: list[tuple[str, bool]]) -> bool:
    return segment == [("*", False)]


def _segment_regex(segment: Iterable[tuple[str, bool]]) -> str:
    parts: list[str] = []
    for char, escaped in segment:
        if escaped:
            parts.append(re.escape(char))
        elif char == "*":
            # `**` inside a segment (`a**b`) is an ordinary `*`, as in gitignore.
            if not parts or parts[-1] != "[^/]*":
                parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(char))
    return "".join(parts)


def _pattern_regex(tokens: list[tuple[str, bool]]) -> re.Pattern[str]:
    segments = _split_segments(tokens)
    directory_only = len(segments) > 1 and not segments[-1]
    body = segments[:-1] if directory_only else segments
    # A slash anywhere but at the end anchors the pattern to the repository root;
    # a pattern without one matches at any depth.
    anchored = len(body) > 1
    segments = [segment for segment in segments if segment]
    if not segments:
        raise ValueError("pattern names no path")

    regex = "" if anchored else "(?:.*/)?"
    for index, segment in enumerate(segments):
        is_last = index == len(segments) - 1
        if _is_double_star(segment):
            regex += ".+" if is_last else "(?:[^/]+/)*"
            continue
        regex += _segment_regex(segment)
        if not is_last:
            regex += "/"

    last = segments[-1]
    if directory_only:
        # Everything inside the folder, at any depth.
        regex += "/.+"
    elif not (_is_double_star(last) or _is_single_star(last)):
        # The path itself, or everything inside it when it is a folder.
        # NOTE: GitHub documents only `dir/*` as not matching nested files. Other
        # wildcard patterns (`*.js`) keep gitignore's behaviour and match inside a
        # folder of that name; GitHub's behaviour there is undocumented.
        regex += "(?:/.+)?"
    return re.compile(regex + r"\Z")
