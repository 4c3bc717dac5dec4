"""The package's functions stay short: none over 60 lines (issue 21's goal)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "graphs", "tools", "memory", "runs", "api")
MAX_LINES = 60


def _long_functions() -> dict[str, int]:
    """Every function or method in the packages over ``MAX_LINES``, by ``path::name``."""
    out: dict[str, int] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_LINES:
                        out[f"{path.relative_to(ROOT).as_posix()}::{node.name}"] = lines
    return out


def test_no_function_is_over_60_lines() -> None:
    found = _long_functions()
    assert not found, "functions over 60 lines (split them by meaning): " + ", ".join(
        f"{k} ({n} lines)" for k, n in sorted(found.items())
    )
