"""Package layout: the Python files and module names of a workspace package, and
the names in the provider's `__all__`.

Everything here reads and parses files. Nothing is imported or executed.
"""

from __future__ import annotations

import ast
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckError

_SKIPPED_FOLDERS = {"__pycache__", ".venv", "build", "dist", ".git", ".tox"}


@dataclass(frozen=True)
class Package:
    """One workspace member: its project folder, distribution and import name."""

    folder: str
    project: dict
    project_text: str
    distribution: str
    import_name: str
    source_root: Path

    @property
    def pyproject(self) -> str:
        return f"{self.folder}/pyproject.toml"

    def python_files(self, repo: Path) -> list[SourceFile]:
        """Return every .py file of the import package, in a stable order.

        Plain strings and os.walk keep this cheap for thousands of files.
        """
        package_dir = os.path.join(self.source_root, self.import_name)
        root_length = len(str(self.source_root)) + 1
        repo_length = len(str(repo)) + 1
        found: list[SourceFile] = []
        for folder, subfolders, files in os.walk(package_dir):
            subfolders[:] = sorted(d for d in subfolders if d not in _SKIPPED_FOLDERS)
            package = folder[root_length:].replace(os.sep, ".")
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                is_package = name == "__init__.py"
                module = package if is_package else f"{package}.{name[:-3]}"
                relative = path[repo_length:].replace(os.sep, "/")
                found.append(SourceFile(path, relative, module, is_package))
        return found


@dataclass(frozen=True)
class SourceFile:
    """One Python file of a package."""

    path: str
    relative: str
    module: str
    is_package: bool


def normalize_distribution(name: str) -> str:
    """Normalize a distribution name the way PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def load_package(repo: Path, folder: str, key: str) -> Package:
    """Read the package in `folder`; `key` names the config key that pointed there."""
    project_file = repo / folder / "pyproject.toml"
    try:
        text = project_file.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise CheckError(
            f"{key}: {folder}/pyproject.toml not found; point {key} at a project folder"
        ) from error
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CheckError(f"{folder}/pyproject.toml: invalid TOML: {error}") from error
    name = document.get("project", {}).get("name")
    if not isinstance(name, str):
        raise CheckError(f"{folder}/pyproject.toml: missing [project].name")
    import_name = normalize_distribution(name).replace("-", "_")
    for candidate in (repo / folder / "src", repo / folder):
        if (candidate / import_name / "__init__.py").is_file():
            return Package(folder, document, text, name, import_name, candidate)
    raise CheckError(
        f"{key}: no package {import_name!r} (from [project].name {name!r}) under "
        f"{folder}/src or {folder}; expected {folder}/src/{import_name}/__init__.py"
    )


def read_dunder_all(init_file: Path) -> tuple[str, ...]:
    """Return the names listed in `__all__` of `init_file`, read without importing it.

    Supports `__all__ = [...]` or `(...)`, annotated assignment, `+=`, `.append()`
    and `.extend()` with string literals. Anything else raises a CheckError because
    the public API must be readable statically.
    """
    source = init_file.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=str(init_file))
    except SyntaxError as error:
        raise CheckError(
            f"{init_file}:{error.lineno}: invalid Python: {error.msg}"
        ) from error
    names: list[str] = []
    for node in tree.body:
        value: ast.expr | None = None
        if isinstance(node, ast.Assign) and _names_all(*node.targets):
            names.clear()
            value = node.value
        elif isinstance(node, ast.AnnAssign) and _names_all(node.target):
            names.clear()
            value = node.value
        elif isinstance(node, ast.AugAssign) and _names_all(node.target):
            value = node.value
        elif isinstance(node, ast.Expr) and (call := _all_method_call(node.value)):
            method = call.func.attr  # type: ignore[attr-defined]
            value = ast.List(elts=call.args) if method == "append" else call.args[0]
        else:
            continue
        names.extend(_literal_strings(value, init_file, node.lineno))
    return tuple(names)


def _names_all(*targets: ast.expr) -> bool:
    return any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)


def _all_method_call(value: ast.expr) -> ast.Call | None:
    """Return `value` if it is `__all__.append(x)` or `__all__.extend(x)`."""
    if (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr in ("append", "extend")
        and isinstance(value.func.value, ast.Name)
        and value.func.value.id == "__all__"
        and len(value.args) == 1
    ):
        return value
    return None


def _literal_strings(value: ast.expr | None, file: Path, line: int) -> list[str]:
    if isinstance(value, ast.List | ast.Tuple) and all(
        isinstance(item, ast.Constant) and isinstance(item.value, str)
        for item in value.elts
    ):
        return [item.value for item in value.elts]  # type: ignore[union-attr]
    raise CheckError(
        f"{file}:{line}: __all__ must be a list or tuple of string literals so the "
        f"public API can be read without importing the package"
    )


def module_exists(package: Package, module: str) -> bool:
    """Tell whether dotted `module` is a file or package inside `package`."""
    path = package.source_root.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()
