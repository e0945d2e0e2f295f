"""CODEOWNERS parsing and matching, against the rules GitHub documents."""

from __future__ import annotations

import pytest
from boundaries.codeowners import find_codeowners, parse_codeowners
from boundaries.errors import CheckError

# (pattern, path, matches)
MATCH_CASES = [
    # Without a slash a pattern matches at any depth.
    ("*.js", "app.js", True),
    ("*.js", "src/deep/app.js", True),
    ("*.js", "app.jsx", False),
    # As in gitignore, a folder named like the pattern gives away its contents.
    ("*.js", "vendor.js/index.py", True),
    ("Makefile", "tools/Makefile", True),
    # A leading slash anchors to the repository root.
    ("/build/logs/", "build/logs/a.log", True),
    ("/build/logs/", "build/logs/deep/a.log", True),
    ("/build/logs/", "src/build/logs/a.log", False),
    # A slash in the middle anchors too.
    ("docs/getting-started.md", "docs/getting-started.md", True),
    ("docs/getting-started.md", "src/docs/getting-started.md", False),
    # A trailing slash matches a folder of that name anywhere.
    ("apps/", "apps/main.py", True),
    ("apps/", "src/apps/main.py", True),
    ("apps/", "apps", False),
    # A pattern without a trailing slash also matches everything in a folder.
    ("/apps/github", "apps/github/index.js", True),
    ("/apps/github", "apps/github", True),
    ("/apps/github", "apps/githubber/index.js", False),
    # `dir/*` matches files directly in the folder, not nested ones.
    ("docs/*", "docs/getting-started.md", True),
    ("docs/*", "docs/build-app/troubleshooting.md", False),
    # `**` matches any number of folders.
    ("**/logs", "logs/a.log", True),
    ("**/logs", "deeply/nested/logs/a.log", True),
    ("/src/**/test.py", "src/test.py", True),
    ("/src/**/test.py", "src/a/b/test.py", True),
    ("/src/**", "src/a/b.py", True),
    ("/src/**", "src", False),
    ("*", "any/file/at/all.txt", True),
    # `?` is one character other than a slash.
    ("/file?.txt", "file1.txt", True),
    ("/file?.txt", "file10.txt", False),
    # Matching is case-sensitive.
    ("/Docs/", "docs/index.md", False),
    ("*.MD", "README.md", False),
    # A backslash-escaped space is part of the pattern.
    ("/my\\ folder/", "my folder/a.txt", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), MATCH_CASES)
def test_pattern_matching(pattern, path, expected):
    owners = parse_codeowners(f"{pattern} @owner\n")

    assert bool(owners.owners_of(path)) is expected


def test_last_matching_line_wins():
    owners = parse_codeowners("*.py @py-owner\n/src/ @src-owner\n")

    assert owners.owners_of("src/main.py") == ("@src-owner",)
    assert owners.owners_of("tools/main.py") == ("@py-owner",)


def test_earlier_line_does_not_win():
    owners = parse_codeowners("/src/ @src-owner\n*.py @py-owner\n")

    assert owners.owners_of("src/main.py") == ("@py-owner",)


def test_ownerless_line_leaves_paths_unowned():
    owners = parse_codeowners("/apps/ @octocat\n/apps/github\n")

    assert owners.owners_of("apps/main.py") == ("@octocat",)
    assert owners.owners_of("apps/github/index.js") == ()
    assert owners.rule_for("apps/github/index.js").line == 2


def test_unmatched_path_has_no_rule():
    owners = parse_codeowners("/apps/ @octocat\n")

    assert owners.rule_for("README.md") is None


def test_owner_forms_and_comments():
    owners = parse_codeowners(
        "# a comment\n\n/a/ @user @org/team-name docs@example.com # trailing\n"
    )

    assert owners.owners_of("a/b") == ("@user", "@org/team-name", "docs@example.com")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("!/docs/x @bob", "pattern '!/docs/x': '!' negation is not supported"),
        (
            "/file[0-9].txt @bob",
            "pattern '/file[0-9].txt': '[ ]' character ranges are not supported",
        ),
        (
            "\\#file @bob",
            "pattern '\\\\#file': escaping a leading '#' with '\\' is not supported",
        ),
        (
            "[Section]",
            "pattern '[Section]': '[ ]' character ranges are not supported",
        ),
        ("/docs/ bob", "invalid owner 'bob': expected @user, @org/team or an e-mail"),
        ("/ @bob", "pattern names no path"),
    ],
)
def test_invalid_line_is_reported_with_line_number(line, message):
    text = f"# header\n/ok/ @alice\n{line}\n"

    with pytest.raises(CheckError) as raised:
        parse_codeowners(text, ".github/CODEOWNERS")

    assert f".github/CODEOWNERS:3: {message}" in str(raised.value)


def test_every_invalid_line_is_reported_at_once():
    with pytest.raises(CheckError) as raised:
        parse_codeowners("!a @x\n/ok/ @y\n[b] @z\n", "CODEOWNERS")

    assert "CODEOWNERS:1:" in str(raised.value)
    assert "CODEOWNERS:3:" in str(raised.value)


def test_lookup_prefers_github_folder_then_root_then_docs():
    files = {
        "CODEOWNERS": "* @root\n",
        "docs/CODEOWNERS": "* @docs\n",
        ".github/CODEOWNERS": "* @github\n",
    }

    assert find_codeowners(files.get)[0] == ".github/CODEOWNERS"
    del files[".github/CODEOWNERS"]
    assert find_codeowners(files.get)[0] == "CODEOWNERS"
    del files["CODEOWNERS"]
    assert find_codeowners(files.get)[0] == "docs/CODEOWNERS"


def test_lookup_without_file_is_error():
    with pytest.raises(CheckError) as raised:
        find_codeowners({}.get)

    assert str(raised.value) == (
        "no CODEOWNERS file found; looked for .github/CODEOWNERS, CODEOWNERS, "
        "docs/CODEOWNERS"
    )
