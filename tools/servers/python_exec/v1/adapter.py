"""python_exec 1.x: the model writes the code; charts and tables become their own events.

Data flows to code, not through the model: the results of the turn's earlier tool steps are
written into the jail as ``data.json`` and loaded as ``data`` by a few lines put before the
model's code; the first list of records among them is also ``rows``. The model is told their
shape (keys and one example) and writes code over them, so a chart of the repositories just
listed never depends on the model retyping names and numbers.

A table is asked for by name: when the step says "table", the prelude defines
``show_table(header, rows)`` (it writes ``table.csv``, which the sandbox turns into a ``table``
event) and the model is told to call it. A small model often prints the table instead; then
the printed lines, if they split into the same number of columns, become the table.
"""

from __future__ import annotations

import ast
import base64
import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from core.events import CodeBlockData, ImageData, TableData
from tools.adapter import Adapter, Ask, Step, Tell, Usage
from tools.gateway import ToolSpec

CODE_ARGS = """Write a short, complete Python 3 program for the step. Answer with JSON
{"code": "..."}. Only the standard library, numpy and matplotlib are installed (no pandas).
Define every variable you use, with the numbers given in the question. Print the results.
For a chart use matplotlib.pyplot (no show, no savefig). For a table, write it with the csv
module to a .csv file in the current directory, header row first. No network."""


TABLE_ARGS = """
The user wants a table: build `header` (a list of column names) and `rows` (a list of lists),
then call show_table(header, rows), which is already defined. Do not print the table."""
SHOW_TABLE = """import csv
def show_table(header, rows):
    rows = [list(r) if isinstance(r, (list, tuple)) else [r] for r in rows]
    with open('table.csv', 'w', newline='') as f:
        csv.writer(f).writerows([list(header), *rows])
"""
_TABLE_WORD = re.compile(r"\btables?\b", re.I)
_SHOWN_WORDS = re.compile(r"\b(tables?|charts?|plots?|graphs?|draw|histograms?|diagrams?)\b", re.I)
MAX_ANSWER = 300  # characters printed that are an answer as they stand


class CodeArgs(BaseModel):
    """Python to run for a step."""

    code: str = Field(max_length=4000)


class PythonExecV1(Adapter):
    """``run_python(code)`` in the sandbox."""

    async def arguments(self, spec: ToolSpec, step: Step, ask: Ask) -> tuple[Any, Usage]:
        """The code the model writes for the step, after the lines that load earlier results."""
        prelude, told = _prelude(step.earlier, step.text)
        if _TABLE_WORD.search(step.text):
            prelude, told = SHOW_TABLE + prelude, told + TABLE_ARGS
        if step.conversation:
            told += "\nEarlier in this conversation (for what the question refers to):\n"
            told += step.conversation
        if step.failure:
            told += f"\nThe previous attempt failed. Fix it.\n{step.failure}"
        parsed, usage = await ask(
            CodeArgs, CODE_ARGS, f"Question: {step.question}\nStep: {step.description}{told}"
        )
        if not isinstance(parsed, CodeArgs):
            return None, usage
        code = print_last(parsed.code)
        if prelude.startswith(SHOW_TABLE):
            code = without_function(code, "show_table")
        return {"code": prelude + code}, usage

    def answer(self, result: Any, step: Step) -> str | None:
        """A short printed result of code that ran, when no chart or table was asked for.

        Handed "The code printed: 296.0", a small model may still answer "136.0".
        """
        if not isinstance(result, dict) or result.get("error") or result.get("killed"):
            return None
        if result.get("images") or result.get("tables") or _SHOWN_WORDS.search(step.text):
            return None
        printed = str(result.get("stdout", "")).strip()
        if not printed or len(printed) > MAX_ANSWER or printed.count("\n") > 4:
            return None
        if re.search(r"[A-Za-z]{3}", printed):
            return printed
        if "\n" in printed:
            return f"The code printed:\n```\n{printed}\n```"
        return f"The result is {printed} (computed with Python)."

    def failed(self, result: Any) -> str | None:
        """Code that raised (not one stopped at a sandbox limit), or that ran and showed nothing.

        Code that only defines a function and never calls it "succeeds" with no output, and the
        answer would then be written without a result.
        """
        if not isinstance(result, dict) or result.get("killed"):
            return None
        code = str(result.get("code", ""))[-1500:]
        if result.get("error"):
            return f"Code:\n{code}\nError:\n{str(result['error'])[-600:]}"
        if str(result.get("stdout", "")).strip() or result.get("images") or result.get("tables"):
            return None
        return (
            f"Code:\n{code}\nIt ran but printed nothing and drew no chart: call what you"
            " defined and print the result."
        )

    def note(self, result: Any) -> str:
        """Its output, its error, and how many charts the user saw."""
        if not isinstance(result, dict):
            return super().note(result)
        printed = str(result.get("stdout", "")).strip()
        parts = [f"The code printed:\n{printed}" if printed else "The code printed nothing."]
        if result.get("error") or result.get("killed"):
            parts.append(f"It failed: {result.get('killed') or result.get('error')}")
        images = result.get("images", [])
        count = images if isinstance(images, int) else len(images)
        if count:
            parts.append(f"{count} chart(s) shown to the user.")
        if tables := result.get("tables"):
            parts.append(f"{len(tables)} table(s) shown to the user.")
        return "\n".join(parts)

    def shape(self, result: Any, tell: Tell, save_png: Callable[[bytes], str]) -> Any:
        """``code_block``, one ``image_generated`` per chart and one ``table`` per CSV."""
        if not isinstance(result, dict):
            return result
        tell(CodeBlockData(language="python", code=str(result.get("code", ""))))
        for png in result.get("images", []):
            tell(
                ImageData(
                    url=f"/v1/artifacts/{save_png(base64.b64decode(png))}",
                    alt="chart generated by python_exec",
                    mime="image/png",
                )
            )
        tables = result.get("tables") or []
        if not tables and not result.get("images") and "def show_table" in str(result.get("code")):
            tables = printed_table(str(result.get("stdout", "")))
        for table in tables:
            tell(
                TableData(
                    columns=[str(c) for c in table.get("columns", [])],
                    rows=table.get("rows", []),
                    title=table.get("name"),
                )
            )
        return {**result, "images": len(result.get("images", [])), "tables": tables}

    def limit(self, result: Any) -> str | None:
        """Killed at a limit, or out of memory."""
        if not isinstance(result, dict):
            return None
        if result.get("killed"):
            return f"stopped by the sandbox: {result['killed']}"
        if "MemoryError" in str(result.get("error") or ""):
            return "stopped by the sandbox: memory limit"
        return None


def print_last(code: str) -> str:
    """``code`` with its last value printed (a bare expression, or ``name = …``), as a notebook.

    Small models often end with ``sum(...)`` and no ``print``; the value would be lost.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Assign) and len(last.targets) == 1:
        target = last.targets[0]
        if isinstance(target, ast.Name) and not _is_output_call(last.value):
            return f"{code.rstrip()}\nprint({target.id})"  # ends with ``total = …``
        return code
    if not isinstance(last, ast.Expr) or _is_output_call(last.value):
        return code
    lines = code.splitlines()
    start, end = last.lineno - 1, (last.end_lineno or last.lineno)
    expr = ast.get_source_segment(code, last) or ""
    head = lines[start][: last.col_offset]
    return "\n".join([*lines[:start], f"{head}print({expr})", *lines[end:]])


def without_function(code: str, name: str) -> str:
    """``code`` without its own top-level ``def name`` (the prelude defines it already).

    A small model asked to call ``show_table`` often writes its own, broken, one first.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines()
    for node in reversed(tree.body):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            del lines[first : node.end_lineno or node.lineno]
    return "\n".join(lines)


_RULE = re.compile(r"^[\s|+:=-]*$")
_SEPARATORS = ("\t", "|", ",", re.compile(r"\s{2,}"), re.compile(r"\s+"))


def printed_table(stdout: str) -> list[dict[str, Any]]:
    """Printed lines as one table (``[]`` unless at least two rows split alike into 2+ columns).

    Tried in turn: tabs, pipes, commas, runs of spaces, single spaces; the first separator that
    splits every non-rule line into the same number of cells wins. A first row without numbers
    above rows with numbers is the header; at least a third of the other cells are numbers.
    """
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip() and not _RULE.match(ln)]
    for sep in _SEPARATORS:
        cells = [
            [c.strip() for c in (sep.split(ln) if isinstance(sep, re.Pattern) else ln.split(sep))]
            for ln in lines
        ]
        cells = [[c for c in row if c] if sep == "|" else row for row in cells]
        widths = {len(row) for row in cells}
        if len(cells) >= 2 and len(widths) == 1 and widths.pop() >= 2:
            break
    else:
        return []
    numeric = [any(_is_number(c) for c in row) for row in cells]
    if not numeric[0] and any(numeric[1:]):
        header, rows = cells[0], cells[1:]
    else:
        header, rows = [f"column {i + 1}" for i in range(len(cells[0]))], cells
    body = [c for row in rows for c in row]
    if 3 * sum(map(_is_number, body)) < len(body):  # prose splits too; a table holds numbers
        return []
    return [{"name": "printed table", "columns": header, "rows": rows[:200]}]


def _is_number(cell: str) -> bool:
    try:
        float(cell.replace(",", "").rstrip("%"))
    except ValueError:
        return False
    return True


def _is_output_call(node: ast.expr) -> bool:
    """Calls whose value is not the point (``print(...)``, ``plt.bar(...)``, ``df.to_csv(...)``)."""
    if not isinstance(node, ast.Call):
        return False
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    owner = node.func.value if isinstance(node.func, ast.Attribute) else None
    plotting = isinstance(owner, ast.Name) and owner.id in {"plt", "ax", "fig", "sns"}
    return plotting or name in {"print", "show", "savefig", "to_csv", "write", "writerow"}


def _records(values: list[Any]) -> list[dict[str, Any]] | None:
    """The first non-empty list of records (dicts) in ``values``, searched breadth first."""
    queue = list(values)
    while queue:
        item = queue.pop(0)
        if isinstance(item, list) and item and all(isinstance(r, dict) for r in item):
            return item
        if isinstance(item, dict):
            queue.extend(item.values())
        elif isinstance(item, list):
            queue.extend(item)
    return None


def _use_of(row: dict[str, Any], text: str) -> str:
    """One line of code over ``rows``, so a small model sees how to use them without pandas.

    Labels by the first text key, values by the number key ``text`` names (else the first).
    """
    labels = next((k for k, v in row.items() if isinstance(v, str)), None)
    numbers = [k for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    if labels is None or not numbers:
        return ""
    named = [k for k in numbers if re.search(rf"\b{re.escape(k)}\b", text, re.I)]
    value = (named or numbers)[0]
    return (
        f"\nFor example: names = [r[{labels!r}] for r in rows];"
        f" values = [r[{value!r}] for r in rows]"
    )


def _prelude(earlier: tuple[dict[str, Any], ...], text: str = "") -> tuple[str, str]:
    """Lines that load the earlier results in the jail, and what the model is told of them."""
    if not earlier:
        return "", ""
    dumped = json.dumps(list(earlier), default=str)
    lines = [
        "import json",
        f"open('data.json', 'w').write({dumped!r})",
        "data = json.load(open('data.json'))",
    ]
    told = (
        "\nThe earlier steps' results are already loaded: `data` is a list with one"
        " {'step', 'tool', 'result'} per step (also in data.json). Use it; do not retype values."
    )
    rows = _records([e["result"] for e in earlier])
    if rows is not None:
        path = _path_to(list(earlier), rows)
        lines.append(f"rows = data{path}")
        example = json.dumps(rows[0], default=str)[:400]
        told += (
            f"\n`rows` is a list of {len(rows)} dicts with keys {sorted(rows[0])}."
            f" rows[0] = {example}{_use_of(rows[0], text)}"
        )
    return "\n".join(lines) + "\n", told


def _path_to(root: Any, target: Any) -> str:
    """The subscript path from ``root`` to the object ``target`` (e.g. ``[0]['result']``)."""
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        item, path = stack.pop(0)
        if item is target:
            return path
        if isinstance(item, dict):
            stack.extend((v, f"{path}[{k!r}]") for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
    return ""
