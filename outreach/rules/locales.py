"""Locales: a contact's or a business's locale as Babel reads it (`es`, `en_GB`, `en-gb`)."""

from __future__ import annotations

from functools import lru_cache

from babel import Locale, UnknownLocaleError


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
            raise ValueError(f"unknown locale {identifier!r}") from None


@lru_cache(maxsize=1024)  # a handful of distinct values, asked several times per email
def normalize_locale(identifier: str) -> str:
    """`en-gb` → `en_GB`: language in lower case, a two-letter region in upper case."""
    parts = identifier.strip().replace("-", "_").split("_")
    parts[0] = parts[0].lower()
    return "_".join([parts[0], *(p.upper() if len(p) == 2 else p for p in parts[1:])])
