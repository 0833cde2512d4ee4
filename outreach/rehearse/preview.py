"""`outreach preview`: one campaign's message for one contact, recorded nowhere."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from outreach.deliver.outbox import write_atomic
from outreach.model.campaigns import Occurrence
from outreach.model.errors import OutreachError
from outreach.render.letter import LetterRenderer, letter_pdf, standalone_html
from outreach.render.templates import EmailRenderer
from outreach.rules.occurrences import next_occurrence
from outreach.workspace import Workspace


def render_preview(
    workspace: Workspace,
    *,
    contact_id: str,
    fmt: str,
    today: date,
    now: datetime,
    output: Path | None,
) -> str | Path:
    """The text, HTML or .eml of the message as a string, or the path of a written PDF."""
    settings = workspace.settings
    campaign = workspace.campaigns[0]
    contact = next((c for c in workspace.contacts.contacts if c.id == contact_id), None)
    if contact is None:
        held = [p for p in workspace.contacts.problems if p.contact_id == contact_id]
        hint = f"that row is held back: {held[0]}" if held else "check the id in the contacts file"
        raise OutreachError(
            f"no usable contact {contact_id!r}", path=settings.paths.contacts, hint=hint
        )
    occurrence = next_occurrence(
        campaign, contact, today=today, date_format=settings.contacts.date_format
    ) or Occurrence(campaign=campaign.name, key="preview", date=today, earliest=today, latest=today)
    if fmt == "pdf" or (fmt == "html" and campaign.email is None and campaign.letter is not None):
        if campaign.letter is None:
            raise OutreachError(
                f"campaign {campaign.name} has no letter",
                path=campaign.path,
                hint="use --format text, html or eml for its email",
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
            f"campaign {campaign.name} has no email",
            path=campaign.path,
            hint="use --format pdf for its letter",
        )
    renderer = EmailRenderer(settings=settings, campaign=campaign, today=today, now=now)
    if fmt == "eml":
        return renderer.render(contact, occurrence).data.decode("utf-8", "replace")
    subject, text, html = renderer.render_parts(contact, occurrence)
    if fmt == "html":
        if html is None:
            raise OutreachError(
                f"campaign {campaign.name} has no HTML template",
                path=campaign.path,
                hint="use --format text",
            )
        return html
    return f"Subject: {subject}\n\n{text}"
