"""Find every import in a module's syntax tree, resolved to absolute module names.

Covers `import`, `from ... import`, relative imports, imports nested in functions,
classes or `if TYPE_CHECKING:` blocks, `importlib.import_module("...")` and
`__import__("...")` with literal names, and attribute use of an imported module
(`md._private`). Nothing is imported or executed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

IMPORT = "import"
FROM_IMPORT = "from-import"
DYNAMIC_IMPORT = "dynamic import"
ATTRIBUTE = "attribute"

_IMPORTLIB_FUNCTIONS = ("import_module", "__import__")
# Nodes that contain statements; imports can only hide inside these.
_COMPOUND = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    ast.TryStar,
    ast.Match,
    ast.ExceptHandler,
    ast.match_case,
)


@dataclass(frozen=True)
class ImportedName:
    """One import found in a file.

    `module` is the absolute module imported ("" when a relative import climbs past
    the top-level package). `names` are the names taken from it by `from` imports
    and attribute use, and is empty for a plain module import.
    """

    line: int
    form: str
    module: str
    names: tuple[str, ...]
    beyond_top_level: bool = False

    def targets(self) -> list[str]:
        """Return every dotted name this import could bind: the module and its names."""
        found = [self.module] if self.module else []
        for name in self.names:
            found.append(f"{self.module}.{name}" if self.module else name)
        return found


def scan_tree(
    tree: ast.Module, module: str, is_package: bool, source: bytes, watched: str
) -> list[ImportedName]:
    """Return the imports in `tree`, the parsed `source` of dotted `module`.

    Every import statement is returned. Calls and attribute uses are searched only
    when they can matter: the source mentions `import_module` or `__import__`, or
    a name bound to a module of the `watched` package is followed by a dot outside
    an import statement. Skipping the full expression walk otherwise keeps the
    check fast, because walking every expression costs more than parsing.
    """
    package = module if is_package else module.rpartition(".")[0]
    visitor = _ImportVisitor(package)
    import_spans: list[tuple[int, int, int, int]] = []
    for node in _statements(tree.body):
        if isinstance(node, ast.Import | ast.ImportFrom):
            visitor.visit(node)
            end_line = node.end_lineno or node.lineno
            end_column = node.end_col_offset or 0
            import_spans.append((node.lineno, node.col_offset, end_line, end_column))
    watched_names = [
        name
        for name, target in visitor.module_names.items()
        if target == watched or target.startswith(watched + ".")
    ]
    needs_calls = b"import_module" in source or b"__import__" in source
    if needs_calls or _used_outside(watched_names, source, import_spans):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                visitor.record_call(node)
            elif isinstance(node, ast.Attribute):
                visitor.record_attribute(node)
    return visitor.found


def _statements(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Yield every statement, nested ones included, without visiting expressions."""
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, _COMPOUND):
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if children:
                    stack.extend(reversed(children))


def _used_outside(
    names: list[str], source: bytes, import_spans: list[tuple[int, int, int, int]]
) -> bool:
    """Tell whether any of `names` is followed by a dot outside import statements.

    `import_spans` holds (line, column, end line, end column) of each import.
    """
    if not names:
        return False
    if not source.isascii():
        # Identifiers may be spelled with other Unicode letters (NFKC): walk.
        return True
    alternatives = b"|".join(re.escape(name.encode()) for name in names)
    # A dot may follow after spaces, line breaks or comments inside brackets.
    pattern = re.compile(rb"\b(?:" + alternatives + rb")\s*(?:#[^\n]*\s*)*\.")
    for match in pattern.finditer(source):
        line = source.count(b"\n", 0, match.start()) + 1
        column = match.start() - (source.rfind(b"\n", 0, match.start()) + 1)
        position = (line, column)
        if not any(
            (start, start_column) <= position < (end, end_column)
            for start, start_column, end, end_column in import_spans
        ):
            return True
    return False


def resolve_relative(package: str, level: int, module: str | None) -> tuple[str, bool]:
    """Resolve a relative import; return the absolute name and whether it climbed
    past the top-level package (an ImportError at run time, still reported)."""
    parts = package.split(".") if package else []
    climbs = level - 1
    beyond = climbs > len(parts) - 1 if parts else True
    base = parts[: max(len(parts) - climbs, 0)]
    if module:
        base = [*base, *module.split(".")]
    return ".".join(base), beyond


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, package: str) -> None:
        self.package = package
        self.found: list[ImportedName] = []
        # Local names bound to importlib, to its functions, and to imported modules.
        self.importlib_names: set[str] = set()
        self.import_functions: set[str] = set()
        self.module_names: dict[str, str] = {}

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append(ImportedName(node.lineno, IMPORT, alias.name, ()))
            if alias.asname:
                self.module_names[alias.asname] = alias.name
            else:
                top = alias.name.partition(".")[0]
                self.module_names[top] = top
            if alias.name == "importlib" or alias.name.startswith("importlib."):
                self.importlib_names.add(alias.asname or "importlib")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        names = tuple(alias.name for alias in node.names)
        if node.level:
            module, beyond = resolve_relative(self.package, node.level, node.module)
        else:
            module, beyond = node.module or "", False
        self.found.append(ImportedName(node.lineno, FROM_IMPORT, module, names, beyond))
        for alias in node.names:
            bound = alias.asname or alias.name
            if module == "importlib" and alias.name in _IMPORTLIB_FUNCTIONS:
                self.import_functions.add(bound)
            elif alias.name != "*":
                # The name may be a submodule or an attribute; imports.py decides which.
                full = f"{module}.{alias.name}" if module else alias.name
                self.module_names[bound] = full

    def record_call(self, node: ast.Call) -> None:
        function = self._import_function(node.func)
        if function is not None:
            self._record_dynamic(node, function)

    def record_attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id in self.module_names:
            module = self.module_names[node.value.id]
            self.found.append(
                ImportedName(node.lineno, ATTRIBUTE, module, (node.attr,))
            )

    def _import_function(self, func: ast.expr) -> str | None:
        if isinstance(func, ast.Name):
            if func.id == "__import__":
                return "__import__"
            if func.id in self.import_functions:
                return "import_module"
        if (
            isinstance(func, ast.Attribute)
            and func.attr in _IMPORTLIB_FUNCTIONS
            and isinstance(func.value, ast.Name)
            and func.value.id in self.importlib_names | {"builtins"}
        ):
            return func.attr
        return None

    def _record_dynamic(self, node: ast.Call, function: str) -> None:
        name = _literal_argument(node, 0, "name")
        if name is None:
            # NOTE: a name built at run time cannot be checked without running it.
            return
        names: tuple[str, ...] = ()
        beyond = False
        if function == "import_module" and name.startswith("."):
            anchor = _literal_argument(node, 1, "package")
            if anchor is None:
                return
            level = len(name) - len(name.lstrip("."))
            name, beyond = resolve_relative(anchor, level, name.lstrip(".") or None)
        elif function == "__import__":
            names = _literal_strings(_argument(node, 3, "fromlist"))
            level = _argument(node, 4, "level")
            if isinstance(level, ast.Constant) and isinstance(level.value, int):
                if level.value > 0:
                    name, beyond = resolve_relative(self.package, level.value, name)
        self.found.append(
            ImportedName(node.lineno, DYNAMIC_IMPORT, name, names, beyond)
        )


def _argument(node: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(node.args) > position:
        return node.args[position]
    for item in node.keywords:
        if item.arg == keyword:
            return item.value
    return None


def _literal_argument(node: ast.Call, position: int, keyword: str) -> str | None:
    value = _argument(node, position, keyword)
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return value.value
    return None


def _literal_strings(value: ast.expr | None) -> tuple[str, ...]:
    if isinstance(value, ast.List | ast.Tuple):
        return tuple(
            item.value
            for item in value.elts
            if isinstance(item, ast.Constant) and isinstance(item.value, str)
        )
    return ()
