"""The tool's own words in the owner's language: gettext catalogs for Spanish and English.

Every sentence the tool says to the person running it (CLI output and `--help`, problems and
hints, reasons, rehearsals, the report, the daemon's log lines for people) is written in English
in the sources and goes through this module:

    from outreach.i18n import _, ngettext, N_

    _("no contacts file at {path}").format(path=path)
    ngettext("{n} letter", "{n} letters", n).format(n=n)
    REASON = N_("opted out")      # marked where it is defined, translated where it is said: _(REASON)

Placeholders are named (`{path}`), never positional and never an f-string: the translator moves
them. Structured data (`--json` keys, reason codes, exit codes) is never translated.

Which language: `language:` in config.yaml (`use(settings.language)` when the config is read);
before a config is read, and when it names none, the environment as gettext reads it
(LANGUAGE, LC_ALL, LC_MESSAGES, LANG). English when nothing says otherwise. Messages to customers
follow their templates and the contact's locale, never this.

The catalogs live in `outreach/locale/<lang>/LC_MESSAGES/outreach.po`, compiled beside them as
`.mo` (shipped compiled; `make catalogs` extracts, updates and compiles; the suite checks the
compiled files against the sources).
"""

from __future__ import annotations

import gettext as _gettext
import os
from pathlib import Path

DOMAIN = "outreach"
LOCALE_DIR = Path(__file__).parent / "locale"
# The languages the tool speaks; the first is the sources' own.
LANGUAGES = ("en", "es")
DEFAULT = "en"

_current: _gettext.NullTranslations = _gettext.NullTranslations()
_language = DEFAULT


def _(message: str) -> str:
    """`message` in the current language (itself when the catalog has no translation)."""
    return _current.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form for `n` in the current language (English's rule in the sources), unformatted."""
    return _current.ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """`message` in the current language, as said in `context` (one English word that Spanish
    says two ways: the status "sent" of one message, the column "sent" of many)."""
    return _current.pgettext(context, message)


def N_(message: str) -> str:
    """Mark `message` for the catalog where it is defined; translate it with `_` where it is
    said (module constants are built before any language is chosen)."""
    return message


def language() -> str:
    """The language the tool speaks now: "es" or "en"."""
    return _language


def from_environment(environ: os._Environ[str] | dict[str, str] | None = None) -> str:
    """The language the environment asks for, as gettext reads it: the first of LANGUAGE
    (a colon list), LC_ALL, LC_MESSAGES, LANG that is set; its first language the tool speaks,
    English for C/POSIX or one it does not speak."""
    env = os.environ if environ is None else environ
    for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(variable, "")
        if not value:
            continue
        for item in value.split(":"):
            code = item.split(".")[0].split("@")[0].split("_")[0].lower()
            if code in LANGUAGES:
                return code
        return DEFAULT
    return DEFAULT


def use(chosen: str | None) -> str:
    """Speak `chosen` ("es" or "en"; None: what the environment asks for) from now on, in this
    process and the workers it forks. Returns the language in use."""
    global _current, _language
    code = chosen or from_environment()
    if code not in LANGUAGES:
        code = DEFAULT
    _current = _gettext.translation(DOMAIN, LOCALE_DIR, languages=[code], fallback=True)
    _language = code
    return code
