"""`outreach validate`: everything that can be checked before a run, without writing anything."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from outreach.audience import compile_audience
from outreach.campaigns import Campaign, Occurrence, load_campaign, occurrences_between
from outreach.config import Coupon, Settings
from outreach.contacts import Contact, load_contacts
from outreach.deliver.printing import harfbuzz_subset_available
from outreach.errors import OutreachError, Problem
from outreach.render.letter import LetterRenderer
from outreach.render.templates import EmailRenderer
from outreach.runner import address_gaps, choose_channel
from outreach.workspace import campaign_files, display_path

# hook: (campaign name, its contacts) -> the same contacts, for a progress bar (issue 13)
ContactProgress = Callable[[str, Sequence[Contact]], Iterable[Contact]]


@dataclass
class ValidationReport:
    """What validate found: lines to show, blocking problems, and per-contact problems."""

    lines: list[str] = field(default_factory=list)
    blocking: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "ok": not self.blocking,
            "summary": self.lines,
            "blocking": [p.as_dict() for p in self.blocking],
            "warnings": [p.as_dict() for p in self.warnings],
        }


def next_occurrence(
    campaign: Campaign, contact: Contact, *, today: date, date_format: str
) -> Occurrence | None:
    """The occurrence due today, else the next one within a year, else None."""
    found = occurrences_between(
        campaign, contact, start=today, end=today + timedelta(days=366), date_format=date_format
    )
    return found[0] if found else None


def _check_campaign(
    settings: Settings,
    campaign: Campaign,
    contacts: tuple[Contact, ...],
    *,
    today: date,
    now: datetime,
    report: ValidationReport,
    progress: ContactProgress | None = None,
) -> None:
    matches = compile_audience(campaign.audience, path=campaign.path)
    letters = (
        LetterRenderer(settings=settings, campaign=campaign, today=today, now=now)
        if campaign.letter
        else None
    )
    emails = (
        EmailRenderer(settings=settings, campaign=campaign, today=today, now=now)
        if campaign.email
        else None
    )
    fmt = settings.contacts.date_format
    audience = rendered = failed = 0
    # hook: a progress bar per campaign (issue 13)
    for contact in progress(campaign.name, contacts) if progress is not None else contacts:
        try:
            if not matches(contact):
                continue
            audience += 1
            occurrence = next_occurrence(campaign, contact, today=today, date_format=fmt)
            if occurrence is None:
                continue
            channel, _ = choose_channel(campaign, contact, {})
            if channel is None and campaign.channel in ("letter", "preferred"):
                gaps = address_gaps(contact)
                if gaps and (contact.preferred_channel == "letter" or campaign.channel == "letter"):
                    report.warnings.append(
                        Problem(
                            message=f"no letter possible: the postal address lacks {', '.join(gaps)}",
                            path=str(display_path(settings.contacts_path)),
                            line=contact.line,
                            field=gaps[0],
                            contact_id=contact.id,
                            campaign=campaign.name,
                            hint="complete the address in the contacts file",
                        )
                    )
            if channel == "email" and emails is not None:
                emails.render(contact, occurrence)
            elif channel == "letter" and letters is not None:
                letters.render(contact, occurrence)
            rendered += 1
        except OutreachError as exc:
            failed += 1
            report.warnings.append(exc.as_problem(contact_id=contact.id, campaign=campaign.name))
    report.lines.append(
        f"campaign {campaign.name} ({campaign.kind}, {campaign.channel}): {audience} in the audience, "
        f"{rendered} rendered, {failed} failed"
    )


def validate_workspace(
    settings: Settings,
    *,
    today: date,
    now: datetime,
    progress: ContactProgress | None = None,  # hook: issue 13
) -> ValidationReport:
    """Check contacts, every campaign, and every template for every contact that could be due.

    `progress(campaign, contacts)` wraps each campaign's walk through the contacts.
    """
    report = ValidationReport(lines=[f"config {display_path(settings.root / 'config.yaml')}: ok"])
    if settings.coupon.secret == Coupon().secret:
        report.lines.append(
            "warning: coupon.secret is the placeholder 'change-me': anyone who knows outreach "
            "can work out your coupon codes and unsubscribe tokens — set your own secret"
        )
    if not harfbuzz_subset_available():
        report.lines.append(
            "warning: the HarfBuzz subsetter (Debian package libharfbuzz-subset0) is missing: "
            "letters will print about 8x slower — install it with apt-get"
        )
    try:
        contact_list = load_contacts(
            display_path(settings.contacts_path),
            settings=settings.contacts,
            default_locale=settings.default_locale,
        )
    except OutreachError as exc:
        report.blocking.append(exc.as_problem(blocking=True))
        return report
    report.warnings.extend(contact_list.problems)
    report.lines.append(
        f"contacts {settings.paths.contacts}: {contact_list.rows} rows, "
        f"{len(contact_list.contacts)} usable, {len(contact_list.problems)} problem(s)"
    )
    campaigns: list[Campaign] = []
    names: dict[str, str] = {}
    try:
        files = campaign_files(settings)
    except OutreachError as exc:
        report.blocking.append(exc.as_problem(blocking=True))
        files = []
    for path in files:
        try:
            campaign = load_campaign(path, templates_dir=settings.templates_dir)
        except OutreachError as exc:
            report.blocking.append(exc.as_problem(blocking=True))
            continue
        if campaign.name in names:
            report.blocking.append(
                Problem(
                    message=f"campaign name {campaign.name!r} is also used by {names[campaign.name]}",
                    path=str(path),
                    field="name",
                    blocking=True,
                    hint="give each campaign its own name",
                )
            )
            continue
        names[campaign.name] = str(path)
        campaigns.append(campaign)
    for campaign in campaigns:
        try:
            _check_campaign(
                settings,
                campaign,
                contact_list.contacts,
                today=today,
                now=now,
                report=report,
                progress=progress,  # hook: issue 13
            )
        except OutreachError as exc:
            report.blocking.append(exc.as_problem(blocking=True, campaign=campaign.name))
    return report
