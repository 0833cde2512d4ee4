"""`--help` in the owner's language: click's own words and ours, through the message catalog.

Two halves, both run by `main()` once the language is chosen, before click parses anything:

- `speak_click()`: click says its own sentences ("Usage:", "Show this message and exit.",
  "Error: No such option: --x", "Aborted!") through `gettext.gettext`/`ngettext`, bound at
  import in each of its modules (`from gettext import gettext as _`). Those module-level names
  are rebound to `outreach.i18n`'s functions, so click speaks from our catalog (its msgids are
  kept there by `outreach/cli/clickmessages.py`). This relies on click's module layout, which
  is why pyproject.toml pins `click>=8.5,<9`; tests/test_cli_language.py checks that every
  message click's installed source marks is in our catalog.
- `translate_help(command)`: our help texts (docstrings, `help=`, `short_help=`, `epilog=`,
  metavars) are held by click as written in English; each is replaced by its translation,
  walking the command tree. `outreach/cli/extract.py` puts exactly those texts in the catalog.
"""

from __future__ import annotations

import importlib
import inspect

import click

from outreach.i18n import N_, _, ngettext

# click's modules that say something to people (`_winconsole` is Windows-only: not imported).
CLICK_MODULES = (
    "click.core",
    "click.decorators",
    "click.exceptions",
    "click.formatting",
    "click.parser",
    "click.shell_completion",
    "click.termui",
    "click.types",
    "click.utils",
    "click._termui_impl",
)
EXAMPLES = "Examples:"
# click's names of the value types our options take, shown upper-case as their metavars
# (TEXT, INTEGER); click's Path names its own ("file", "directory", "path": in click's messages).
TYPE_NAMES = (N_("text"), N_("integer"), N_("integer range"))
# Each help text as written, kept on its object the first time it is translated, so that the
# walk can run again (another language, the same process) from the English.
_ORIGINAL = "_outreach_english"


def speak_click() -> None:
    """Make click say its own words through our catalog (see the module's docstring)."""
    for name in CLICK_MODULES:
        module = importlib.import_module(name)
        if hasattr(module, "_"):
            module._ = _  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = ngettext  # type: ignore[attr-defined]


def translated_epilog(epilog: str) -> str:
    """An `examples(...)` epilog in the current language: its title and each line's comment
    translated, the command lines kept as typed."""
    lines = []
    for line in epilog.split("\n"):
        command, sep, comment = line.partition("# ")
        if line == EXAMPLES:
            lines.append(_(EXAMPLES))
        elif sep and comment.strip():
            lines.append(f"{command}{sep}{_(comment.strip())}")
        else:
            lines.append(line)
    return "\n".join(lines)


def _english(obj: object, attribute: str) -> str | None:
    originals: dict[str, str | None] = obj.__dict__.setdefault(_ORIGINAL, {})
    if attribute not in originals:
        originals[attribute] = getattr(obj, attribute)
    return originals[attribute]


def _translate(obj: object, attribute: str, how: str = "plain") -> None:
    text = _english(obj, attribute)
    if not text:
        return
    if how == "epilog":
        setattr(obj, attribute, translated_epilog(text))
    elif how == "doc":
        setattr(obj, attribute, _(inspect.cleandoc(text).partition("\f")[0]))
    else:
        setattr(obj, attribute, _(text))


def _type_metavar(option: click.Option) -> None:
    """An option without a metavar of its own shows its type's name (FILE, TEXT): in the
    current language when the catalog has it."""
    if _english(option, "metavar") is not None:
        return
    name = option.type.name
    said = _(name)
    option.metavar = said.upper() if said != name else None


def translate_help(command: click.Command) -> None:
    """Every help text of `command` and its subcommands in the current language."""
    _translate(command, "help", "doc")
    _translate(command, "short_help", "doc")
    _translate(command, "epilog", "epilog")
    for param in command.params:
        if isinstance(param, click.Option):
            _translate(param, "help")
            _type_metavar(param)
        _translate(param, "metavar")
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            translate_help(sub)
