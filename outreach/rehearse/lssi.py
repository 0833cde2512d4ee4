"""What Spanish law asks of a commercial email, checked by `validate` (LSSI art. 20, 21, 22).

A marketing campaign's email must offer a free, simple opt-out (config `unsubscribe:` and a
link to it in the body) and must identify the sender (`sender:` name and postal address, in the
body). Both are errors. A promotion whose body says nothing of when it ends or on what terms
is a warning (LSSI art. 20.2: the conditions of a promotional offer must be clear).
"""

from __future__ import annotations

import html as html_module
from collections.abc import Iterator, Sequence
from datetime import date, datetime

from outreach.contacts import Contact
from outreach.i18n import _
from outreach.model.campaigns import Campaign, Occurrence
from outreach.model.config import Settings
from outreach.model.errors import OutreachError, Problem
from outreach.render.templates import EmailRenderer

# Words that say a promotion's terms or end (Spanish and English, as the sample writes them).
_TERMS = ("condiciones", "conditions", "válid", "valid", "hasta", "until", "termina", "ends")


def lssi_problems(
    campaign: Campaign,
    *,
    settings: Settings,
    contacts: Sequence[Contact],
    today: date,
    now: datetime,
) -> Iterator[Problem]:
    """The campaign's legal problems: blocking ones first, then the promotion warning."""
    if campaign.purpose != "marketing" or campaign.email is None:
        return
    template = campaign.email.html or campaign.email.text
    if not (settings.unsubscribe.url or settings.unsubscribe.mailto):
        yield _problem(
            campaign,
            template,
            _("a marketing email needs an opt-out, and config.yaml has no `unsubscribe:`"),
            hint=_(
                "add unsubscribe: url (and/or mailto) to config.yaml and a link to "
                "{{ unsubscribe_url }} in the template"
            ),
        )
    address = settings.sender.address
    if not (address.street and (address.postal_code or address.city)):
        yield _problem(
            campaign,
            template,
            _(
                "a marketing email must say who sends it, and config.yaml `sender.address` "
                "has no street and postal code or city"
            ),
            hint=_("add sender: address: street, postal_code, city to config.yaml"),
        )
        return
    body = _sample_body(campaign, settings=settings, contacts=contacts, today=today, now=now)
    if body is None:
        return  # nobody to render it for: the run's own checks report why
    yield from _body_problems(campaign, template, body=body, settings=settings)


def _body_problems(
    campaign: Campaign, template: str, *, body: tuple[str, str], settings: Settings
) -> Iterator[Problem]:
    text, unsubscribe = body
    if unsubscribe and unsubscribe not in text:
        yield _problem(
            campaign,
            template,
            _(
                "the rendered email has no unsubscribe link in its body (LSSI art. 21: a free, "
                "simple way to opt out in every commercial message)"
            ),
            hint=_("add {{ unsubscribe_url }} to the text and HTML templates"),
        )
    sender, address = settings.sender, settings.sender.address
    missing = [
        value
        for value in (sender.name, address.street, address.postal_code or address.city)
        if value and value not in text
    ]
    if missing:
        yield _problem(
            campaign,
            template,
            _(
                "the rendered email does not identify the sender (LSSI art. 20: name and postal "
                "address); it lacks {missing}"
            ).format(missing=", ".join(repr(v) for v in missing)),
            hint=_(
                "add {{ sender.name }} and {{ sender.address.street }}, "
                "{{ sender.address.postal_code }} {{ sender.address.city }} to the templates"
            ),
        )
    if campaign.kind == "promotion" and not _says_terms(campaign, text):
        yield _problem(
            campaign,
            template,
            _("the promotion's email says nothing of its end date or conditions"),
            hint=_("say until when it runs and on what terms (e.g. {{ campaign.end }})"),
            blocking=False,
        )


def _says_terms(campaign: Campaign, text: str) -> bool:
    """Whether the body names the promotion's end (its year or date) or its conditions."""
    folded = text.casefold()
    end = campaign.end
    if end is not None and (end.isoformat() in text or str(end.year) in text):
        return True
    return any(word in folded for word in _TERMS)


def _sample_body(
    campaign: Campaign,
    *,
    settings: Settings,
    contacts: Sequence[Contact],
    today: date,
    now: datetime,
) -> tuple[str, str] | None:
    """The first renderable contact's email, text and HTML as read, and its unsubscribe link."""
    from outreach.render.templates import unsubscribe_url

    try:
        renderer = EmailRenderer(settings=settings, campaign=campaign, today=today, now=now)
    except OutreachError:
        return None
    occurrence = Occurrence(campaign.name, "lssi", today, today, today)
    for contact in contacts[:20]:
        if not contact.email:
            continue
        try:
            _subject, text, html = renderer.render_parts(contact, occurrence)
        except OutreachError:
            continue
        link = unsubscribe_url(settings, contact) or settings.unsubscribe.mailto or ""
        return text + "\n" + html_module.unescape(html or ""), link.split("{", 1)[0]
    return None


def _problem(
    campaign: Campaign, template: str, message: str, *, hint: str, blocking: bool = True
) -> Problem:
    return Problem(
        _("campaign {name}, template {template}: {message}").format(
            name=campaign.name, template=template, message=message
        ),
        path=str(campaign.path),
        field="email",
        campaign=campaign.name,
        hint=hint,
        blocking=blocking,
    )
