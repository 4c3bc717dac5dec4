"""The package's structure stays as written: short functions, and a README map that is true."""

from __future__ import annotations

import ast
import re
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


def _where_things_are() -> list[list[str]]:
    """The rows of the README's "Where things are" table, as cells."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in row] for row in rows[1:]]


def test_where_things_are_names_modules_and_names_that_exist() -> None:
    rows = _where_things_are()
    assert len(rows) >= 13
    wrong = []
    for practice, modules, page in rows:
        link = re.search(r"\]\(([^)]+)\)", page)
        if link is None or not (ROOT / link.group(1)).is_file():
            wrong.append(f"{practice}: page {page}")
        for path, named in re.findall(r"`([\w/.-]+)`(?: \(`(\w+)`\))?", modules):
            if not (ROOT / path).exists():
                wrong.append(f"{practice}: no {path}")
            elif named and not re.search(rf"\b(def|class) {named}\b", (ROOT / path).read_text()):
                wrong.append(f"{practice}: no {named} in {path}")
    assert not wrong, wrong
