"""`outreach preview`: one campaign's message for one contact, recorded nowhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from outreach.contacts import Contact
from outreach.deliver.outbox import write_atomic
from outreach.i18n import _
from outreach.model.campaigns import Campaign, Occurrence
from outreach.model.errors import OutreachError
from outreach.render.letter import LetterRenderer, letter_pdf, standalone_html
from outreach.render.templates import EmailRenderer
from outreach.rules.audience import campaign_audience
from outreach.rules.occurrences import next_occurrence
from outreach.workspace import Workspace


class PreviewRefusedError(OutreachError):
    """The contact would get no such message: a preview would show one nobody is sent."""


@dataclass(frozen=True, slots=True)
class Preview:
    """What `preview` shows: the message (text, or the path of a written PDF) and its occurrence."""

    content: str | Path
    occurrence: Occurrence
    due: bool  # the occurrence is due today; False: the next one, shown ahead of time


def _occurrence(
    workspace: Workspace, campaign: Campaign, contact: Contact, *, today: date
) -> Occurrence:
    """The contact's occurrence due today, else the next real one; refused when there is none
    or the contact is outside the audience (a preview never invents a date or a recipient)."""
    settings = workspace.settings
    if not campaign_audience(campaign, settings).matches(contact):
        raise PreviewRefusedError(
            _(
                "contact {contact} is not in the audience of {campaign}: "
                "no {campaign} message is made for them"
            ).format(contact=contact.id, campaign=campaign.name),
            path=campaign.path,
            hint=_(
                "see why with `outreach explain {contact}`, or preview a contact in the audience"
            ).format(contact=contact.id),
        )
    occurrence = next_occurrence(
        campaign, contact, today=today, date_format=settings.contacts.date_format
    )
    if occurrence is None:
        raise PreviewRefusedError(
            _(
                "contact {contact} has no {campaign} occurrence from {date} "
                "to a year later: no date for it in the contacts file, or the campaign is over"
            ).format(contact=contact.id, campaign=campaign.name, date=today.isoformat()),
            path=settings.paths.contacts,
            line=contact.line,
            hint=_("fill in the contact's date, or preview another contact"),
        )
    return occurrence


def render_preview(
    workspace: Workspace,
    *,
    contact_id: str,
    fmt: str,
    today: date,
    now: datetime,
    output: Path | None,
) -> Preview:
    """The text, HTML or .eml of the message, or the path of a written PDF, and the occurrence
    it is for; PreviewRefusedError when the contact would get no such message."""
    settings = workspace.settings
    campaign = workspace.campaigns[0]
    contact = next((c for c in workspace.contacts.contacts if c.id == contact_id), None)
    if contact is None:
        held = [p for p in workspace.contacts.problems if p.contact_id == contact_id]
        hint = (
            _("that row is held back: {problem}").format(problem=held[0])
            if held
            else _("check the id in the contacts file")
        )
        raise OutreachError(
            _("no usable contact {contact}").format(contact=repr(contact_id)),
            path=settings.paths.contacts,
            hint=hint,
        )
    occurrence = _occurrence(workspace, campaign, contact, today=today)
    content = _render(
        workspace, campaign, contact, occurrence, fmt=fmt, today=today, now=now, output=output
    )
    return Preview(content, occurrence, due=occurrence.earliest <= today <= occurrence.latest)


def _render(
    workspace: Workspace,
    campaign: Campaign,
    contact: Contact,
    occurrence: Occurrence,
    *,
    fmt: str,
    today: date,
    now: datetime,
    output: Path | None,
) -> str | Path:
    settings = workspace.settings
    if fmt == "pdf" or (fmt == "html" and campaign.email is None and campaign.letter is not None):
        if campaign.letter is None:
            raise OutreachError(
                _("campaign {campaign} has no letter").format(campaign=campaign.name),
                path=campaign.path,
                hint=_("use --format text, html or eml for its email"),
            )
        letter = LetterRenderer(settings=settings, campaign=campaign, today=today, now=now)
        rendered = letter.render(contact, occurrence)
        if fmt == "html":
            return standalone_html(rendered)
        target = output or settings.out_dir / "preview" / f"{campaign.name}-{contact.id}.pdf"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, letter_pdf(rendered))
        return target
    if campaign.email is None:
        raise OutreachError(
            _("campaign {campaign} has no email").format(campaign=campaign.name),
            path=campaign.path,
            hint=_("use --format pdf for its letter"),
        )
    renderer = EmailRenderer(settings=settings, campaign=campaign, today=today, now=now)
    if fmt == "eml":
        return renderer.render(contact, occurrence).data.decode("utf-8", "replace")
    subject, text, html = renderer.render_parts(contact, occurrence)
    if fmt == "html":
        if html is None:
            raise OutreachError(
                _("campaign {campaign} has no HTML template").format(campaign=campaign.name),
                path=campaign.path,
                hint=_("use --format text"),
            )
        return html
    return f"Subject: {subject}\n\n{text}"
