"""What validate can tell about deliverability without looking anything up.

A From address at a free-mail provider sent through another server, a VERP return path or a
DKIM domain not aligned with From's (DMARC, RFC 7489 3.1), and text hidden in the email
templates (a tiny font, text in the background's colour) that spam filters count against the
message. `outreach doctor` looks the published records up; these are the offline half.

Organizational domains are found without the Public Suffix List: the last two labels, or
three under a two-letter country code whose second level is a generic one (co.uk, com.es).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from outreach.i18n import _
from outreach.model.config import Settings

_SECOND_LEVELS: Final = frozenset({"co", "com", "org", "net", "gov", "gob", "ac", "edu", "nom"})

_GOOGLE = ("gmail.com", "google.com", "googlemail.com")
_MICROSOFT = ("outlook.com", "office365.com", "hotmail.com", "live.com")
_YAHOO = ("yahoo.com", "yahoo.net")
_APPLE = ("icloud.com", "me.com", "mac.com")
_GMX = ("gmx.com", "gmx.net")
# Free-mail domain → the domains of its own submission servers. These providers publish DMARC
# policies that make receivers refuse or junk their From sent through anyone else's server.
FREE_MAIL: Final[dict[str, tuple[str, ...]]] = {
    "gmail.com": _GOOGLE,
    "googlemail.com": _GOOGLE,
    "hotmail.com": _MICROSOFT,
    "hotmail.es": _MICROSOFT,
    "outlook.com": _MICROSOFT,
    "outlook.es": _MICROSOFT,
    "live.com": _MICROSOFT,
    "msn.com": _MICROSOFT,
    "yahoo.com": _YAHOO,
    "yahoo.es": _YAHOO,
    "ymail.com": _YAHOO,
    "icloud.com": _APPLE,
    "me.com": _APPLE,
    "mac.com": _APPLE,
    "aol.com": ("aol.com",),
    "gmx.com": _GMX,
    "gmx.net": _GMX,
    "gmx.de": _GMX,
    "gmx.es": _GMX,
    "web.de": ("web.de",),
    "proton.me": ("proton.me", "protonmail.ch"),
    "protonmail.com": ("proton.me", "protonmail.ch"),
    "yandex.com": ("yandex.com", "yandex.net", "yandex.ru"),
    "yandex.ru": ("yandex.com", "yandex.net", "yandex.ru"),
    "mail.ru": ("mail.ru",),
    "zoho.com": ("zoho.com", "zoho.eu"),
}


def domain_of(address: str) -> str:
    """The domain of an address, lower-case."""
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def organizational_domain(domain: str) -> str:
    """The registered domain under its public suffix (an approximation, see the module doc)."""
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVELS:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def aligned(domain: str, from_domain: str, *, strict: bool = False) -> bool:
    """DMARC identifier alignment (RFC 7489 3.1) of `domain` with From's domain."""
    if strict:
        return domain.lower() == from_domain.lower()
    return organizational_domain(domain) == organizational_domain(from_domain)


def sender_warnings(settings: Settings) -> list[str]:
    """Warnings about the sender's domains that need no DNS lookup."""
    warnings = []
    from_domain = domain_of(settings.sender.email)
    delivery = settings.delivery
    own = FREE_MAIL.get(from_domain)
    host = (delivery.host or "").lower().rstrip(".")
    if own is not None and delivery.method == "smtp" and not _under(host, own):
        warnings.append(
            _(
                "sender.email is at {domain}, a free-mail provider, but emails go through "
                "{host}: {domain} publishes a DMARC policy that makes receivers refuse or junk "
                "its address sent from any other server — send through {domain}'s own server, "
                "or use an address at your own domain"
            ).format(domain=from_domain, host=host)
        )
    return_path = settings.bounces.return_path
    if return_path and not aligned(domain_of(return_path), from_domain):
        warnings.append(
            _(
                "bounces.return_path is at {return_domain} and From at {domain}: SPF "
                "then passes for {return_domain}, which DMARC does not count for "
                "{domain} — use a return path under {organization} "
                "(e.g. {example}), or sign with DKIM for {domain}"
            ).format(
                return_domain=domain_of(return_path),
                domain=from_domain,
                organization=organizational_domain(from_domain),
                example=f"rebotes+{{token}}@{from_domain}",
            )
        )
    dkim = settings.dkim
    if dkim is not None and not aligned(dkim.domain, from_domain):
        warnings.append(
            _(
                "dkim.domain is {dkim_domain} and From at {domain}: the signature does not "
                "count for DMARC — sign for {domain} (or a name under {organization})"
            ).format(
                dkim_domain=dkim.domain,
                domain=from_domain,
                organization=organizational_domain(from_domain),
            )
        )
    return warnings


def _under(host: str, domains: Iterable[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


# -- invisible text -------------------------------------------------------------------------------

_BLOCK = re.compile(r"\{([^{}]*)\}|\bstyle\s*=\s*\"([^\"]*)\"|\bstyle\s*=\s*'([^']*)'", re.I)
_BGCOLOR_ATTRIBUTE = re.compile(r"\bbgcolor\s*=\s*[\"']?(#?\w+)", re.I)
_NAMED = {"white": "#ffffff", "black": "#000000", "transparent": "transparent"}
_SIZE = re.compile(r"^(\d*\.?\d+)(px|pt|em|rem|%)?$")


@dataclass(frozen=True, slots=True)
class HiddenText:
    """A CSS rule in a template that hides text the way spam filters look for."""

    path: Path
    line: int
    why: str


def _colour(value: str) -> str | None:
    value = value.strip().lower().removesuffix("!important").strip()
    value = _NAMED.get(value, value)
    if re.fullmatch(r"#[0-9a-f]{3}", value):
        return "#" + "".join(c * 2 for c in value[1:])
    return value if re.fullmatch(r"#[0-9a-f]{6}", value) else None


def _declarations(text: str) -> dict[str, str]:
    found = {}
    for part in text.split(";"):
        name, colon, value = part.partition(":")
        if colon:
            found[name.strip().lower()] = value.strip().lower()
    return found


def _background(rule: dict[str, str]) -> str | None:
    for name in ("background-color", "background"):
        if name in rule:
            for word in rule[name].split():
                colour = _colour(word)
                if colour is not None:
                    return colour
    return None


def _tiny(size: str) -> bool:
    match = _SIZE.match(size.removesuffix("!important").strip())
    if match is None:
        return False
    number, unit = float(match.group(1)), match.group(2) or "px"
    return number <= 1 if unit in ("px", "pt") else number == 0


def hidden_text(text: str, *, path: Path) -> list[HiddenText]:
    """The rules of one template (its <style> and style="" attributes) that hide text."""
    rules = [
        (m.start(), _declarations(next(g for g in m.groups() if g is not None)))
        for m in _BLOCK.finditer(text)
    ]
    backgrounds = {c for _, rule in rules if (c := _background(rule)) is not None}
    backgrounds |= {c for m in _BGCOLOR_ATTRIBUTE.finditer(text) if (c := _colour(m.group(1)))}
    found = []
    for start, rule in rules:
        why = []
        if "font-size" in rule and _tiny(rule["font-size"]):
            why.append(f"font-size: {rule['font-size']}")
        colour = _colour(rule.get("color", ""))
        own = _background(rule)
        if colour is not None and (colour == own or (own is None and colour in backgrounds)):
            why.append(_("color {colour}, the colour of the background").format(colour=colour))
        if rule.get("visibility") == "hidden":
            why.append("visibility: hidden")
        if rule.get("opacity", "1").strip() in {"0", "0.0"}:
            why.append("opacity: 0")
        if why:
            found.append(HiddenText(path, text.count("\n", 0, start) + 1, "; ".join(why)))
    return found


def template_warnings(templates_dir: Path, *, letter_templates: Sequence[str]) -> list[str]:
    """Warnings about invisible text in the email templates (letters are left alone)."""
    stems = {name.partition(".")[0] for name in letter_templates}
    warnings = []
    files = sorted(
        p
        for p in templates_dir.rglob("*")
        if p.is_file() and (".html" in p.name or p.suffix == ".css" or p.name.endswith(".css.j2"))
    )
    for path in files:
        if path.name.partition(".")[0] in stems:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # the run itself reports a template it cannot read
        for hidden in hidden_text(text, path=path.relative_to(templates_dir.parent)):
            warnings.append(
                _(
                    "{path}:{line}: invisible text ({why}): spam filters count "
                    "it against the email (SpamAssassin HTML_FONT_LOW_CONTRAST, FONT_INVIS_MSGID) "
                    "— hide a preheader with display: none; max-height: 0; overflow: hidden, and "
                    "nothing else"
                ).format(path=hidden.path, line=hidden.line, why=hidden.why)
            )
    return warnings
