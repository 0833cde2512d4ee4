"""Cells of a contacts file as values: dates, email addresses, locales and countries."""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

from babel import Locale, UnknownLocaleError

from outreach.i18n import N_, _, language

# --- dates -------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_NUMERIC_DATE = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d+)")


def date_hint(date_format: str) -> str:
    """How to write a date under a `contacts.date_format`, for a Problem's hint."""
    example = "11/24/1990" if date_format == "MDY" else "24/11/1990"
    return _("write the date as {example} or 1990-11-24").format(example=example)


def _calendar_date(value: str, *, year: int, month: int, day: int, order: str) -> date:
    if not 1 <= month <= 12:
        if order == "DMY":
            said = _(
                "{value} has no month {month} (contacts.date_format reads it day first (DD/MM/YYYY))"
            )
        elif order == "MDY":
            said = _(
                "{value} has no month {month} (contacts.date_format reads it month first (MM/DD/YYYY))"
            )
        else:
            said = _("{value} has no month {month}")
        raise ValueError(said.format(value=repr(value), month=month))
    try:
        return date(year, month, day)
    except ValueError:
        raise ValueError(
            _("{value} is not in the calendar: {month_name} {year} has no day {day}").format(
                value=repr(value), month_name=_month_name(month), year=year, day=day
            )
        ) from None


def _month_name(month: int) -> str:
    """The month's name in the language the tool speaks ("February", "febrero")."""
    return str(Locale.parse(language()).months["format"]["wide"][month])


def parse_date(value: str, *, date_format: str) -> date:
    """ISO YYYY-MM-DD, or DD/MM/YYYY (DMY) / MM/DD/YYYY (MDY); ValueError otherwise."""
    if date_format not in ("DMY", "MDY"):
        raise ValueError(
            _("unknown date format {date_format} (use DMY or MDY)").format(
                date_format=repr(date_format)
            )
        )
    text = value.strip()
    iso = _ISO_DATE.fullmatch(text)
    if iso:
        year, month, day = (int(part) for part in iso.groups())
        return _calendar_date(text, year=year, month=month, day=day, order="ISO")
    numeric = _NUMERIC_DATE.fullmatch(text)
    if numeric:
        first, _sep, second, year_text = numeric.groups()
        if len(year_text) != 4:
            # 24/11/90 could be 1990 or 2090; guessing would put a wrong age in a letter.
            raise ValueError(_("{text} needs a four-digit year").format(text=repr(text)))
        day_text, month_text = (first, second) if date_format == "DMY" else (second, first)
        return _calendar_date(
            text, year=int(year_text), month=int(month_text), day=int(day_text), order=date_format
        )
    shape = "DD/MM/YYYY" if date_format == "DMY" else "MM/DD/YYYY"
    raise ValueError(
        _("{text} is not a date as {shape} or YYYY-MM-DD").format(text=repr(text), shape=shape)
    )


# --- email -------------------------------------------------------------------------------

# A strict subset of what email_validator accepts, normalised the same way (the domain
# lower-cased, the local part kept): plain ASCII addresses take this shortcut because
# validate_email costs ~25 µs, too much for 100k rows. Everything else goes to it. The
# lookaheads: a local part of at most 64, an address of at most 254, no "--" (IDNA's rules
# for xn-- labels stay with the library), and no special-use top-level domain (RFC 6761).
_PLAIN_EMAIL = re.compile(
    r"""
    (?=[^@]{1,64}@) (?=.{1,254}\Z) (?!.*--)
    [a-z0-9_+-]+ (?:\.[a-z0-9_+-]+)*
    @ (?:[a-z0-9] (?:[a-z0-9-]{0,61}[a-z0-9])? \.)+
    (?!(?:arpa|invalid|local|localhost|onion|test)\Z) [a-z]{2,63}
    """,
    re.ASCII | re.IGNORECASE | re.VERBOSE,
)


# What email_validator (2.x) says of an address, said in the catalog's words: the owner reads
# them in a row problem, in their language. One sentence a line, {chars} where the library
# names characters; their words follow in the same order. A sentence of the library's not here
# is shown as the library says it.
_LIBRARY_SENTENCES = """\
An email address must have an @-sign.
There must be something before the @-sign.
There must be something after the @-sign.
The part after the @-sign contains invalid characters: {chars}.
The email address contains invalid characters before the @-sign: {chars}.
Internationalized characters before the @-sign are not supported: {chars}.
An email address cannot have two periods in a row.
An email address cannot start with a period.
An email address cannot end with a period.
An email address cannot have a period immediately before the @-sign.
An email address cannot have a period immediately after the @-sign.
The part after the @-sign is not valid. It should have a period.
The part after the @-sign is not valid. It is not within a valid top-level domain.
The part after the @-sign is a special-use or reserved name that cannot be used with email.
There can't be anything after the email address.
The email address contains unsafe characters: {chars}.
A display name and angle brackets around the email address are not permitted here.
"""  # not translated: the library's own sentences, matched so as to say them in ours
_OUR_WORDS = (
    N_("it has no @"),
    N_("there is nothing before the @"),
    N_("there is nothing after the @"),
    N_("the part after the @ has characters an address cannot have: {chars}"),
    N_("the part before the @ has characters an address cannot have: {chars}"),
    N_("the part before the @ has letters that mail servers cannot carry there: {chars}"),
    N_("it has two dots in a row"),
    N_("it starts with a dot"),
    N_("it ends with a dot"),
    N_("it has a dot just before the @"),
    N_("it has a dot just after the @"),
    N_("the part after the @ has no dot (as in example.com)"),
    N_("the part after the @ does not end in a real domain (.es, .com…)"),
    N_("the part after the @ is a reserved name that receives no email"),
    N_("there is more after the address"),
    N_("it has characters that are not safe in an address: {chars}"),
    N_("it has a name and angle brackets around it: write the address alone"),
)
_LIBRARY_SAYS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(re.escape(sentence).replace(r"\{chars\}", "(?P<chars>.+)")), words)
    for sentence, words in zip(_LIBRARY_SENTENCES.splitlines(), _OUR_WORDS, strict=True)
)
# The one character the library names in English that people type in an address by mistake.
_SPACE = "SPACE"  # not translated: the library's name for it, matched


def library_words(said: str) -> str:
    """email_validator's sentence in the catalog's words (its own when it is not known)."""
    for pattern, words in _LIBRARY_SAYS:
        found = pattern.fullmatch(said)
        if found is not None:
            named = {k: _("a space") if v == _SPACE else v for k, v in found.groupdict().items()}
            return _(words).format(**named)
    return said


@lru_cache(maxsize=4096)
def _validated_email(address: str) -> str:
    # Imported here: the library compiles its grammar on import (~40 ms of every command's
    # start), and most address lists never leave the shortcut above.
    from email_validator import EmailNotValidError, validate_email

    # No SMTPUTF8: an address with a non-ASCII local part (josé@…) cannot be sent by the
    # SMTP step or written in a header as a plain address, so it is refused as it is read.
    try:
        return validate_email(address, check_deliverability=False, allow_smtputf8=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(library_words(str(exc))) from None


def normalize_email(address: str) -> str:
    """An email address in email_validator's normalised form; ValueError if invalid."""
    text = address.strip()
    if _PLAIN_EMAIL.fullmatch(text):
        local, _at, domain = text.rpartition("@")
        return f"{local}@{domain.lower()}"
    return _validated_email(text)


# --- locales and countries ---------------------------------------------------------------

# ISO 3166-1 alpha-2 (and XK, Kosovo, which postal services accept).
_COUNTRY_TEXT = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
    GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
    KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
    MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
    TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA
    ZM ZW
"""
COUNTRY_CODES = frozenset(_COUNTRY_TEXT.split())
# The languages whose country names a contacts file may use instead of the codes.
_NAME_LOCALES = ("en", "es", "ca", "eu", "gl", "pt", "fr", "de", "it")


@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for locale in _NAME_LOCALES:
        for code, name in Locale.parse(locale).territories.items():
            if code in COUNTRY_CODES:
                names.setdefault(str(name).casefold(), code)
    names.setdefault("united states of america", "US")  # not translated: a name to match
    return names


def country_by_name(name: str) -> str | None:
    """The ISO code of a country written by its name in one of a few languages, else None."""
    return _country_names().get(" ".join(name.split()).casefold())


@lru_cache(maxsize=256)
def normalize_locale(value: str) -> str:
    """`es`, `es-MX`, `en_gb` → babel's canonical `es`, `es_MX`, `en_GB`; ValueError if unknown."""
    try:
        return str(Locale.parse(value.strip().replace("-", "_")))
    except (ValueError, UnknownLocaleError):
        raise ValueError(_("{value} is not a known locale").format(value=repr(value))) from None
