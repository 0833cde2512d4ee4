"""Limits on what one message's templates (and a campaign's `where`) may cost.

The sandbox keeps templates away from Python's internals, but not from work without end:
nested loops, `9 ** (9 ** 9)`, `contact.first_name * 400000000`. Each would hang a daemon or
take the machine's memory. So every render has a deadline and every value it makes a size:

* the operators `*`, `**`, `+` and `%`, the string methods and filters that can grow a value
  (center, ljust, replace, format, indent…) and `range`/`lipsum` check the size of what they
  would make before making it, and check the deadline;
* in the main thread a timer (SIGALRM) interrupts a render that runs past its deadline even
  inside a loop that calls nothing; in other threads the checks above stand in for it;
* what a template writes is counted as it is produced.

A render over a limit raises RenderLimitError inside the template, so the error names the
template and the line where it stopped; the message fails and the run goes on.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from jinja2 import Template
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

from outreach.i18n import _

if TYPE_CHECKING:
    from outreach.model.config import Settings

DEFAULT_SECONDS = 10.0
DEFAULT_SIZE = 5_000_000  # characters (or items) one value or one template's output may have
# Integers beyond this many bits come from `**` or `*` run wild, not from a template's sums.
MAX_BITS = 100_000
_LONG_NUMBER = re.compile(r"\d{7,}")  # a width such as %9999999d in a format string
_GROWING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "replace"})


_main_deadline: float | None = None  # what the SIGALRM handler compares with


class RenderLimitError(Exception):
    """A render went past its time limit or would make a value past the size limit."""

    def __init__(self, message: str) -> None:
        global _main_deadline
        super().__init__(message)
        # The render is over: the timer must not raise a second time while Jinja rewrites
        # this error's traceback (the second error would have no template line).
        _main_deadline = None


@dataclass(frozen=True, slots=True)
class Limits:
    """The time and size one render may take."""

    seconds: float = DEFAULT_SECONDS
    size: int = DEFAULT_SIZE


DEFAULT_LIMITS = Limits()


def limits_of(settings: Settings) -> Limits:
    """The limits config.yaml sets (`limits.render_seconds`, `limits.render_size`)."""
    return Limits(seconds=settings.limits.render_seconds, size=settings.limits.render_size)


class _State(threading.local):
    deadline: float | None = None
    limits: Limits = DEFAULT_LIMITS


_state = _State()


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    deadline = _main_deadline
    if deadline is None:
        return  # the render ended (or failed) as the timer ran out
    left = deadline - time.monotonic()
    if left > 0.001:  # the timer's clock ran ahead of ours: wait for the rest
        signal.setitimer(signal.ITIMER_REAL, left)
        return
    if not _in_template(frame):
        # Between two templates (or between two pieces of one): raised here the error could
        # name no template line. The next moment is almost surely inside the template.
        signal.setitimer(signal.ITIMER_REAL, 0.005)
        return
    raise RenderLimitError(_too_long(_state.limits))


def _in_template(frame: FrameType | None) -> bool:
    """Whether the interrupted code runs inside a compiled template (Jinja marks its globals)."""
    while frame is not None:
        if "__jinja_template__" in frame.f_globals:
            return True
        frame = frame.f_back
    return False


def _too_long(limits: Limits) -> str:
    return _("rendering took longer than {seconds:g} s (limits.render_seconds)").format(
        seconds=limits.seconds
    )


def check_deadline() -> None:
    """Raise RenderLimitError if the render in progress is past its deadline."""
    deadline = _state.deadline
    if deadline is not None and time.monotonic() > deadline:
        raise RenderLimitError(_too_long(_state.limits))


def check_size(size: int, what: str = "a value") -> None:
    """Raise RenderLimitError if a value of `size` would be past the size limit."""
    limit = _state.limits.size
    if size > limit:
        raise RenderLimitError(
            _(
                "{what} would be {size:,} characters long, more than {limit:,} (limits.render_size)"
            ).format(what=what, size=size, limit=limit)
        )


class render_guard:  # used like the context manager function it replaced
    """A deadline for what runs inside; nested guards keep the outer deadline. `timer` arms
    SIGALRM too (main thread only) for loops that call nothing; an expression has none.

    A class rather than a generator: it is entered for every message and every `where`."""

    __slots__ = ("_limits", "_outer", "_timer")

    def __init__(self, limits: Limits, *, timer: bool = True) -> None:
        self._limits = limits
        self._timer = timer
        self._outer = False

    def __enter__(self) -> None:
        global _main_deadline
        if _state.deadline is not None:
            self._outer = True
            return
        limits = self._limits
        deadline = time.monotonic() + limits.seconds
        _state.deadline, _state.limits = deadline, limits
        self._timer = self._timer and _own_alarm()
        if self._timer:
            _main_deadline = deadline
            signal.setitimer(signal.ITIMER_REAL, limits.seconds)

    def __exit__(self, *exc: object) -> None:
        global _main_deadline
        if self._outer:
            return
        if self._timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _main_deadline = None
        _state.deadline, _state.limits = None, DEFAULT_LIMITS


_alarm_pid: int | None = None  # the process that installed _on_alarm (a fork inherits it)


def _own_alarm() -> bool:
    """Whether this thread may use SIGALRM: the main thread, and no one else's handler."""
    global _alarm_pid
    if threading.current_thread() is not threading.main_thread():
        return False
    if _alarm_pid is not None:
        return True  # installed once and kept (asking costs more than the rest of a guard)
    handler = signal.getsignal(signal.SIGALRM)
    if handler is not _on_alarm and (
        handler != signal.SIG_DFL or signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0)
    ):
        return False  # someone else's alarm: the checks in the sandbox stand in for it
    signal.signal(signal.SIGALRM, _on_alarm)
    _alarm_pid = os.getpid()
    return True


# Output is taken from a template this many parts at a time: counted before it is joined.
_PARTS = 256


# Each template's globals as one dict: Jinja keeps them in a ChainMap and flattens it for every
# render, which costs more than the rest of making the context. Templates live as long as
# their campaign; the map holds them only weakly.
_FLAT_GLOBALS: weakref.WeakKeyDictionary[Template, dict[str, Any]] = weakref.WeakKeyDictionary()


def _generate(template: Template, context: dict[str, Any]) -> Iterator[str]:
    """template.generate(context) (globals first, the context over them), on flat globals."""
    flat = _FLAT_GLOBALS.get(template)
    if flat is None:
        flat = _FLAT_GLOBALS[template] = dict(template.globals)
    environment = template.environment
    ctx = environment.context_class(
        environment, {**flat, **context}, template.name, template.blocks, globals=template.globals
    )
    try:
        yield from template.root_render_func(ctx)
    except Exception:
        yield environment.handle_exception()  # raises, the template's lines in the traceback


def render_limited(template: Template, context: dict[str, Any], limits: Limits) -> str:
    """template.render(context), within the limits (RenderLimitError past them)."""
    return "".join(render_limited_parts(template, context, limits))


def render_limited_parts(template: Template, context: dict[str, Any], limits: Limits) -> list[str]:
    """The strings the template yields for `context` (joined: its output), within the limits."""
    with render_guard(limits):
        parts: list[str] = []
        total = 0
        limit = limits.size
        output = cast("Generator[str, None, None]", _generate(template, context))
        while batch := list(itertools.islice(output, _PARTS)):
            total += sum(map(len, batch))
            if total > limit:
                # Thrown in where the template is writing, so its traceback names the line.
                output.throw(
                    RenderLimitError(
                        _(
                            "the template writes more than {limit:,} characters (limits.render_size)"
                        ).format(limit=limit)
                    )
                )
            parts += batch
        return parts


def _size_of(value: object) -> int:
    if isinstance(value, str | bytes | list | tuple):
        return len(value)
    return 1


def _bits(value: object) -> int:
    return abs(value).bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


def _check_binop(operator: str, left: Any, right: Any) -> None:
    check_deadline()
    if operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if right * max(_bits(left), 1) > MAX_BITS:
                raise RenderLimitError(
                    _("{left} ** {right} is too large a number").format(left=left, right=right)
                )
        elif isinstance(right, int | float) and abs(right) > 1e6:
            raise RenderLimitError(_("too large an exponent"))
    elif operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, str | bytes | list | tuple) and isinstance(count, int):
                check_size(_size_of(sequence) * count)
        if _bits(left) + _bits(right) > MAX_BITS:
            raise RenderLimitError(_("too large a number"))
    elif operator == "+":
        check_size(_size_of(left) + _size_of(right))
    elif operator == "%" and isinstance(left, str) and _LONG_NUMBER.search(left):
        raise RenderLimitError(_("a width in the format string is too large"))


def _check_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Check a call to one of the string methods that can grow their string."""
    target = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if not isinstance(target, str) or name not in _GROWING_METHODS:
        return
    if name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = target.count(old) if old else len(target) + 1
        check_size(len(target) + count * max(len(new) - len(old), 0))
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tab, int):
            check_size(len(target) + target.count("\t") * tab)
    elif args and isinstance(args[0], int):
        check_size(args[0])


def _limited_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    # Filters marked pass_context / pass_eval_context get that context first.
    passes_context = hasattr(original, "jinja_pass_arg")

    def checked(*args: Any, **kwargs: Any) -> Any:
        check_deadline()
        rest = args[2:] if passes_context else args[1:]
        value = args[1] if passes_context else args[0]
        text = value if isinstance(value, str) else str(value)
        if name == "center" and rest and isinstance(rest[0], int):
            check_size(rest[0])
        elif name == "indent":
            width = rest[0] if rest else kwargs.get("width", 4)
            if isinstance(width, int):
                check_size(len(text) + (text.count("\n") + 1) * width)
        elif name == "replace" and len(rest) >= 2:
            old, new = str(rest[0]), str(rest[1])
            count = text.count(old) if old else len(text) + 1
            check_size(len(text) + count * max(len(new) - len(old), 0))
        elif name == "format" and _LONG_NUMBER.search(text):
            raise RenderLimitError(_("a width in the format string is too large"))
        return original(*args, **kwargs)

    checked.__name__ = getattr(original, "__name__", name)
    if passes_context:
        checked.jinja_pass_arg = original.jinja_pass_arg  # type: ignore[attr-defined]
    return checked


def _range(*args: int) -> Iterable[int]:
    numbers = range(*args)
    check_size(len(numbers), "a range")
    return _ticking(numbers)


def _ticking(numbers: range) -> Iterator[int]:
    # A loop over a range checks the deadline as it goes (threads have no timer signal).
    for index, number in enumerate(numbers):
        if not index & 1023:
            check_deadline()
        yield number


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    check_size(n * max * 10, "lipsum")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with the checks above on operators, calls, filters and range."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("center", "indent", "replace", "format"):
            if name in self.filters:
                self.filters[name] = _limited_filter(name, self.filters[name])
        self.globals["range"] = _range
        self.globals["lipsum"] = _lipsum

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        check_deadline()
        _check_method(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _LONG_NUMBER.search(str(getattr(value, "__self__", ""))):
            raise RenderLimitError(_("a width in the format string is too large"))
        return wrapped
