"""click's own messages ("Usage:", "Show this message and exit.", "No such option: {name}", …),
listed so that `make catalogs` keeps them in our catalog: click says them through our
translations (`outreach.cli.helptext.speak_click`). Nothing imports this module at run time.

Generated from the installed click with Babel's extractor; after upgrading click, run
`.venv/bin/python -m outreach.cli.clickmessages` and translate what `make catalogs` adds
(tests/test_cli_language.py fails until then).
"""

from __future__ import annotations

import sys
from pathlib import Path

from outreach.i18n import N_, ngettext


def extracted() -> list[str | tuple[str, ...]]:
    """Every message the installed click marks for translation (singular or (one, other)),
    in the order of its source files."""
    import click
    from babel.messages.extract import extract_from_file

    found: list[str | tuple[str, ...]] = []
    for path in sorted(Path(click.__file__).parent.glob("*.py")):
        for _lineno, message, _comments, _context in extract_from_file(
            "python", str(path), keywords={"_": None, "ngettext": (1, 2)}
        ):
            if message and message not in found:
                found.append(message)
    return found


def _generate() -> str:
    singular = [m for m in extracted() if isinstance(m, str)]
    plural = [m for m in extracted() if isinstance(m, tuple)]
    head = Path(__file__).read_text(encoding="utf-8").split("\n# Generated below", 1)[0]
    generated = "\n# Generated below: do not edit by hand.\nMESSAGES = ("  # not translated: code
    lines = [head, generated]
    lines += [f"    N_({m!r})," for m in singular]
    lines += [
        ")\n\n",
        "def plural_messages() -> list[str]:",
        '    """click\'s counted messages."""',  # not translated: code
    ]
    lines += ["    return ["]
    lines += [f"        ngettext({one!r}, {other!r}, 1)," for one, other in plural]
    lines += ["    ]", "", "", MAIN]
    return "\n".join(lines)


MAIN = """if __name__ == "__main__":
    Path(__file__).write_text(_generate(), encoding="utf-8")
    sys.exit(0)
"""


# Generated below: do not edit by hand.
MESSAGES = (
    N_("d"),
    N_("{editor}: Editing failed"),
    N_("{editor}: Editing failed: {e}"),
    N_("Windows error: {error}"),
    N_("Aborted!"),
    N_("deprecated"),
    N_("Options"),
    N_("Positional arguments"),
    N_("DeprecationWarning: The command {name!r} is deprecated.{extra_message}"),
    N_("Commands"),
    N_("Missing command."),
    N_("Value must be an iterable."),
    N_("DeprecationWarning: The {param_type} {name!r} is deprecated.{extra_message}"),
    N_("Name '{name}' defined twice"),
    N_("Boolean option {decl!r} cannot use the same flag for true/false."),
    N_("Could not determine name for option with declarations {decls!r}"),
    N_(
        "No options defined but a name was passed ({name}). Did you mean to declare an argument instead? Did you mean to pass '--{name}'?"
    ),
    N_("env var: {var}"),
    N_("default: {default}"),
    N_("(dynamic)"),
    N_("Arguments take exactly one parameter declaration, got {length}: {decls}."),
    N_("Do you want to continue?"),
    N_("Confirm the action without prompting."),
    N_("%(prog)s, version %(version)s"),
    N_("Show the version and exit."),
    N_("Show this message and exit."),
    N_("Error: {message}"),
    N_("Try '{command} {option}' for help."),
    N_("Invalid value: {message}"),
    N_("Invalid value for {param_hint}: {message}"),
    N_("Missing argument"),
    N_("Missing option"),
    N_("Missing parameter"),
    N_("Missing {param_type}"),
    N_("Missing parameter: {param_name}"),
    N_("No such option {name!r}."),
    N_("No such command {name!r}."),
    N_("unknown error"),
    N_("Could not open file {filename!r}: {message}"),
    N_("Usage:"),
    N_("Invalid start character for option ({option})"),
    N_("Argument {name!r} takes {nargs} values."),
    N_("Option {name!r} does not take a value."),
    N_("Shell completion is not supported for Bash versions older than 4.4."),
    N_("Couldn't detect Bash version, shell completion is not supported."),
    N_("Repeat for confirmation"),
    N_("Error: The two entered values do not match."),
    N_("Error: invalid input"),
    N_("Unknown color {colour!r}"),
    N_("Press any key to continue..."),
    N_("Choose from:\n\t{choices}"),
    N_("Choice({choices})"),
    N_("{value!r} is not a valid {number_type}."),
    N_("{value} is not in the range {range}."),
    N_("{value!r} is not a valid boolean. Recognized values: {states}"),
    N_("{value!r} is not a valid UUID."),
    N_("file"),
    N_("directory"),
    N_("path"),
    N_("{name} {filename!r} does not exist."),
    N_("{name} {filename!r} is a file."),
    N_("{name} {filename!r} is a directory."),
    N_("{name} {filename!r} is not readable."),
    N_("{name} {filename!r} is not writable."),
    N_("{name} {filename!r} is not executable."),
    N_("Unknown standard stream '{name}'"),
)


def plural_messages() -> list[str]:
    """click's counted messages."""
    return [
        ngettext(
            "Got unexpected extra argument ({args})", "Got unexpected extra arguments ({args})", 1
        ),
        ngettext(
            "Takes {nargs} values but 1 was given.", "Takes {nargs} values but {len} were given.", 1
        ),
        ngettext("Did you mean {possibility}?", "(Did you mean one of: {possibilities}?)", 1),
        ngettext(
            "Option {name!r} requires an argument.",
            "Option {name!r} requires {nargs} arguments.",
            1,
        ),
        ngettext("{value!r} is not {choice}.", "{value!r} is not one of {choices}.", 1),
        ngettext(
            "{value!r} does not match the format {format}.",
            "{value!r} does not match the formats {formats}.",
            1,
        ),
        ngettext(
            "{len_type} values are required, but {len_value} was given.",
            "{len_type} values are required, but {len_value} were given.",
            1,
        ),
    ]


if __name__ == "__main__":
    Path(__file__).write_text(_generate(), encoding="utf-8")
    sys.exit(0)
