"""`outreach validate`: everything that can be checked before a run, without writing anything.

The campaigns are checked by the run itself: `execute_run` over every occurrence due within a
year, on an in-memory store, with the render-only outlet — every email rendered, every letter
laid out by WeasyPrint and checked against its envelope's windows, nothing kept. What
validate passes, the run makes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path

from outreach.contacts import Contact, ContactList, load_contacts
from outreach.deliver.alignment import sender_warnings, template_warnings
from outreach.deliver.outlets import RenderOnlyOutlet
from outreach.deliver.printing import harfbuzz_subset_available
from outreach.i18n import _, ngettext
from outreach.ledger import Ledger, RunStore, Seed, ledger_exists, read_ledger, rehearsal
from outreach.model.campaigns import Campaign, load_campaign
from outreach.model.config import CONFIG_NAME, Coupon, Settings
from outreach.model.errors import LedgerError, OutreachError, Problem
from outreach.model.reasons import Code
from outreach.pipeline.decide import Decision, RunDates
from outreach.pipeline.run import RunOptions, execute_run
from outreach.rehearse.lssi import lssi_problems
from outreach.rules.known import confirmation_lapsed
from outreach.rules.legal import FORGOTTEN, is_forgotten
from outreach.rules.postal import address_gaps, confirmed_by_owner
from outreach.workspace import Workspace, campaign_files, display_path

# validate renders every occurrence due within this many days.
YEAR = 366
# Wraps the contacts as the run takes them, for a progress bar.
ContactProgress = Callable[[Iterator[Contact]], Iterator[Contact]]


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


@dataclass
class _CampaignCheck:
    """What validate's run saw for one campaign."""

    audience: set[str] = field(default_factory=set)
    rendered: int = 0
    failed: int = 0
    # contacts whose language has no template variant: they get the default language
    default_language: dict[str, Contact] = field(default_factory=dict)
    # letters the post could no longer deliver in time: missed, or sent by email instead
    too_late: Counter[str] = field(default_factory=Counter)
    # contacts a marketing message could not go to: no consent, customer or other basis
    no_basis: set[str] = field(default_factory=set)


def _check_campaigns(
    workspace: Workspace,
    *,
    contacts: Sequence[Contact],
    store: RunStore,
    today: date,
    now: datetime,
    report: ValidationReport,
    progress: ContactProgress | None = None,
) -> None:
    """The run itself over every occurrence due within a year, with the render-only outlet."""
    settings = workspace.settings
    checks = {c.name: _CampaignCheck() for c in workspace.campaigns}
    note = partial(
        _note,
        checks=checks,
        by_id={c.id: c for c in contacts},
        contacts_path=str(display_path(settings.contacts_path)),
        report=report,
    )
    summary = execute_run(
        workspace=workspace,
        store=store,
        outlet=RenderOnlyOutlet(
            settings=settings,
            campaigns=workspace.campaigns,
            today=today,
            now=now,
            layout_once=True,
        ),
        dates=RunDates(today, until=today + timedelta(days=YEAR)),
        clock=lambda: now,
        observer=note,
        contacts=list(contacts),
        options=RunOptions(args=("validate",), progress=progress),
    )
    seen: set[tuple[str | None, str | None, str]] = set()
    by_id = {c.id: c for c in contacts}
    contacts_path = str(display_path(settings.contacts_path))
    for campaign_summary in summary.campaigns:
        for problem in campaign_summary.problems:
            # One template error shows up for every occurrence of a contact: once is enough.
            key = (problem.contact_id, problem.campaign, problem.message)
            if key not in seen:
                seen.add(key)
                report.warnings.append(_at_contact_row(problem, by_id, contacts_path))
    totals = {c.name: c for c in summary.campaigns}
    for campaign in workspace.campaigns:
        report.lines += _campaign_lines(
            campaign,
            check=checks[campaign.name],
            merged=totals[campaign.name].merged,
            settings=settings,
        )


def _note(
    event: Decision,
    *,
    checks: dict[str, _CampaignCheck],
    by_id: dict[str, Contact],
    contacts_path: str,
    report: ValidationReport,
) -> None:
    """Count what validate's run decided for one contact and campaign (its observer)."""
    check = checks[event.campaign]
    outcome = event.outcome
    if outcome == "not in audience":  # not translated: an outcome code
        return
    if event.reason is not None and event.reason.code is Code.LETTER_TOO_LATE:
        check.too_late[outcome] += 1
    check.audience.add(event.contact_id)
    if outcome == "send":
        check.rendered += 1
        if not event.own_language:
            check.default_language.setdefault(event.contact_id, by_id[event.contact_id])
    elif outcome == "failed":
        check.failed += 1
        if event.channel == "letter":
            check.rendered -= 1  # a letter's "send" is heard when decided, before layout
    elif outcome == "skipped" and event.reason is not None:
        reason = event.reason
        if reason.code is Code.NO_LEGAL_BASIS:
            check.no_basis.add(event.contact_id)
        if reason.code is Code.INCOMPLETE_ADDRESS:
            contact = by_id[event.contact_id]
            report.warnings.append(
                _no_letter(contact, campaign=event.campaign, contacts_path=contacts_path)
            )


def _at_contact_row(problem: Problem, by_id: dict[str, Contact], contacts_path: str) -> Problem:
    """A contact's problem that names no file (a letter that does not fit its envelope's
    window) placed at the contact's row, where it is put right."""
    contact = by_id.get(problem.contact_id or "")
    if problem.path is not None or contact is None:
        return problem
    return replace(problem, path=contacts_path, line=contact.line)


def _no_letter(contact: Contact, *, campaign: str, contacts_path: str) -> Problem:
    """The warning for a contact whose postal address cannot carry a letter."""
    gaps = address_gaps(contact)
    return Problem(
        message=_(
            "no letter possible: the postal code does not fit its country "
            "or region (see the contacts file's problems)"
        )
        if "postal_code" in contact.held_back
        else _("no letter possible: the postal address lacks {fields}").format(
            fields=", ".join(gaps)
        ),
        path=contacts_path,
        line=contact.line,
        field=gaps[0] if gaps else "street",
        contact_id=contact.id,
        campaign=campaign,
        hint=_("complete the address in the contacts file"),
    )


def _campaign_lines(
    campaign: Campaign, *, check: _CampaignCheck, merged: int, settings: Settings
) -> list[str]:
    """What validate says about one campaign: its counts, then what the run had to work around."""
    # Contacts in the audience, messages made: a year holds two birthdays of some contacts.
    rendered = ngettext("{n} message rendered", "{n} messages rendered", check.rendered).format(
        n=check.rendered
    )
    lines = [
        _(
            "campaign {name} ({kind}, {channel}): {audience} in the audience, {rendered}, "
            "{failed} failed"
        ).format(
            name=campaign.name,
            kind=campaign.kind,
            channel=campaign.channel,
            audience=len(check.audience),
            rendered=rendered,
            failed=check.failed,
        )
    ]
    lines.append(_purpose_line(campaign, no_basis=len(check.no_basis)))
    if merged:
        lines.append(
            ngettext(
                "  households: {n} letter saved (contacts at one postal address share one "
                "letter; letters.households: separate writes one each)",
                "  households: {n} letters saved (contacts at one postal address share one "
                "letter; letters.households: separate writes one each)",
                merged,
            ).format(n=merged)
        )
    if check.too_late:
        missed, emailed = check.too_late["missed"], check.too_late["send"]
        lines.append(
            ngettext(
                "  {n} letter could not arrive in time (letters.delivery_days {days}): "
                "{emailed} go by email instead, {missed} missed — a run earlier in the window "
                "posts them in time",
                "  {n} letters could not arrive in time (letters.delivery_days {days}): "
                "{emailed} go by email instead, {missed} missed — a run earlier in the window "
                "posts them in time",
                missed + emailed,
            ).format(
                n=missed + emailed,
                days=settings.letters.delivery_days,
                emailed=emailed,
                missed=missed,
            )
        )
    if check.default_language:
        people = sorted(check.default_language.values(), key=lambda c: c.line)
        listed = ", ".join(
            _("{id} ({locale}, line {line})").format(id=c.id, locale=c.locale, line=c.line)
            for c in people[:20]
        )
        more = _(" and {n} more").format(n=len(people) - 20) if len(people) > 20 else ""
        lines.append(
            ngettext(
                "  {n} contact gets {campaign} in the default language ({locale}): no "
                "template variant for their language: {listed}{more}",
                "  {n} contacts get {campaign} in the default language ({locale}): no "
                "template variant for their language: {listed}{more}",
                len(people),
            ).format(
                n=len(people),
                campaign=campaign.name,
                locale=settings.default_locale,
                listed=listed,
                more=more,
            )
        )
    return lines


def _purpose_line(campaign: Campaign, *, no_basis: int) -> str:
    """What the campaign's purpose means (the defaults said), and who it cannot reach."""
    if campaign.purpose == "service":
        return _(
            "  purpose: service (reminders and birthdays without a coupon, unless the file says "
            "`purpose: marketing`): "
            "no consent needed, and no offers in it"
        )
    text = _(
        "  purpose: marketing (promotions, one-offs and birthdays with a coupon are marketing "
        "unless the file says `purpose: service`): each message needs a legal basis"
    )
    if no_basis:
        text += ngettext(
            "; {n} contact held back without one (no_legal_basis)",
            "; {n} contacts held back without one (no_legal_basis)",
            no_basis,
        ).format(n=no_basis)
    return text


def _confirmed_addresses(
    contacts: Sequence[Contact], settings: Settings, *, lapsed: frozenset[str] = frozenset()
) -> Iterator[str]:
    """A line for each address whose postal code the data rejects and the owner confirmed
    (`lapsed`: the ids whose confirmation was given for an earlier address)."""
    where = display_path(settings.contacts_path)
    for contact in contacts:
        if contact.id in lapsed:
            continue
        if confirmed_by_owner(contact) is not None and contact.address_confirmed is not None:
            yield _(
                "{file}:{line}: postal_code: the address data does not know "
                "{code} in {region}, but the owner "
                "confirmed the address on {date} "
                "(address_confirmed), so letters go to it — when the address changes, clear "
                "the date so the new one is checked"
            ).format(
                file=where,
                line=contact.line,
                code=contact.postal_code,
                region=contact.region or contact.country,
                date=contact.address_confirmed.isoformat(),
            )


def _stored_confirmations(settings: Settings) -> Mapping[str, tuple[date, str]]:
    """The confirmed addresses the ledger keeps (rules.known); none without a ledger."""
    if not ledger_exists(settings):
        return {}
    try:
        return read_ledger(settings, lambda ledger: ledger.address_confirmations())
    except LedgerError:
        return {}  # the run's rehearsal below says what is wrong with the ledger


def _lapsed_confirmations(
    contacts: Sequence[Contact], settings: Settings
) -> tuple[frozenset[str], list[Problem]]:
    """The ids whose address_confirmed was given for an earlier address (the address changed
    since), with a problem for each whose postal code the data rejects: its letters wait."""
    confirmations = _stored_confirmations(settings)
    if not confirmations:
        return frozenset(), []
    where = str(display_path(settings.contacts_path))
    lapsed: list[str] = []
    problems: list[Problem] = []
    for contact in contacts:
        fault = confirmed_by_owner(contact)
        if fault is None or not confirmation_lapsed(contact, confirmations):
            continue
        assert contact.address_confirmed is not None
        lapsed.append(contact.id)
        message = _(
            "the owner confirmed the address on {day} (address_confirmed), but the address "
            "has changed since, so the confirmation no longer applies and the postal code is "
            "checked again: {problem}"
        ).format(day=contact.address_confirmed.isoformat(), problem=fault.message)
        hint = _(
            "check the new address with the customer; to send letters to it anyway, write "
            "the day you confirmed it in address_confirmed (a new date confirms the new address)"
        )
        problems.append(
            Problem(
                message,
                path=where,
                line=contact.line,
                field="address_confirmed",
                contact_id=contact.id,
                hint=hint,
            )
        )
    return frozenset(lapsed), problems


def _forgotten_rows(
    contacts: Sequence[Contact], *, suppressions: Mapping[str, object], settings: Settings
) -> Iterator[Problem]:
    """A problem for each row of a person `outreach forget` erased (nothing goes to them)."""
    keys = frozenset(key for key in suppressions if key.startswith(FORGOTTEN))
    if not keys:
        return
    where = str(display_path(settings.contacts_path))
    for contact in contacts:
        if is_forgotten(contact, salt=settings.coupon.secret, keys=keys):
            yield Problem(
                _(
                    "this row belongs to a person who asked to be forgotten (outreach forget): "
                    "nothing is made for them"
                ),
                path=where,
                line=contact.line,
                field="id",
                contact_id=contact.id,
                hint=_("delete the row from the contacts file"),
            )


def validate_workspace(
    settings: Settings,
    *,
    today: date,
    now: datetime,
    progress: ContactProgress | None = None,
    config: Path | None = None,
) -> ValidationReport:
    """Check contacts, every campaign, and every template for every contact that could be due
    (`config`: the file the settings were read from, default config.yaml in their folder)."""
    config = config if config is not None else settings.root / CONFIG_NAME
    report = ValidationReport(lines=[_("config {file}: ok").format(file=display_path(config))])
    _check_workspace(settings, today=today, now=now, progress=progress, report=report)
    # Every problem once: a contact's missing address is met by each of its occurrences.
    report.warnings = list({str(problem): problem for problem in report.warnings}.values())
    return report


def _check_workspace(
    settings: Settings,
    *,
    today: date,
    now: datetime,
    progress: ContactProgress | None,
    report: ValidationReport,
) -> None:
    _check_settings(settings, report)
    contact_list = _check_contacts(settings, report)
    if contact_list is None:
        return
    usable = _usable_campaigns(
        settings, contacts=contact_list.contacts, today=today, now=now, report=report
    )
    if not usable:
        return
    workspace = Workspace(settings, contacts=contact_list, campaigns=tuple(usable))
    # The run's store: the suppression list and blocks, and no message made yet.
    store = Ledger.in_memory()
    if ledger_exists(settings):
        try:
            store = rehearsal(settings, Seed(messages=False))
        except LedgerError as exc:
            report.lines.append(
                _("warning: the suppression list was not read: {error}").format(error=exc)
            )
    with store:
        report.warnings.extend(
            _forgotten_rows(
                contact_list.contacts, suppressions=store.suppressions(), settings=settings
            )
        )
        _check_campaigns(
            workspace,
            contacts=contact_list.contacts,
            store=store,
            today=today,
            now=now,
            report=report,
            progress=progress,
        )


def _check_settings(settings: Settings, report: ValidationReport) -> None:
    """What the settings alone tell: a placeholder secret, the sender's alignment, HarfBuzz."""
    if settings.coupon.secret == Coupon().secret:
        report.lines.append(
            _(
                "warning: coupon.secret is the placeholder 'change-me': anyone who knows outreach "
                "can work out your coupon codes and unsubscribe tokens — set your own secret"
            )
        )
    report.lines.extend(_("warning: {what}").format(what=w) for w in sender_warnings(settings))
    if not harfbuzz_subset_available():
        report.lines.append(
            _(
                "warning: the HarfBuzz subsetter (Debian package libharfbuzz-subset0) is missing: "
                "letters will print about 8x slower — install it with apt-get"
            )
        )


def _check_contacts(settings: Settings, report: ValidationReport) -> ContactList | None:
    """The contacts file read as the run reads it, its problems reported (None: unreadable)."""
    try:
        contact_list = load_contacts(
            display_path(settings.contacts_path),
            settings=settings.contacts,
            default_locale=settings.default_locale,
        )
    except OutreachError as exc:
        report.blocking.append(exc.as_problem(blocking=True))
        return None
    report.warnings.extend(contact_list.problems)
    problems = len({str(problem) for problem in contact_list.problems})
    report.lines.append(
        ngettext(
            "contacts {file}: {rows}, {usable} usable, {n} problem",
            "contacts {file}: {rows}, {usable} usable, {n} problems",
            problems,
        ).format(
            file=settings.paths.contacts,
            rows=ngettext("{n} row", "{n} rows", contact_list.rows).format(n=contact_list.rows),
            usable=len(contact_list.contacts),
            n=problems,
        )
    )
    lapsed, lapses = _lapsed_confirmations(contact_list.contacts, settings)
    report.warnings.extend(lapses)
    report.lines.extend(_confirmed_addresses(contact_list.contacts, settings, lapsed=lapsed))
    return contact_list


def _usable_campaigns(
    settings: Settings,
    *,
    contacts: Sequence[Contact],
    today: date,
    now: datetime,
    report: ValidationReport,
) -> list[Campaign]:
    """The campaigns that load and whose templates compile, with what the law asks of their
    messages checked (outreach.rehearse.lssi); the others reported."""
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
                    message=_("campaign name {name} is also used by {file}").format(
                        name=repr(campaign.name), file=names[campaign.name]
                    ),
                    path=str(path),
                    field="name",
                    blocking=True,
                    hint=_("give each campaign its own name"),
                )
            )
            continue
        names[campaign.name] = str(path)
        campaigns.append(campaign)
    letters = [c.letter.template for c in campaigns if c.letter is not None]
    letters += [settings.letters.css] if settings.letters.css else []
    report.lines.extend(
        _("warning: {what}").format(what=w)
        for w in template_warnings(settings.templates_dir, letter_templates=letters)
    )
    usable = []
    for campaign in campaigns:
        try:  # a campaign whose templates cannot even load blocks itself, not the others
            RenderOnlyOutlet(settings=settings, campaigns=[campaign], today=today, now=now)
        except OutreachError as exc:
            report.blocking.append(exc.as_problem(blocking=True, campaign=campaign.name))
            continue
        usable.append(campaign)
        for problem in lssi_problems(
            campaign, settings=settings, contacts=contacts, today=today, now=now
        ):
            (report.blocking if problem.blocking else report.warnings).append(problem)
    return usable
