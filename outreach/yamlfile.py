"""YAML files loaded with the line of every key, so errors can point at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from outreach.errors import OutreachError

KeyPath = tuple[str | int, ...]


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records where each mapping key and sequence item starts."""


def _compose_lines(node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*prefix, key)] = key_node.start_mark.line + 1
            _compose_lines(value_node, (*prefix, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*prefix, index)] = item.start_mark.line + 1
            _compose_lines(item, (*prefix, index), lines)


def load_yaml(path: Path, *, error: type[OutreachError]) -> tuple[Any, dict[KeyPath, int]]:
    """Parse a YAML file; return the data and the line of each key path."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error("file not found", path=path, hint="check the path or create the file") from None
    except UnicodeDecodeError as exc:
        raise error(
            f"not UTF-8 text ({exc.reason})", path=path, hint="save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", path=path) from None
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise error(
            f"invalid YAML: {exc.problem}",
            path=path,
            line=mark.line + 1 if mark else None,
            hint="check indentation and quoting near that line",
        ) from None
    except yaml.YAMLError as exc:
        raise error(f"invalid YAML: {exc}", path=path) from None
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _compose_lines(node, (), lines)
    return data, lines


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
