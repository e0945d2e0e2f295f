"""The import check: the provider never imports the consumer, and the consumer
imports the provider only through its public API.

The provider's public API is the names in its `__init__.py` `__all__` plus the
modules listed in `public-modules`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from . import report
from .config import ImportRules
from .errors import CheckError
from .layout import (
    Package,
    SourceFile,
    load_package,
    module_exists,
    read_dunder_all,
)
from .report import Violation
from .scan import ATTRIBUTE, ImportedName, scan_tree


@dataclass(frozen=True)
class PublicApi:
    """The provider names and modules that the consumer may import."""

    package: str
    exported: frozenset[str]
    modules: frozenset[str]

    def allows_module(self, module: str) -> bool:
        if module == self.package or module in self.modules:
            return True
        parent, _, name = module.rpartition(".")
        return parent == self.package and name in self.exported

    def allows_name(self, module: str, name: str) -> bool:
        """Tell whether `from module import name` (or `module.name`) is public."""
        if name == "*" or self.allows_module(f"{module}.{name}"):
            return True
        if module == self.package:
            return name in self.exported
        is_private = name.startswith("_") and not name.startswith("__")
        return self.allows_module(module) and not is_private


def load_packages(repo: Path, rules: ImportRules) -> tuple[Package, Package]:
    provider = load_package(repo, rules.provider, "imports.provider")
    consumer = load_package(repo, rules.consumer, "imports.consumer")
    return provider, consumer


def load_public_api(provider: Package, rules: ImportRules) -> PublicApi:
    """Read the provider's `__all__` and check that the public modules exist."""
    init_file = provider.source_root / provider.import_name / "__init__.py"
    exported = read_dunder_all(init_file)
    missing = [
        module
        for module in rules.public_modules
        if not (
            module.startswith(provider.import_name + ".")
            and module_exists(provider, module)
        )
    ]
    if missing:
        raise CheckError(
            f"imports.public-modules: {', '.join(missing)} not found in "
            f"{provider.import_name}; list existing modules of the provider package"
        )
    return PublicApi(
        provider.import_name, frozenset(exported), frozenset(rules.public_modules)
    )


def check_imports(
    repo: Path, provider: Package, consumer: Package, api: PublicApi
) -> tuple[list[Violation], int]:
    """Check both packages; return the violations and how many files were read."""
    violations: list[Violation] = []
    count = 0
    provider_files = provider.python_files(repo)
    consumer_files = consumer.python_files(repo)
    for file in provider_files:
        for found in _imports_naming(file, consumer.import_name):
            violations.extend(_judge_provider(file, found, consumer.import_name))
    count += len(provider_files)
    for file in consumer_files:
        for found in _imports_naming(file, provider.import_name):
            violations.extend(_judge_consumer(file, found, api))
    count += len(consumer_files)
    return violations, count


def _imports_naming(file: SourceFile, other: str) -> list[ImportedName]:
    """Return the imports in `file` that may refer to the package named `other`.

    Any import that reaches `other` spells its top-level name somewhere in the
    file (also a relative import climbing past the top level), so a file whose
    ASCII text lacks it as a whole word is skipped without parsing. Files with
    non-ASCII bytes are always parsed, because Python folds some Unicode letters
    into ASCII identifiers (NFKC).
    """
    with open(file.path, "rb") as stream:
        data = stream.read()
    if data.isascii() and not _word_pattern(other).search(data):
        return []
    try:
        tree = ast.parse(data, filename=file.path)
    except SyntaxError as error:
        raise CheckError(
            f"{file.relative}:{error.lineno}: invalid Python ({error.msg}); the import "
            f"check cannot judge a file it cannot parse"
        ) from error
    found = scan_tree(tree, file.module, file.is_package, data, other)
    return [item for item in found if _reaches(item, other)]


_WORD_PATTERNS: dict[str, re.Pattern[bytes]] = {}


def _word_pattern(name: str) -> re.Pattern[bytes]:
    if name not in _WORD_PATTERNS:
        _WORD_PATTERNS[name] = re.compile(rb"\b" + re.escape(name.encode()) + rb"\b")
    return _WORD_PATTERNS[name]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _reaches(found: ImportedName, package: str) -> bool:
    return any(_within(target, package) for target in found.targets())


def _describe(found: ImportedName) -> str:
    if found.form == ATTRIBUTE:
        return f"attribute use {found.module}.{found.names[0]}"
    if found.names:
        names = ", ".join(found.names)
        return f"{found.form} of {names} from {found.module or '(top level)'}"
    return f"{found.form} of {found.module}"


def _judge_provider(
    file: SourceFile, found: ImportedName, consumer: str
) -> list[Violation]:
    if found.form == ATTRIBUTE:
        # The import that bound the module is reported already.
        return []
    climbed = " (relative import past the top-level package)"
    return [
        Violation(
            file.relative,
            found.line,
            report.PROVIDER_IMPORTS_CONSUMER,
            f"{_describe(found)}: the provider package must not import {consumer}"
            + (climbed if found.beyond_top_level else ""),
            {"import": found.targets()},
        )
    ]


def _judge_consumer(
    file: SourceFile, found: ImportedName, api: PublicApi
) -> list[Violation]:
    private: list[str] = []
    if found.form == ATTRIBUTE:
        # Attribute use of a private module was already reported at its import.
        if api.allows_module(found.module) and not api.allows_name(
            found.module, found.names[0]
        ):
            private.append(f"{found.module}.{found.names[0]}")
    elif found.names and (found.module == "" or _within(found.module, api.package)):
        for name in found.names:
            full = f"{found.module}.{name}" if found.module else name
            if found.module == "":
                if _within(full, api.package) and not api.allows_module(full):
                    private.append(full)
            elif not api.allows_name(found.module, name):
                private.append(full)
    elif not api.allows_module(found.module):
        private.append(found.module)
    return [
        Violation(
            file.relative,
            found.line,
            report.CONSUMER_IMPORTS_PRIVATE,
            f"{_describe(found)}: {name} is not in the public API of {api.package} "
            f"(its __all__ or imports.public-modules)",
            {"import": name},
        )
        for name in private
    ]
