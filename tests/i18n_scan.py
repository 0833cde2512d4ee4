"""Find user-facing sentences in the sources that do not go through the message catalog.

    python tests/i18n_scan.py [PATH ...]     # lists them, file:line: text (default: outreach/)

A string is a sentence for people when it holds three words in a row (lower-case words of two
letters or more, as prose has and code, SQL and identifiers rarely do), or when it is handed to
a place people read: `echo`/`secho`/`print`/`confirm`/`prompt`, an exception or problem being
built (a name ending in Error, Exception, Problem or Warning), a logger's info/warning/error, or
a keyword such as `hint=` or `message=`. It is marked when it is an argument of `_`, `N_` or
`ngettext`. Not sentences: docstrings, decorators' arguments and those of click's
`click.option(...)`-style factories called as functions (click's help texts are extracted by
outreach/cli's own extractor), and a line that says why with the comment `# not translated:`.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKERS = {"_", "N_", "ngettext", "gettext", "pgettext", "npgettext"}
SINK_CALLS = {"echo", "secho", "print", "confirm", "prompt", "fail", "warn", "abort"}
SINK_SUFFIXES = ("Error", "Exception", "Problem", "Warning", "Abort")
LOG_METHODS = {"info", "warning", "error", "exception", "critical"}
SINK_KEYWORDS = {"hint", "message", "help", "epilog", "short_help", "reason", "detail", "why"}
PROSE = re.compile(r"(?<![\w.%{/-])[a-z][a-z'’]+\s+[a-z][a-z'’]+\s+[a-z][a-z'’]+\b")
WORDS = re.compile(r"[A-Za-z][a-z'’]+\s+[a-z][a-z'’]+")
EXEMPT = "# not translated:"
CLICK_FACTORIES = {"option", "argument", "command", "group", "version_option"}
# Not the tool's words to the owner: customers' messages' own machinery, this builder.
SKIPPED = ("outreach/catalogs.py", "outreach/i18n.py")


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _text(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
            for v in node.values
        )
    return None


class _Scan(ast.NodeVisitor):
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.found: list[tuple[int, str]] = []
        self.marked: set[int] = set()
        self.sinks: set[int] = set()
        self.skipped: set[int] = set()

    def _docstrings(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            if (
                isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and node.body
                and isinstance(node.body[0], ast.Expr)
            ):
                self.skipped.add(id(node.body[0].value))
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                for decorator in node.decorator_list:
                    for inner in ast.walk(decorator):
                        self.skipped.add(id(inner))

    def _mark_all(self, node: ast.AST, into: set[int]) -> None:
        for inner in ast.walk(node):
            into.add(id(inner))

    def visit_Call(self, node: ast.Call) -> None:
        name = _name(node.func)
        if name in CLICK_FACTORIES and ast.unparse(node.func).startswith("click."):
            self._mark_all(node, self.skipped)  # help texts: outreach/cli/extract.py
        elif name in MARKERS:
            self._mark_all(node, self.marked)
        else:
            is_log = name in LOG_METHODS and "log" in ast.unparse(node.func).lower()
            if name in SINK_CALLS or name.endswith(SINK_SUFFIXES) or is_log:
                for arg in node.args:
                    self._mark_all(arg, self.sinks)
            for keyword in node.keywords:
                if keyword.arg in SINK_KEYWORDS:
                    self._mark_all(keyword.value, self.sinks)
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        self._check(node)  # an f-string's parts are not sentences of their own

    def visit_Constant(self, node: ast.Constant) -> None:
        self._check(node)

    def _check(self, node: ast.expr) -> None:
        text = _text(node)
        if text is None or id(node) in self.marked or id(node) in self.skipped:
            return
        prose = PROSE.search(text) or (id(node) in self.sinks and WORDS.search(text))
        if not prose:
            return
        end = getattr(node, "end_lineno", node.lineno) or node.lineno
        around = self.lines[node.lineno - 1 : end]
        if any(EXEMPT in line for line in around):
            return
        self.found.append((node.lineno, " ".join(text.split())[:100]))


def unmarked(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each sentence in `path` that is not marked."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    scan = _Scan(source.splitlines())
    scan._docstrings(tree)
    scan.visit(tree)  # a call marks its arguments before its strings are visited
    yield from sorted(set(scan.found))


def scan(paths: list[Path]) -> list[str]:
    out = []
    for base in paths:
        files = [base] if base.is_file() else sorted(base.rglob("*.py"))
        for path in files:
            rel = path.resolve().relative_to(ROOT).as_posix()
            if rel.startswith(SKIPPED):
                continue
            out.extend(f"{rel}:{line}: {text}" for line, text in unmarked(path))
    return out


if __name__ == "__main__":
    targets = [Path(a) for a in sys.argv[1:]] or [ROOT / "outreach"]
    found = scan(targets)
    print("\n".join(found))
    print(f"{len(found)} unmarked", file=sys.stderr)
