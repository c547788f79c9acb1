"""No SQL in worker/ is built from values: an AST scan of every f-string, `.format()`, `%` and
`+` that touches SQL text."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.reliability.credentials import ROOT


def test_sql_is_never_built_from_values() -> None:
    """f-strings, .format() and % in SQL may only splice module constants (column lists)."""
    sql_words = (
        "SELECT ",
        "INSERT ",
        "UPDATE ",
        "DELETE ",
        " WHERE ",
        "VALUES",
        "CREATE ",
        "ALTER ",
    )
    offenders: list[str] = []
    checked = 0
    for path in sorted((ROOT / "worker").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        constants = _module_string_constants(tree)

        def is_sql(node: ast.AST) -> bool:
            text = " ".join(
                part.value
                for part in ast.walk(node)
                if isinstance(part, ast.Constant) and isinstance(part.value, str)
            ).upper()
            return any(word in text for word in sql_words)

        def where(node: ast.AST, path: Path = path) -> str:
            return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"

        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr) and is_sql(node):
                checked += 1
                for value in node.values:
                    if isinstance(value, ast.FormattedValue) and not (
                        isinstance(value.value, ast.Name) and value.value.id in constants
                    ):
                        offenders.append(
                            f"{where(node)}: f-string splices {ast.unparse(value.value)}"
                        )
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
                and is_sql(node.func.value)
            ):
                offenders.append(f"{where(node)}: str.format() on SQL")
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and is_sql(node.left):
                offenders.append(f"{where(node)}: % formatting of SQL")
            elif (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Add)
                and is_sql(node)
                and not all(_is_constant(side, constants) for side in (node.left, node.right))
            ):
                offenders.append(f"{where(node)}: SQL concatenated with a value")
    assert checked >= 3, "expected the constant column-list f-strings of store.py"
    assert not offenders, "\n".join(offenders)


def _is_constant(node: ast.AST, constants: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return node.id in constants
    if isinstance(node, ast.BinOp):
        return _is_constant(node.left, constants) and _is_constant(node.right, constants)
    return False


def _module_string_constants(tree: ast.Module) -> set[str]:
    """Module-level names bound once to a string built only from literals and such names."""
    names: set[str] = set()
    assigned: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            assigned[node.id] = assigned.get(node.id, 0) + 1
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if not isinstance(target, ast.Name) or value is None or assigned.get(target.id) != 1:
            continue
        if _literal_string(value, names):
            names.add(target.id)
    return names


def _literal_string(node: ast.AST, names: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, ast.JoinedStr):
        return all(
            isinstance(v, ast.Constant)
            or (isinstance(v, ast.FormattedValue) and _literal_string(v.value, names))
            for v in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal_string(node.left, names) and _literal_string(node.right, names)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "join"
        and isinstance(node.func.value, ast.Constant)
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Tuple | ast.List)
    ):
        return all(_literal_string(e, names) for e in node.args[0].elts)
    return False
