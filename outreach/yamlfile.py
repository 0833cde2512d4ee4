"""YAML files loaded with the line of every key, so errors can point at it.

Every file is loaded with limits, because a few lines of YAML can describe an enormous or
endless document: nesting depth and aliases are bounded while the file is composed, the size
the document would have with every alias expanded is counted before anything is built, a key
given twice is an error (YAML keeps the last one silently), and dates and integers are
checked before they are constructed, so each problem is reported as file:line: key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from outreach.i18n import _
from outreach.model.errors import OutreachError

KeyPath = tuple[str | int, ...]

# Far beyond any real config or campaign file, far below what would cost memory or time.
MAX_DEPTH = 64
MAX_ALIASES = 1000
MAX_NODES = 100_000  # nodes of the document with every alias expanded
MAX_FILE_BYTES = 4 << 20
# Integers outside ±2**53 are typos (or attacks); no setting needs them.
MAX_INTEGER = 2**53
_INT_TAG = "tag:yaml.org,2002:int"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_DIGITS = re.compile(r"[0-9a-fA-F]")
# libyaml's parser refuses nesting deeper than 1,000 levels before our composer sees it.
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"  # not translated: libyaml's words, matched


class _Refused(yaml.MarkedYAMLError):
    """A limit was reached while composing; carries the mark like YAML's own errors."""

    def __init__(self, *, problem: str, problem_mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=problem_mark)


class _Checked(Composer, SafeConstructor, Resolver):
    """PyYAML's composer bounding depth, aliases and recursion as it composes a parser's
    events (the parser is the other base of each loader below)."""

    peek_event: Callable[[], Any]  # the parser's
    dispose: Callable[[], None]

    def __init__(self) -> None:
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._aliases = 0
        self._open: set[str] = set()

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(
                    problem=_("more than {most} aliases (*name)").format(most=MAX_ALIASES),
                    problem_mark=event.start_mark,
                )
            if event.anchor in self._open:
                raise _Refused(
                    problem=_("the alias *{anchor} refers to a value that contains it").format(
                        anchor=event.anchor
                    ),
                    problem_mark=event.start_mark,
                )
        anchor = event.anchor if isinstance(event, CollectionStartEvent) else None
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _too_deep(event.start_mark)
        if anchor is not None:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)


class _PythonParser(Reader, Scanner, Parser):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


def _loader(parser: Any) -> Callable[[str], _Checked]:
    class Loader(_Checked, parser):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            parser.__init__(self, stream)
            _Checked.__init__(self)

    return Loader


# The parsers a file can be read with: libyaml's (about seven times faster: a config file in
# 0.4 ms, not 3 ms) where PyYAML was built with it, as its wheels are; PyYAML's own otherwise.
LOADERS: dict[str, Callable[[str], _Checked]] = {"python": _loader(_PythonParser)}
with suppress(ImportError):
    from yaml.cyaml import CParser  # type: ignore[attr-defined]

    LOADERS["libyaml"] = _loader(CParser)
_LineLoader = LOADERS.get("libyaml", LOADERS["python"])


def _too_deep(mark: Any) -> _Refused:
    return _Refused(
        problem=_("values nested more than {max_depth} levels deep").format(max_depth=MAX_DEPTH),
        problem_mark=mark,
    )


class _Walk:
    """One pass over the composed nodes: lines of keys, duplicates, scalars checked."""

    def __init__(self) -> None:
        self.lines: dict[KeyPath, int] = {}
        self.sizes: dict[int, int] = {}
        self.constructor = SafeConstructor()

    def size(self, node: yaml.Node) -> int:
        """Nodes of `node` with every alias expanded (memoised: each node is counted once)."""
        stack: list[tuple[yaml.Node, bool]] = [(node, False)]
        while stack:
            current, children_done = stack.pop()
            key = id(current)
            if key in self.sizes:
                continue
            children = _children(current)
            if children_done:
                total = 1 + sum(self.sizes[id(child)] for child in children)
                self.sizes[key] = min(total, MAX_NODES + 1)
                continue
            stack.append((current, True))
            stack.extend((child, False) for child in children if id(child) not in self.sizes)
        return self.sizes[id(node)]

    def visit(self, node: yaml.Node, prefix: KeyPath) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    self.visit(value_node, prefix)
                    continue
                key = key_node.value
                line = key_node.start_mark.line + 1
                if isinstance(key_node, yaml.ScalarNode):
                    if key in seen:
                        raise _KeyError(
                            _(
                                "the key is given twice (first on line {line}); only one of "
                                "the two values could be used"
                            ).format(line=seen[key]),
                            key_path=(*prefix, key),
                            mark=key_node.start_mark,
                            hint=_("keep one of them and delete the other"),
                        )
                    seen[key] = line
                self.lines.setdefault((*prefix, key), line)
                self.visit(value_node, (*prefix, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.lines.setdefault((*prefix, index), item.start_mark.line + 1)
                self.visit(item, (*prefix, index))
        elif isinstance(node, yaml.ScalarNode):
            self.check_scalar(node, prefix)

    def check_scalar(self, node: yaml.ScalarNode, key_path: KeyPath) -> None:
        if node.tag == _INT_TAG:
            digits = len(_DIGITS.findall(node.value))
            value: int | None = None
            if digits <= 20:
                value = self.constructor.construct_yaml_int(node)
            if value is None or abs(value) > MAX_INTEGER:
                raise _KeyError(
                    _("the number {number} is too large").format(
                        number=node.value[:20] + ("…" if len(node.value) > 20 else "")
                    ),
                    key_path=key_path,
                    mark=node.start_mark,
                    hint=_("write a number of a sensible size"),
                )
        elif node.tag == _TIMESTAMP_TAG:
            try:
                self.constructor.construct_yaml_timestamp(node)
            except (ValueError, OverflowError) as exc:
                raise _KeyError(
                    _("{value} is not a real date ({exc})").format(value=repr(node.value), exc=exc),
                    key_path=key_path,
                    mark=node.start_mark,
                    hint=_("write a date that exists, as YYYY-MM-DD"),
                ) from None


class _KeyError(Exception):
    def __init__(self, message: str, *, key_path: KeyPath, mark: Any, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.key_path = key_path
        self.mark = mark
        self.hint = hint


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_yaml(path: Path, *, error: type[OutreachError]) -> tuple[Any, dict[KeyPath, int]]:
    """Parse a YAML file; return the data and the line of each key path."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise error(
                _("the file is {size} bytes; settings files are far smaller").format(size=size),
                path=path,
                hint=_("is it the right file?"),
            )
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error(
            _("file not found"), path=path, hint=_("check the path or create the file")
        ) from None
    except UnicodeDecodeError as exc:
        raise error(
            _("not UTF-8 text ({reason})").format(reason=exc.reason),
            path=path,
            hint=_("save the file as UTF-8"),
        ) from None
    except OSError as exc:
        raise error(_("cannot read: {error}").format(error=exc.strerror), path=path) from None
    loader = _LineLoader(text)
    walk = _Walk()
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}
            if walk.size(node) > MAX_NODES:
                raise _Refused(
                    problem=_(
                        "with its aliases expanded the file holds more than {max_nodes} values"
                    ).format(max_nodes=MAX_NODES),
                    problem_mark=node.start_mark,
                )
            walk.visit(node, ())
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except _KeyError as exc:
        raise error(
            exc.message,
            path=path,
            line=exc.mark.line + 1,
            field=dotted(exc.key_path) or None,
            hint=exc.hint,
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        if exc.problem == _LIBYAML_TOO_DEEP:  # its parser's own bound, met before ours is
            exc = _too_deep(mark)
        raise error(
            f"invalid YAML: {exc.problem}",
            path=path,
            line=mark.line + 1 if mark else None,
            hint=_("check indentation and quoting near that line")
            if not isinstance(exc, _Refused)
            else _("write the values out plainly, without deep nesting or chains of aliases"),
        ) from None
    except yaml.YAMLError as exc:
        raise error(f"invalid YAML: {exc}", path=path) from None
    except (RecursionError, ValueError, OverflowError, TypeError) as exc:
        # Constructors of PyYAML raising plain Python errors on odd input (e.g. an unhashable
        # key): still the file's fault, never a traceback.
        raise error(
            f"invalid YAML: {type(exc).__name__}: {exc}",
            path=path,
            hint=_("check the file's keys and values"),
        ) from None
    return data, walk.lines


def line_for(lines: dict[KeyPath, int], key_path: KeyPath) -> int | None:
    """The line of the deepest known prefix of `key_path`."""
    for end in range(len(key_path), 0, -1):
        line = lines.get(tuple(key_path[:end]))
        if line is not None:
            return line
    return None


def dotted(key_path: KeyPath) -> str:
    """`cadence.quiet_weekdays[1]` from ('cadence', 'quiet_weekdays', 1)."""
    text = ""
    for part in key_path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text
