"""The change check on real git repositories: who may change which paths."""

from __future__ import annotations

import subprocess
from pathlib import Path

from boundary_repos import (
    ALICE,
    BOB,
    CONFIG,
    INFERENCE_FILE,
    MALLORY,
    TRAINING_FILE,
    GitRepo,
    make_monorepo,
)


def changes(run_check, repo: GitRepo, *extra: str) -> tuple[int, str, str]:
    return run_check(repo, "changes", "--base", "main", *extra)


def test_training_edit_of_inference_file_is_violation(monorepo, run_check):
    monorepo.write(INFERENCE_FILE, "def load_model(path):\n    return None\n")
    sha = monorepo.commit("Tweak the loader", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    first = out.splitlines()[0]
    assert first.startswith(f"{INFERENCE_FILE}:1: BND100 modified path owned by ")
    assert "(team inference, frozen; .github/CODEOWNERS at " in first
    assert f"{sha[:10]} by bob@training.example" in first


def test_training_delete_of_inference_file_is_violation(monorepo, run_check):
    (monorepo.root / INFERENCE_FILE).unlink()
    monorepo.commit("Remove the loader", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    assert f"{INFERENCE_FILE}:1: BND100 deleted path owned by @acme/inference" in out


def test_training_rename_out_of_inference_is_violation(monorepo, run_check):
    moved = "packages/mlx_distributed_training/src/mlx_distributed_training/load.py"
    monorepo.git("mv", INFERENCE_FILE, moved, author=BOB)
    monorepo.commit("Move the loader into training", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    assert f"{INFERENCE_FILE}:1: BND100 deleted path owned by @acme/inference" in out
    assert moved not in out


def test_training_symlink_into_inference_is_violation(monorepo, run_check):
    link = "packages/mlx_distributed_training/src/mlx_distributed_training/shared"
    monorepo.symlink(link, "../../../mlx_distributed/src/mlx_distributed")
    monorepo.commit("Link the inference sources", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    assert f"{link}:1: BND101 symlink to " in out
    assert "points into packages/mlx_distributed/src/mlx_distributed" in out


def test_symlink_outside_the_repository_is_clean(monorepo, run_check):
    monorepo.symlink("tools/python", "/usr/bin/python3")
    monorepo.commit("Link a python", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 0, out


def test_symlink_through_another_symlink_is_followed(monorepo, run_check):
    monorepo.symlink("links/inference", "../packages/mlx_distributed")
    monorepo.commit("Link the inference package", ALICE)
    monorepo.git("checkout", "-q", "main")
    monorepo.git("merge", "-q", "--ff-only", "feature")
    monorepo.git("checkout", "-q", "feature")
    monorepo.symlink("docs/loader.py", "../links/inference/src/mlx_distributed/api.py")
    monorepo.commit("Link the loader for the docs", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    assert "docs/loader.py:1: BND101" in out
    assert "points into packages/mlx_distributed/src/mlx_distributed/api.py" in out


def test_inference_edit_of_own_package_is_clean(monorepo, run_check):
    monorepo.write(INFERENCE_FILE, "def load_model(path):\n    return None\n")
    monorepo.commit("Tweak the loader", ALICE)

    status, out, _ = changes(run_check, monorepo)

    assert status == 0, out
    assert out.startswith("0 violations; checked 1 changed path in 1 commit")


def test_shared_file_edit_by_training_is_clean(monorepo, run_check):
    monorepo.write("uv.lock", "version = 2\n")
    monorepo.commit("Relock", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 0, out


def test_shared_file_edit_by_inference_is_clean(monorepo, run_check):
    monorepo.write("uv.lock", "version = 2\n")
    monorepo.commit("Relock", ALICE)

    status, out, _ = changes(run_check, monorepo)

    assert status == 0, out


def test_training_edit_of_own_package_is_clean(monorepo, run_check):
    monorepo.write(TRAINING_FILE, "from mlx_distributed import load_model\nX = 1\n")
    monorepo.commit("Extend the trainer", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 0, out


def test_edit_then_revert_of_inference_file_is_clean(monorepo, run_check):
    original = (monorepo.root / INFERENCE_FILE).read_text()
    monorepo.write(INFERENCE_FILE, "BROKEN = True\n")
    monorepo.commit("Try a change", BOB)
    monorepo.write(INFERENCE_FILE, original)
    monorepo.commit("Revert the change", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 0, out
    assert "0 changed paths in 2 commits" in out


def test_mode_change_of_inference_file_is_violation(monorepo, run_check):
    (monorepo.root / INFERENCE_FILE).chmod(0o755)
    monorepo.commit("Make the loader executable", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    assert f"{INFERENCE_FILE}:1: BND100 modified path" in out


def test_type_change_to_symlink_is_violation(monorepo, run_check):
    (monorepo.root / INFERENCE_FILE).unlink()
    monorepo.symlink(INFERENCE_FILE, "api.py")
    monorepo.commit("Replace the loader with a link", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    assert f"{INFERENCE_FILE}:1: BND100 type changed path" in out


def test_author_in_no_team_is_violation(monorepo, run_check):
    monorepo.write(INFERENCE_FILE, "X = 1\n")
    monorepo.commit("Drive-by edit", MALLORY)

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    assert "by mallory@elsewhere.example" in out


def test_each_path_needs_an_owning_author(monorepo, run_check):
    monorepo.write(INFERENCE_FILE, "X = 1\n")
    monorepo.commit("Inference edit", ALICE)
    api = "packages/mlx_distributed/src/mlx_distributed/api.py"
    monorepo.write(api, "VERSION = 2\n")
    monorepo.commit("Training edit", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    assert f"{api}:1: BND100" in out
    assert INFERENCE_FILE not in out


def test_merge_of_main_into_branch_is_clean(monorepo, run_check):
    monorepo.write(TRAINING_FILE, "X = 1\n")
    monorepo.commit("Extend the trainer", BOB)
    monorepo.git("checkout", "-q", "main")
    monorepo.write(INFERENCE_FILE, "X = 2\n")
    monorepo.commit("Inference edit on main", ALICE)
    monorepo.git("checkout", "-q", "feature")
    monorepo.git("merge", "-q", "--no-edit", "main", author=BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 0, out
    assert "1 changed path in 2 commits" in out


def test_edit_inside_merge_commit_is_violation(monorepo, run_check):
    monorepo.write(TRAINING_FILE, "X = 1\n")
    monorepo.commit("Extend the trainer", BOB)
    monorepo.git("checkout", "-q", "main")
    monorepo.write("uv.lock", "version = 3\n")
    monorepo.commit("Relock on main", ALICE)
    monorepo.git("checkout", "-q", "feature")
    monorepo.git("merge", "-q", "--no-commit", "main", author=BOB)
    monorepo.write(INFERENCE_FILE, "X = 3\n")
    monorepo.git("add", "-A", author=BOB)
    monorepo.git("commit", "-q", "--no-edit", author=BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    assert f"{INFERENCE_FILE}:1: BND100" in out


def test_team_option_overrides_authors(monorepo, run_check):
    monorepo.write(INFERENCE_FILE, "X = 1\n")
    monorepo.commit("Inference edit", ALICE)

    status, out, _ = changes(run_check, monorepo, "--team", "training")

    assert status == 1
    assert "the change is from team training" in out


def test_unknown_team_option_is_usage_error(monorepo, run_check):
    status, _, err = changes(run_check, monorepo, "--team", "ops")

    assert status == 2
    assert "--team 'ops': unknown team; known teams: inference, training" in err


def test_codeowners_edit_in_same_change_grants_nothing(monorepo, run_check):
    monorepo.write(".github/CODEOWNERS", "* @acme/training\n")
    monorepo.write(INFERENCE_FILE, "X = 1\n")
    monorepo.commit("Take over the loader", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    assert f"{INFERENCE_FILE}:1: BND100" in out


def test_team_edit_in_same_change_grants_nothing(monorepo, run_check):
    joined = CONFIG.replace(
        'emails = ["alice@inference.example"]',
        'emails = ["alice@inference.example", "bob@training.example"]',
    )
    assert joined != CONFIG
    monorepo.write("pyproject.toml", joined)
    monorepo.write(INFERENCE_FILE, "X = 1\n")
    monorepo.commit("Join inference and edit the loader", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    assert f"{INFERENCE_FILE}:1: BND100" in out


def test_exception_sanctions_violation(monorepo, run_check):
    exception = (
        '\n[[tool.check-boundaries.exceptions]]\npath = "/packages/'
        'mlx_distributed/src/mlx_distributed/model_loading.py"\n'
        'reason = "Training fixes the loader until inference takes it back."\n'
    )
    monorepo.write("pyproject.toml", CONFIG + exception)
    monorepo.commit("Sanction the loader edit", ALICE)
    monorepo.git("checkout", "-q", "main")
    monorepo.git("merge", "-q", "--ff-only", "feature")
    monorepo.git("checkout", "-q", "feature")
    monorepo.write(INFERENCE_FILE, "X = 1\n")
    monorepo.commit("Fix the loader", BOB)

    status, out, _ = changes(run_check, monorepo)

    assert status == 0, out
    assert "0 violations, 1 sanctioned by exceptions" in out


def test_exception_matching_no_file_is_violation(monorepo, run_check):
    exception = (
        "\n[[tool.check-boundaries.exceptions]]\n"
        'path = "/packages/mlx_distributed/src/mlx_distributed/gone.py"\n'
        'reason = "A file that was removed."\n'
    )
    monorepo.write("pyproject.toml", CONFIG + exception)
    monorepo.commit("Sanction a missing file", ALICE)
    monorepo.git("checkout", "-q", "main")
    monorepo.git("merge", "-q", "--ff-only", "feature")
    monorepo.git("checkout", "-q", "feature")

    status, out, _ = changes(run_check, monorepo)

    assert status == 1
    line = CONFIG.count("\n") + 3
    assert f"pyproject.toml:{line}: BND400 exception 0 (path " in out
    assert "matches no file any more" in out


def test_unknown_base_ref_is_error(monorepo, run_check):
    status, _, err = run_check(monorepo, "changes", "--base", "origin/nope")

    assert status == 2
    assert "unknown ref 'origin/nope': fetch it first" in err


def test_depth_one_clone_is_error(monorepo, run_check, tmp_path: Path):
    monorepo.write(TRAINING_FILE, "X = 1\n")
    monorepo.commit("Extend the trainer", BOB)
    monorepo.write(TRAINING_FILE, "X = 2\n")
    monorepo.commit("Extend the trainer again", BOB)
    clone = tmp_path / "clone"
    subprocess.run(
        [
            "git",
            "clone",
            "-q",
            "--depth",
            "1",
            "--no-single-branch",
            "--branch",
            "feature",
            f"file://{monorepo.root}",
            str(clone),
        ],
        check=True,
    )

    status, out, err = run_check(clone, "changes")

    assert status == 2, out
    assert "no merge base between" in err
    assert "this clone is shallow: run 'git fetch --unshallow'" in err


def test_default_base_is_origin_main(tmp_path: Path, run_check):
    upstream = make_monorepo(tmp_path / "upstream")
    upstream.git("checkout", "-q", "main")
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", f"file://{upstream.root}", str(clone)], check=True
    )
    work = GitRepo(clone)
    work.branch("change")
    work.write(INFERENCE_FILE, "X = 1\n")
    work.commit("Edit the loader", BOB)

    status, out, _ = run_check(work, "changes")

    assert status == 1
    assert f"{INFERENCE_FILE}:1: BND100" in out


def test_invalid_codeowners_line_is_error(monorepo, run_check):
    monorepo.write(".github/CODEOWNERS", "/docs/ @acme/inference\n!/docs/x @bob\n")
    monorepo.commit("Break CODEOWNERS", ALICE)
    monorepo.git("checkout", "-q", "main")
    monorepo.git("merge", "-q", "--ff-only", "feature")

    status, _, err = run_check(monorepo, "changes", "--base", "main")

    assert status == 2
    assert ".github/CODEOWNERS at " in err
    assert ":2: pattern '!/docs/x': '!' negation is not supported" in err


def test_codeowners_owner_in_no_team_is_error(monorepo, run_check):
    monorepo.write(".github/CODEOWNERS", "/packages/ @acme/ops\n")
    monorepo.commit("Hand packages to ops", ALICE)
    monorepo.git("checkout", "-q", "main")
    monorepo.git("merge", "-q", "--ff-only", "feature")

    status, _, err = run_check(monorepo, "changes", "--base", "main")

    assert status == 2
    assert ":1: owner @acme/ops belongs to no team" in err
