"""Locales: a contact's or a business's locale as Babel reads it (`es`, `en_GB`, `en-gb`)."""

from __future__ import annotations

from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.languages import get_official_languages

from outreach.i18n import _


@lru_cache(maxsize=256)
def babel_locale(identifier: str, region: str | None = None) -> Locale:
    """The Babel locale for `es`, `en_GB`, `en-GB`…; its language alone if the region is unknown.

    A bare language takes the business's `region` when the pair exists: an English-speaking
    customer of a Spanish business reads dates the way people in Spain write them in English
    ("24 November 2026", en_ES), and of a US business the US way ("November 24, 2026").
    """
    normalized = normalize_locale(identifier)
    if region and "_" not in normalized:
        try:
            return Locale.parse(f"{normalized}_{region.upper()}")
        except (ValueError, UnknownLocaleError):
            pass
    try:
        return Locale.parse(normalized)
    except (ValueError, UnknownLocaleError):
        language = normalized.partition("_")[0]
        try:
            return Locale.parse(language)
        except (ValueError, UnknownLocaleError):
            raise ValueError(
                _("unknown locale {identifier}").format(identifier=repr(identifier))
            ) from None


@lru_cache(maxsize=1024)  # a handful of distinct values, asked several times per email
def normalize_locale(identifier: str) -> str:
    """`en-gb` → `en_GB`: language in lower case, a two-letter region in upper case."""
    parts = identifier.strip().replace("-", "_").split("_")
    parts[0] = parts[0].lower()
    return "_".join([parts[0], *(p.upper() if len(p) == 2 else p for p in parts[1:])])


@lru_cache(maxsize=4096)  # a few languages and countries, asked for every message
def _spoken_in(language: str, country: str | None) -> bool:
    """Whether `language` is an official (or de facto) language of `country`."""
    if not country:
        return False
    return language in get_official_languages(country.upper(), de_facto=True)


def writing_locale(
    identifier: str, *, country: str | None, home: str | None, money: bool = False
) -> Locale:
    """The Babel locale a message writes its dates (or, `money`, its amounts) in.

    `identifier` is the message's language (the template's). A region in it decides. Else the
    contact's `country` where that language is spoken (`en` in the US: en_US, "€25.00",
    "November 24, 2026"). Else dates follow the business's `home` country (en_ES: "24 November
    2026") and amounts the business's country only where the language is spoken there, the
    language's own way otherwise (`en` for a customer in Spain: "€25.00", never "25,00 €").
    """
    normalized = normalize_locale(identifier)
    if "_" in normalized:
        return babel_locale(normalized)
    if _spoken_in(normalized, country):
        return babel_locale(normalized, country)
    if money and not _spoken_in(normalized, home):
        return babel_locale(normalized)
    return babel_locale(normalized, home)
