"""`explain`: why each campaign does or does not reach one contact today, in plain words.

The answer is the run itself for that contact (`execute_run` on an in-memory store seeded
from the ledger, with the render-only outlet and an observer): what it says is what the
run does. The explainer only turns each decision (a code, never a sentence) into words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from outreach.contacts import Contact
from outreach.deliver.outlets import RenderOnlyOutlet
from outreach.feedback.replies import describe_reply
from outreach.i18n import _
from outreach.ledger import Ledger, MessageRecord, Seed, read_ledger, rehearsal
from outreach.lookup import contact_label, find_contact, row_problems, unknown_contact
from outreach.model.campaigns import Campaign, Occurrence
from outreach.model.errors import Problem
from outreach.model.reasons import Code, Reason, status_word, words
from outreach.pipeline.decide import Decision, RunDates
from outreach.pipeline.run import RunOptions, execute_run, known_contacts
from outreach.rules.arrival import send_window
from outreach.rules.blocks import current_blocks, describe_block
from outreach.rules.eligibility import first_choice, suppressed_channels
from outreach.rules.occurrences import occurrences_between
from outreach.rules.postal import address_gaps
from outreach.workspace import Workspace

# How far `explain` looks for the next window of a campaign that is not due.
LOOKAHEAD_DAYS = 800


@dataclass(frozen=True, slots=True)
class Answer:
    """Why one campaign does or does not reach the contact on the day."""

    campaign: str
    outcome: str  # send | deferred | already | missed | not due | not in audience | opted out | bad data | skipped
    text: str
    occurrence: Occurrence | None = None
    channel: str | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        occ = self.occurrence
        return {
            "campaign": self.campaign,
            "outcome": self.outcome,
            "text": self.text,
            "channel": self.channel,
            "occurrence": None
            if occ is None
            else {
                "key": occ.key,
                "date": occ.date.isoformat(),
                "earliest": occ.earliest.isoformat(),
                "latest": occ.latest.isoformat(),
            },
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything `explain` says about one contact on one day."""

    contact_id: str
    day: date
    contact: Contact | None
    label: str
    answers: tuple[Answer, ...]
    problems: tuple[Problem, ...]  # the row's problems (for a held-back row: why)
    suppressed: tuple[str, ...]  # suppression list entries that cover the contact
    history: tuple[MessageRecord, ...]  # the ledger's messages for the id, newest first
    # what bounces, complaints and the post blocked, in words (outreach.feedback)
    blocked: tuple[str, ...] = ()
    replies: tuple[str, ...] = ()  # what the contact wrote back, in words (oldest first)

    @property
    def held_back(self) -> bool:
        """Whether the id names a row that is not used at all."""
        return self.contact is None

    def lines(self) -> list[str]:
        """The plain-text answer, a line at a time."""
        out: list[str] = []
        if self.contact is None:
            out.append(
                _(
                    "{contact} is held back: its row in the contacts file is not used, so "
                    "no campaign reaches it"
                ).format(contact=self.contact_id)
            )
            out.extend(f"  {p}" for p in self.problems)
        else:
            out.append(_("{contact}, on {date}:").format(contact=self.label, date=self.day))
            out.extend(f"  {a.campaign}: {a.text}" for a in self.answers)
            if self.problems:
                out.append(_("problems with this contact in the contacts file:"))
                out.extend(f"  {p}" for p in self.problems)
        if self.suppressed:
            entries = ", ".join(self.suppressed)
            out.append(_("on the suppression list: {entries}").format(entries=entries))
        out.extend(_("blocked: {what}").format(what=text) for text in self.blocked)
        out.extend(_("wrote back: {what}").format(what=text) for text in self.replies)
        if self.history:
            out.append(_("messages in the ledger, newest first:"))
            out.extend(f"  {_history_line(r)}" for r in self.history)
        else:
            out.append(_("no messages in the ledger for this contact"))
        return out

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "contact": self.contact_id,
            "date": self.day.isoformat(),
            "found": self.contact is not None,
            "label": self.label,
            "campaigns": [a.as_dict() for a in self.answers],
            "problems": [p.as_dict() for p in self.problems],
            "suppressed": list(self.suppressed),
            "blocked": list(self.blocked),
            "replies": list(self.replies),
            "history": [
                {
                    "date": r.run_date.isoformat(),
                    "campaign": r.campaign,
                    "occurrence": r.occurrence_key,
                    "channel": r.channel,
                    "status": r.status,
                    "reason": r.reason,
                    "error": r.error,
                    "artifact": r.artifact,
                }
                for r in self.history
            ],
        }


def _history_line(record: MessageRecord) -> str:
    text = (
        f"{record.run_date.isoformat()} {record.campaign} {record.occurrence_key} "
        f"{record.channel} {record.status}"
    )
    detail = record.error or words(record.reason)
    if detail:
        text += f": {detail}"
    if record.artifact:
        text += f" ({record.artifact})"
    return text


# What came back, in words: the blocks that apply to the contact, and what it wrote back.
_Feedback = tuple[tuple[str, ...], tuple[str, ...]]


def _feedback_lines(ledger: Ledger, contact: Contact | None, wanted: str) -> _Feedback:
    """The blocks that apply to the contact as the contacts file has it now, and its replies."""
    blocks = current_blocks(contact, ledger.blocks(contact_id=wanted))
    replies = ledger.replies(contact_id=wanted)  # hook: outreach.feedback.replies
    return tuple(describe_block(b) for b in blocks), tuple(describe_reply(r) for r in replies)


def explain_contact(
    workspace: Workspace, *, contact_id: str, today: date, now: datetime
) -> Explanation:
    """Why each campaign does or does not reach a contact on `today`, from a simulated run."""
    settings = workspace.settings
    contact = find_contact(workspace, contact_id)
    if contact is not None:
        # As the run knows it (the ledger's latest visit, a confirmation that lapsed).
        (contact,) = known_contacts(workspace, [contact])
    events: list[Decision] = []
    campaigns = workspace.campaigns
    wanted = contact.id if contact is not None else contact_id

    def read(
        ledger: Ledger,
    ) -> tuple[list[MessageRecord], dict[str, frozenset[str]], _Feedback]:
        history = ledger.messages(contact_id=wanted)
        feedback = _feedback_lines(ledger, contact, wanted)
        return history, ledger.suppressions(), feedback

    history, suppressions, (blocked, replies) = read_ledger(settings, read)
    if contact is not None:
        # The run itself, for this one contact, on a ledger seeded with its own rows (all a
        # run of it reads, instead of a million on a big ledger): every email rendered and
        # every letter laid out and window-checked as the real run would, and nothing kept.
        with rehearsal(settings, Seed(contact_id=contact.id)) as store:
            execute_run(
                workspace=workspace,
                store=store,
                outlet=RenderOnlyOutlet(
                    settings=settings, campaigns=campaigns, today=today, now=now, workers=1
                ),
                dates=RunDates(today),
                clock=lambda: now,
                observer=events.append,
                contacts=[contact],
                options=RunOptions(args=("explain", contact.id)),
            )
            # The windows this run closed are missed now, as the next real run will record them.
            closed = {r.key: r for r in store.messages(contact_id=contact.id, statuses=["missed"])}
        history = [closed.get(r.key, r) for r in history]
    problems = row_problems(workspace, contact_id)
    history.reverse()
    if contact is None:
        if not problems:
            raise unknown_contact(workspace, contact_id, known_messages=len(history))
        return Explanation(
            contact_id=contact_id,
            day=today,
            contact=None,
            label=contact_id,
            answers=(),
            problems=problems,
            suppressed=_suppressed(contact_id, None, suppressions),
            history=tuple(history),
            blocked=blocked,
            replies=replies,
        )
    explainer = _Explainer(
        workspace=workspace,
        contact=contact,
        today=today,
        now=now,
        history=history,
        suppressions=suppressions,
        problems=problems,
    )
    # The last word on each message: a letter decided "send" may then fail its layout.
    final: dict[tuple[str, str | None], Decision] = {}
    for event in events:
        if event.outcome != "missed":
            key = (event.campaign, event.occurrence.key if event.occurrence else None)
            final.pop(key, None)
            final[key] = event
    answers = [
        explainer.answer(campaign, event)
        for campaign in workspace.campaigns
        for event in final.values()
        if event.campaign == campaign.name
    ]
    return Explanation(
        contact_id=contact.id,
        day=today,
        contact=contact,
        label=contact_label(contact, workspace.contacts.path),
        answers=tuple(answers),
        problems=problems,
        suppressed=_suppressed(contact.id, contact.email, suppressions),
        history=tuple(history),
        blocked=blocked,
        replies=replies,
    )


def _suppressed(
    contact_id: str, email: str | None, suppressions: dict[str, frozenset[str]]
) -> tuple[str, ...]:
    entries = suppressed_channels(contact_id, email, suppressions)
    return tuple(f"{key} ({', '.join(sorted(channels))})" for key, channels in entries)


def _channels_text(channels: Iterable[str]) -> str:
    wanted = set(channels)
    # not translated: the value as the contacts file's opt_out column writes it
    return "all" if {"email", "letter"} <= wanted or "all" in wanted else ", ".join(sorted(wanted))


@dataclass
class _Explainer:
    """Turns one trace event into a sentence a business owner can read out on the phone."""

    workspace: Workspace
    contact: Contact
    today: date
    now: datetime
    history: list[MessageRecord]  # newest first
    suppressions: dict[str, frozenset[str]]
    problems: tuple[Problem, ...]

    def problem(self, name: str) -> Problem | None:
        return next((p for p in self.problems if p.field == name), None)

    def answer(self, campaign: Campaign, event: Decision) -> Answer:
        outcome, occ = event.outcome, event.occurrence
        if outcome == "not in audience":  # not translated: an outcome code
            return Answer(campaign.name, outcome, self.audience_miss(campaign))
        if outcome == "bad data":
            detail = event.reason.detail if event.reason else ""
            text = _("cannot be worked out: {detail}").format(detail=detail)
            return Answer(campaign.name, outcome, text)
        if outcome == "not due" or occ is None:
            return self.not_due(campaign)
        what = self.what(campaign, occ)
        if outcome == "send":
            return Answer(
                campaign.name, outcome, self.sending(campaign, event, what), occ, event.channel
            )
        if outcome == "deferred":
            text = _(
                "deferred by the cadence policy: {reason}; tried again on each run "
                "until {latest}, after that it is missed ({what})"
            ).format(reason=event.reason, latest=occ.latest.isoformat(), what=what)
            return Answer(campaign.name, outcome, text, occ, event.channel)
        if outcome == "already":
            return self.already(campaign, occ, what)
        if outcome == "skipped" and event.reason is not None:
            return self.skipped(campaign, event.reason, occ, what)
        if outcome == "failed" and event.reason is not None:
            return self.failing(event, event.reason, occ, what)
        text = _("{outcome}: {reason} ({what})").format(
            outcome=outcome, reason=event.reason, what=what
        )
        return Answer(campaign.name, outcome, text, occ)

    def failing(self, event: Decision, reason: Reason, occ: Occurrence, what: str) -> Answer:
        channel = event.channel or "email"
        if reason.code is Code.LAYOUT_FAILED:
            text = _(
                "would fail today by {channel}: the letter does not fit its envelope: "
                "{detail} ({what}); the run records it failed and tries again next run"
            ).format(channel=channel, detail=reason.detail, what=what)
        else:
            text = _(
                "would fail today by {channel}: {reason} ({what}); the run records it "
                "failed and tries again next run"
            ).format(channel=channel, reason=reason.text, what=what)
        return Answer(event.campaign, "failed", text, occ, channel)

    # -- the sentences ---------------------------------------------------------------------

    def what(self, campaign: Campaign, occ: Occurrence) -> str:
        """`birthday on 2026-11-26, window 2026-11-23 to 2026-11-26`."""
        first, last = occ.earliest.isoformat(), occ.latest.isoformat()
        if campaign.kind == "promotion":
            return _("promotion from {first} to {last}").format(first=first, last=last)
        day = occ.date.isoformat()
        if campaign.kind == "birthday":
            thing = _("birthday on {date}").format(date=day)
        elif campaign.kind == "reminder":
            thing = _("{field} on {date}").format(field=campaign.date_field, date=day)
        else:
            thing = _("one-off on {date}").format(date=day)
        if occ.earliest == occ.latest:
            return _("{what}, only on {date}").format(what=thing, date=first)
        return _("{what}, window {first} to {last}").format(what=thing, first=first, last=last)

    def audience_miss(self, campaign: Campaign) -> str:
        audience, tags = campaign.audience, self.contact.tags
        has = ", ".join(sorted(tags)) or _("none")
        wanted = list(audience.tags_any)
        if wanted and tags.isdisjoint(wanted):
            return _(
                "not in the audience: needs one of the tags {tags} (the contact's tags: {has})"
            ).format(tags=", ".join(wanted), has=has)
        excluded = sorted(tags.intersection(audience.tags_none))
        if excluded:
            return _(
                "not in the audience: has the tag {tags}, which the campaign excludes (tags_none)"
            ).format(tags=", ".join(excluded))
        if audience.where:
            return _("not in the audience: `{where}` is false for this contact").format(
                where=audience.where
            )
        return _("not in the audience")

    def sending(self, campaign: Campaign, event: Decision, what: str) -> str:
        channel = event.channel or "email"
        if channel == "letter":
            arrival = event.day or self.today  # a letter's decision counts on the day it arrives
            text = _("would go today by letter, arriving about {date} ({what})").format(
                date=arrival.isoformat(), what=what
            )
        else:
            text = _("would go today by email ({what})").format(what=what)
        reason = event.reason
        if reason is not None and reason.code is Code.ESSENTIAL_OVERRIDE:
            text += f"; {reason.text}"
        elif reason is not None:  # why not the first choice: the fallback took over
            text += _("; not by {channel}: {reason}").format(
                channel=reason.channel, reason=Reason(reason.code).text
            )
        if not event.own_language:
            text += _(
                "; in the default language ({default}): the templates have no variant for {locale}"
            ).format(default=self.workspace.settings.default_locale, locale=self.contact.locale)
        return text

    def already(self, campaign: Campaign, occ: Occurrence, what: str) -> Answer:
        record = next(
            (
                r
                for r in self.history
                if r.campaign == campaign.name and r.occurrence_key == occ.key
            ),
            None,
        )
        if record is None:  # the runner saw it done, so the ledger has it
            return Answer(
                campaign.name, "already", _("already done ({what})").format(what=what), occ
            )
        status, channel = record.status, record.channel
        changed = (
            record.updated_at.astimezone(self.now.tzinfo).date()
            if record.updated_at is not None
            else record.run_date
        )
        made, when = record.run_date.isoformat(), changed.isoformat()
        if status == "rendered" and record.artifact:
            text = _("already made on {date} by {channel}: {file} ({what})").format(
                date=made, channel=channel, file=record.artifact, what=what
            )
        elif status == "rendered":
            text = _("already made on {date} by {channel} ({what})").format(
                date=made, channel=channel, what=what
            )
        elif status == "sent":
            text = _("already sent on {date} by {channel} ({what})").format(
                date=when, channel=channel, what=what
            )
        elif status in ("sending", "uncertain"):
            text = _(
                "uncertain since {date}: the run died while handing the email to "
                "the mail server, so it may have arrived; it is never resent automatically "
                "(check the mailbox) ({what})"
            ).format(date=when, what=what)
        elif status == "failed" and record.reason == "permanent":
            text = _(
                "failed for good on {date}: the mail server refused it: "
                "{error}; it is not tried again (fix the address in the "
                "contacts file) ({what})"
            ).format(date=when, error=record.error or _("refused"), what=what)
        elif status == "failed":
            text = _("failed on {date}: {error}; `outreach send` tries it again ({what})").format(
                date=when, error=record.error or _("delivery failed"), what=what
            )
        elif status == "missed":
            text = _("missed: {reason} ({what})").format(reason=words(record.reason), what=what)
        else:
            text = _("already {status} on {date} ({what})").format(
                status=status_word(status), date=made, what=what
            )
        return Answer(
            campaign.name, "missed" if status == "missed" else "already", text, occ, channel
        )

    def skipped(self, campaign: Campaign, reason: Reason, occ: Occurrence, what: str) -> Answer:
        contact = self.contact
        if reason.code is Code.OPTED_OUT:
            channel = reason.channel or "email"
            if channel in contact.opt_out:
                said = _channels_text(contact.opt_out)
                text = _(
                    "opted out of {channel}: the contacts file says opt_out: {said} "
                    "(line {line}) ({what})"
                ).format(channel=channel, said=said, line=contact.line, what=what)
            else:
                entries = ", ".join(_suppressed(contact.id, contact.email, self.suppressions)) or _(
                    "the suppression list"
                )
                text = _(
                    "opted out of {channel}: on the suppression list: {entries} ({what})"
                ).format(channel=channel, entries=entries, what=what)
            return Answer(campaign.name, "opted out", text, occ, channel)
        if reason.code is Code.NO_LEGAL_BASIS:
            text = _(
                "no legal basis for this marketing {channel}: "
                "{detail}; record the day they consented in "
                "email_consent (line {line}) to send it ({what})"
            ).format(
                channel=reason.channel or _("message"),
                detail=reason.detail or _("no consent"),
                line=contact.line,
                what=what,
            )
            return Answer(campaign.name, "skipped", text, occ, reason.channel)
        if reason.code is Code.NO_EMAIL:
            bad = self.problem("email")
            if bad is not None:
                text = _("no usable email: {problem} ({what})").format(problem=bad, what=what)
                return Answer(campaign.name, "bad data", text, occ)
            text = _("no email address in the contacts file ({what})").format(what=what)
            return Answer(campaign.name, "skipped", text, occ)
        if reason.code is Code.INCOMPLETE_ADDRESS:
            bad = self.problem("country") or self.problem("postal_code")
            if bad is not None:
                text = _("no usable postal address: {problem} ({what})").format(
                    problem=bad, what=what
                )
                return Answer(campaign.name, "bad data", text, occ)
            gaps = ", ".join(address_gaps(contact))
            text = _("incomplete postal address (missing {fields}) ({what})").format(
                fields=gaps, what=what
            )
            return Answer(campaign.name, "skipped", text, occ)
        text = _("skipped: {reason} ({what})").format(reason=reason, what=what)
        return Answer(campaign.name, "skipped", text, occ)

    def not_due(self, campaign: Campaign) -> Answer:
        contact, name = self.contact, campaign.name
        if campaign.kind == "birthday" and contact.birthday is None:
            bad = self.problem("birthday")
            if bad is not None:
                return Answer(
                    name, "bad data", _("no birthday message: {problem}").format(problem=bad)
                )
            return Answer(name, "not due", _("not due: no birthday in the contacts file"))
        settings = self.workspace.settings
        fmt = settings.contacts.date_format
        upcoming = [
            occ
            for occ in occurrences_between(
                campaign,
                contact,
                start=self.today + timedelta(days=1),
                end=self.today + timedelta(days=LOOKAHEAD_DAYS),
                date_format=fmt,
            )
            if occ.earliest > self.today
        ]
        if campaign.kind == "reminder" and not upcoming and not self._has_field(campaign):
            text = _("not due: no {field} in the contacts file").format(field=campaign.date_field)
            return Answer(name, "not due", text)
        past = [
            r
            for r in self.history
            if r.campaign == name and r.latest is not None and r.latest < self.today
        ]
        past.sort(key=lambda r: (r.latest or date.min, r.run_date), reverse=True)
        text = _("nothing due on {date}").format(date=self.today.isoformat())
        outcome = "not due"
        if past:
            last = past[0]
            window = _("{key}, window {window}").format(
                key=last.occurrence_key, window=_window(last)
            )
            if last.status == "missed":
                outcome = "missed"
                text = _(
                    "window closed: the last one ({window}) was deferred until its window "
                    "closed and is recorded as missed, never sent late ({reason})"
                ).format(window=window, reason=words(last.reason))
            else:
                text += _("; the last one ({window}) is {status} ({date})").format(
                    window=window, status=status_word(last.status), date=last.run_date.isoformat()
                )
        if upcoming:
            nxt = upcoming[0]
            channel = first_choice(campaign, contact)
            days = settings.letters.delivery_days
            posted, _last = send_window(nxt, channel=channel, delivery_days=days)
            if channel == "letter":
                text += _(
                    "; the next letter is posted on {posted}, for the window that "
                    "opens on {opens} ({what})"
                ).format(
                    posted=posted.isoformat(),
                    opens=nxt.earliest.isoformat(),
                    what=self.what(campaign, nxt),
                )
            else:
                text += _("; the next window opens on {opens} ({what})").format(
                    opens=nxt.earliest.isoformat(), what=self.what(campaign, nxt)
                )
        elif outcome == "missed":
            pass  # the closed window says it all
        elif campaign.kind == "promotion" and campaign.end is not None:
            text += _("; the promotion ended on {date}").format(date=campaign.end.isoformat())
        else:
            text += _("; no later window")
        return Answer(name, outcome, text)

    def _has_field(self, campaign: Campaign) -> bool:
        name = campaign.date_field or ""
        return bool(self.contact.extra.get(name) or getattr(self.contact, name, None))


def _window(record: MessageRecord) -> str:
    first = record.earliest.isoformat() if record.earliest else "?"
    last = record.latest.isoformat() if record.latest else "?"
    return _("{first} to {last}").format(first=first, last=last)
