"""Validation of the [tool.check-boundaries] table."""

from __future__ import annotations

import pytest
from boundaries.config import load_config
from boundaries.errors import CheckError
from boundary_repos import CONFIG


def test_valid_config_loads():
    config = load_config(CONFIG)

    assert config.frozen_teams == ("inference",)
    assert config.imports.provider == "packages/mlx_distributed"
    assert config.imports.public_modules == ("mlx_distributed.api",)
    assert config.teams_of_owner("@acme/inference") == {"inference"}
    assert config.teams_of_owner("@BOB") == {"training"}
    assert config.teams_of_email("Alice@Inference.example") == {"inference"}


def test_missing_table_is_error():
    with pytest.raises(CheckError) as raised:
        load_config('[project]\nname = "x"\n', "pyproject.toml")

    assert str(raised.value).startswith(
        "pyproject.toml: missing [tool.check-boundaries] table"
    )


def test_invalid_toml_names_the_file():
    with pytest.raises(CheckError) as raised:
        load_config("[tool\n", "pyproject.toml")

    assert str(raised.value).startswith("pyproject.toml: invalid TOML: ")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'frozen-teams = ["inference"]',
            'frozen-teams = ["inference"]\nfrozen = true',
            "tool.check-boundaries.frozen: unknown key; expected one of "
            "frozen-teams, teams, imports, exceptions",
        ),
        (
            'frozen-teams = ["inference"]',
            'frozen-teams = ["ops"]',
            "tool.check-boundaries.frozen-teams: unknown team 'ops'; "
            "known teams: inference, training",
        ),
        (
            'members = ["@alice"]',
            'members = ["alice"]',
            "tool.check-boundaries.teams.inference.members: 'alice' is not a "
            "GitHub handle (@name)",
        ),
        (
            'emails = ["bob@training.example"]',
            'emails = ["bob"]',
            "tool.check-boundaries.teams.training.emails: 'bob' is not an e-mail",
        ),
        (
            'github-team = "@acme/training"',
            'github-team = "acme/training"',
            "tool.check-boundaries.teams.training.github-team: 'acme/training' is "
            "not an @org/team name",
        ),
        (
            'provider = "packages/mlx_distributed"',
            "provider = 3",
            "tool.check-boundaries.imports.provider: expected the package's "
            "project folder",
        ),
        (
            'public-modules = ["mlx_distributed.api"]',
            'public-modules = ["mlx_distributed/api"]',
            "tool.check-boundaries.imports.public-modules: 'mlx_distributed/api' "
            "is not a dotted module name",
        ),
    ],
)
def test_invalid_value_names_the_key(old, new, message):
    text = CONFIG.replace(old, new)
    assert text != CONFIG

    with pytest.raises(CheckError) as raised:
        load_config(text, "pyproject.toml")

    assert message in str(raised.value)


def test_every_problem_is_reported_at_once():
    text = CONFIG.replace('members = ["@alice"]', 'members = ["alice"]').replace(
        'emails = ["bob@training.example"]', 'emails = ["bob"]'
    )

    with pytest.raises(CheckError) as raised:
        load_config(text, "pyproject.toml")

    assert "teams.inference.members" in str(raised.value)
    assert "teams.training.emails" in str(raised.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            'path = "/a/"',
            "tool.check-boundaries.exceptions[0].reason: expected a sentence",
        ),
        (
            'reason = "why"',
            "tool.check-boundaries.exceptions[0].path: expected a path pattern",
        ),
        (
            'path = "!/a/"\nreason = "why"',
            "tool.check-boundaries.exceptions[0].path: pattern '!/a/': '!' negation",
        ),
        (
            'path = "/a/"\nreason = "why"\ncodes = ["BND999"]',
            "tool.check-boundaries.exceptions[0].codes: 'BND999' is not one of",
        ),
    ],
)
def test_invalid_exception_names_the_key(entry, message):
    text = CONFIG + f"\n[[tool.check-boundaries.exceptions]]\n{entry}\n"

    with pytest.raises(CheckError) as raised:
        load_config(text, "pyproject.toml")

    assert message in str(raised.value)


def test_repository_config_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = load_config((root / "pyproject.toml").read_text(), "pyproject.toml")

    assert config.frozen_teams == ("inference",)
    assert config.imports.provider == "packages/mlx_distributed"
    assert config.imports.consumer == "packages/mlx_distributed_training"
