"""Babel's extraction method for outreach/cli (babel.cfg names it before the general python one).

It yields what Babel's python extractor finds (`_()`, `N_()`, `ngettext()`), and the help texts
click holds, exactly as `outreach.cli.helptext.translate_help` will look them up: a command's
docstring cleaned with `inspect.cleandoc` (up to a `\\f`, as click shows it), the `help=` and
`short_help=` of commands and options, word metavars, and of an `examples(...)` epilog its title
and each line's comment (the command lines are not translated).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

from babel.messages.extract import extract_python

from outreach.cli.helptext import EXAMPLES

HELD = ("help", "short_help")
DECORATORS = {"command", "group", "option", "argument", "version_option", "password_option"}
Found = tuple[int, str, str, list[str]]


def extract_cli(
    fileobj: IO[bytes],
    keywords: Mapping[str, Any],
    comment_tags: Collection[str],
    options: Mapping[str, Any],
) -> Iterator[Found]:
    """Babel's findings in a CLI module, then its click help texts."""
    yield from extract_python(fileobj, keywords, comment_tags, options)  # type: ignore[arg-type,misc]
    fileobj.seek(0)
    tree = ast.parse(fileobj.read().decode(options.get("encoding", "utf-8")))
    yield from help_texts(tree)


def _called(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _constant(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _epilog(node: ast.expr) -> Iterator[Found]:
    if not (isinstance(node, ast.Call) and _called(node) == "examples"):
        return
    yield node.lineno, "_", EXAMPLES, []
    for arg in node.args:
        line = _constant(arg)
        comment = line.partition("# ")[2].strip() if line else ""
        if comment:
            yield arg.lineno, "_", comment, []


def help_texts(tree: ast.AST) -> Iterator[Found]:
    """The help texts of every click decorator (and option helper) in `tree`, and the
    docstrings of the functions that click makes commands of."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            commands = [
                d
                for d in node.decorator_list
                if isinstance(d, ast.Call) and _called(d) in {"command", "group"}
            ]
            doc = ast.get_docstring(node, clean=False)
            if commands and doc:
                yield node.lineno, "_", inspect.cleandoc(doc).partition("\f")[0], []
        if not (isinstance(node, ast.Call) and _called(node) in DECORATORS):
            continue
        for keyword in node.keywords:
            text = _constant(keyword.value)
            if keyword.arg in HELD and text:
                yield keyword.value.lineno, "_", inspect.cleandoc(text), []
            elif keyword.arg == "metavar" and text:
                yield keyword.value.lineno, "_", text, []
            elif keyword.arg == "epilog":
                yield from _epilog(keyword.value)
