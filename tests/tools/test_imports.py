"""The import check: forbidden import forms, the public API and declared deps."""

from __future__ import annotations

import shutil

import pytest
from boundary_repos import CONSUMER_PYPROJECT, PROVIDER_PYPROJECT

PROVIDER_DIR = "packages/mlx_distributed/src/mlx_distributed"
CONSUMER_DIR = "packages/mlx_distributed_training/src/mlx_distributed_training"
PREAMBLE = '"""A module."""\n\nimport os\n\n'

PROVIDER_FORMS = {
    "import": "import mlx_distributed_training\n",
    "import_submodule_as": "import mlx_distributed_training.trainer as trainer\n",
    "from_import": "from mlx_distributed_training import trainer\n",
    "from_submodule_import": "from mlx_distributed_training.trainer import run\n",
    "relative_past_top_module": "from ..mlx_distributed_training import trainer\n",
    "relative_past_top_name": "from .. import mlx_distributed_training\n",
    "inside_function": "def load():\n    import mlx_distributed_training\n",
    "type_checking": (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from mlx_distributed_training.trainer import Trainer\n"
    ),
    "import_module": (
        "import importlib\n"
        "importlib.import_module('mlx_distributed_training.trainer')\n"
    ),
    "import_module_alias": (
        "from importlib import import_module as load\n"
        "load('mlx_distributed_training')\n"
    ),
    "import_module_relative": (
        "import importlib as il\n"
        "il.import_module('.trainer', package='mlx_distributed_training')\n"
    ),
    "dunder_import": "__import__('mlx_distributed_training.trainer')\n",
    "dunder_import_fromlist": "__import__('os', fromlist=['x'])\n"
    "__import__('mlx_distributed_training', fromlist=['trainer'])\n",
    "fullwidth_identifier": "import \uff4dlx_distributed_training\n",
}


def _last_line(source: str) -> int:
    return (PREAMBLE + source).rstrip("\n").count("\n") + 1


@pytest.mark.parametrize("form", sorted(PROVIDER_FORMS))
def test_provider_import_of_consumer_is_violation(monorepo, run_check, form):
    source = PROVIDER_FORMS[form]
    monorepo.write(f"{PROVIDER_DIR}/bridge.py", PREAMBLE + source)

    status, out, _ = run_check(monorepo, "imports")

    assert status == 1, out
    lines = out.splitlines()
    assert len(lines) == 2, out
    expected = f"{PROVIDER_DIR}/bridge.py:{_last_line(source)}: BND200 "
    assert lines[0].startswith(expected), out
    assert "the provider package must not import mlx_distributed_training" in lines[0]


def test_provider_import_of_lookalike_name_is_clean(monorepo, run_check):
    monorepo.write(
        f"{PROVIDER_DIR}/bridge.py",
        "import mlx_distributed_trainingkit\nNAME = 'mlx_distributed_training'\n",
    )

    status, out, _ = run_check(monorepo, "imports")

    assert status == 0, out


def test_provider_attribute_use_adds_no_finding(monorepo, run_check):
    monorepo.write(
        f"{PROVIDER_DIR}/bridge.py",
        "import mlx_distributed_training as training\n\ntraining.trainer.run()\n",
    )

    status, out, _ = run_check(monorepo, "imports")

    assert status == 1
    assert out.count(" BND200 ") == 1, out
    assert f"{PROVIDER_DIR}/bridge.py:1: BND200 " in out


def test_relative_import_past_top_is_marked(monorepo, run_check):
    monorepo.write(
        f"{PROVIDER_DIR}/bridge.py", PROVIDER_FORMS["relative_past_top_name"]
    )

    _, out, _ = run_check(monorepo, "imports")

    assert "(relative import past the top-level package)" in out


CONSUMER_ALLOWED = {
    "exported_name": "from mlx_distributed import load_model\n",
    "top_package": "import mlx_distributed\nmlx_distributed.load_model('x')\n",
    "public_module": "import mlx_distributed.api\n",
    "from_public_module": "from mlx_distributed.api import VERSION\n",
    "public_module_by_name": "from mlx_distributed import api\n",
    "star": "from mlx_distributed import *\n",
    "import_module_public": (
        "import importlib\nimportlib.import_module('mlx_distributed.api')\n"
    ),
    "own_package_relative": "from . import trainer\n",
}


@pytest.mark.parametrize("form", sorted(CONSUMER_ALLOWED))
def test_consumer_public_import_is_clean(monorepo, run_check, form):
    monorepo.write(f"{CONSUMER_DIR}/adapter.py", CONSUMER_ALLOWED[form])

    status, out, _ = run_check(monorepo, "imports")

    assert status == 0, out


CONSUMER_PRIVATE = {
    "private_module": ("import mlx_distributed._cache\n", "mlx_distributed._cache"),
    "private_module_as": (
        "import mlx_distributed.model_loading as ml\n",
        "mlx_distributed.model_loading",
    ),
    "from_private_module": (
        "from mlx_distributed.model_loading import load_model\n",
        "mlx_distributed.model_loading.load_model",
    ),
    "unexported_name": (
        "from mlx_distributed import model_loading\n",
        "mlx_distributed.model_loading",
    ),
    "private_name_of_public_module": (
        "from mlx_distributed.api import _secret\n",
        "mlx_distributed.api._secret",
    ),
    "attribute_of_package": (
        "import mlx_distributed as md\n\nmd._cache.SIZE\n",
        "mlx_distributed._cache",
    ),
    "import_module_private": (
        "import importlib\nimportlib.import_module('mlx_distributed._cache')\n",
        "mlx_distributed._cache",
    ),
    "dunder_import_private": (
        "__import__('mlx_distributed.model_loading')\n",
        "mlx_distributed.model_loading",
    ),
    "attribute_on_import_line": (
        "import mlx_distributed as md; md._cache.SIZE\n",
        "mlx_distributed._cache",
    ),
    "inside_function": (
        "def run():\n    from mlx_distributed._cache import SIZE\n",
        "mlx_distributed._cache.SIZE",
    ),
}


@pytest.mark.parametrize("form", sorted(CONSUMER_PRIVATE))
def test_consumer_private_import_is_violation(monorepo, run_check, form):
    source, name = CONSUMER_PRIVATE[form]
    monorepo.write(f"{CONSUMER_DIR}/adapter.py", source)

    status, out, _ = run_check(monorepo, "imports")

    assert status == 1, out
    first = out.splitlines()[0]
    line = source.rstrip("\n").count("\n") + 1
    assert first.startswith(f"{CONSUMER_DIR}/adapter.py:{line}: BND201 "), out
    assert f": {name} is not in the public API of mlx_distributed" in first


def test_exported_names_follow_dunder_all(monorepo, run_check):
    monorepo.write(
        f"{PROVIDER_DIR}/__init__.py",
        "from mlx_distributed._cache import SIZE\n"
        "__all__ = ['load_model']\n__all__ += ['SIZE']\n",
    )
    monorepo.write(f"{CONSUMER_DIR}/adapter.py", "from mlx_distributed import SIZE\n")

    status, out, _ = run_check(monorepo, "imports")

    assert status == 0, out


def test_dunder_all_append_and_extend_are_read(monorepo, run_check):
    monorepo.write(
        f"{PROVIDER_DIR}/__init__.py",
        "__all__ = ('load_model',)\n"
        "__all__.append('SIZE')\n__all__.extend(['VERSION'])\n",
    )
    monorepo.write(
        f"{CONSUMER_DIR}/adapter.py",
        "from mlx_distributed import SIZE, VERSION, load_model\n",
    )

    status, out, _ = run_check(monorepo, "imports")

    assert status == 0, out


def test_computed_dunder_all_is_error(monorepo, run_check):
    monorepo.write(f"{PROVIDER_DIR}/__init__.py", "__all__ = sorted(['a'])\n")

    status, _, err = run_check(monorepo, "imports")

    assert status == 2
    assert "__init__.py:1: __all__ must be a list or tuple of string literals" in err


def test_missing_public_module_is_error(monorepo, run_check):
    (monorepo.root / PROVIDER_DIR / "api.py").unlink()

    status, _, err = run_check(monorepo, "imports")

    assert status == 2
    assert "imports.public-modules: mlx_distributed.api not found" in err


def test_unparsable_file_is_error(monorepo, run_check):
    source = "import mlx_distributed_training\ndef (:\n"
    monorepo.write(f"{PROVIDER_DIR}/broken.py", source)

    status, _, err = run_check(monorepo, "imports")

    assert status == 2
    assert f"{PROVIDER_DIR}/broken.py:2: invalid Python" in err


def test_consumer_without_provider_dependency_is_violation(monorepo, run_check):
    monorepo.write(
        "packages/mlx_distributed_training/pyproject.toml",
        CONSUMER_PYPROJECT.replace('"mlx-distributed", ', ""),
    )

    status, out, _ = run_check(monorepo, "imports")

    assert status == 1
    expected = (
        "packages/mlx_distributed_training/pyproject.toml:4: BND300 "
        "[project].dependencies does not declare mlx-distributed"
    )
    assert out.startswith(expected), out


@pytest.mark.parametrize(
    "table",
    [
        'dependencies = ["numpy", "mlx_distributed_training>=0.1"]',
        '[project.optional-dependencies]\ntrain = ["Mlx-Distributed.Training"]',
        '[dependency-groups]\ndev = ["mlx-distributed-training"]',
        "[tool.uv.sources]\nmlx-distributed-training = { workspace = true }",
    ],
)
def test_provider_dependency_on_consumer_is_violation(monorepo, run_check, table):
    text = PROVIDER_PYPROJECT
    if table.startswith("dependencies"):
        text = text.replace('dependencies = ["numpy>=1.26"]', table)
    else:
        text += "\n" + table + "\n"
    monorepo.write("packages/mlx_distributed/pyproject.toml", text)

    status, out, _ = run_check(monorepo, "imports")

    assert status == 1, out
    assert out.startswith("packages/mlx_distributed/pyproject.toml:"), out
    assert " BND301 " in out.splitlines()[0]
    assert "must not depend on mlx-distributed-training" in out


def test_exception_sanctions_import(monorepo, run_check):
    monorepo.write(f"{CONSUMER_DIR}/adapter.py", "import mlx_distributed._cache\n")
    pyproject = (monorepo.root / "pyproject.toml").read_text()
    monorepo.write(
        "pyproject.toml",
        pyproject + "\n[[tool.check-boundaries.exceptions]]\n"
        f'path = "/{CONSUMER_DIR}/adapter.py"\ncodes = ["BND201"]\n'
        'reason = "The cache size has no public accessor yet."\n',
    )

    status, out, _ = run_check(monorepo, "imports")

    assert status == 0, out
    assert "1 sanctioned by exceptions" in out


def test_exception_limited_to_other_code_does_not_apply(monorepo, run_check):
    monorepo.write(f"{CONSUMER_DIR}/adapter.py", "import mlx_distributed._cache\n")
    pyproject = (monorepo.root / "pyproject.toml").read_text()
    monorepo.write(
        "pyproject.toml",
        pyproject + "\n[[tool.check-boundaries.exceptions]]\n"
        f'path = "/{CONSUMER_DIR}/adapter.py"\ncodes = ["BND100"]\n'
        'reason = "Training may edit this adapter."\n',
    )

    status, out, _ = run_check(monorepo, "imports")

    assert status == 1
    assert " BND201 " in out


def test_import_check_needs_no_git(monorepo, run_check, tmp_path):
    copy = tmp_path / "plain"
    shutil.copytree(monorepo.root, copy, ignore=shutil.ignore_patterns(".git"))
    (copy / CONSUMER_DIR / "adapter.py").write_text("import mlx_distributed._cache\n")

    status, out, _ = run_check(copy, "imports")

    assert status == 1
    assert f"{CONSUMER_DIR}/adapter.py:1: BND201 " in out
