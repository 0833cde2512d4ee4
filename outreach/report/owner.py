"""The top of the report, for the owner: what needs them, and what went out on the run's day.

Sentences in the owner's language (outreach.i18n), made from the gathered `ReportData`: the
page shows them first, the tables after them for whoever wants the detail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from outreach.feedback.process import COMPLAINT_WARNING
from outreach.i18n import N_, _, ngettext
from outreach.model.reasons import Code, phrase
from outreach.report.data import HeldGroup, ReportData, RunView
from outreach.rules.blocks import describe_block

# Names shown beside a reason at the top of the page; the tables below list them all.
NAMES_SHOWN = 4
# Dots drawn for one line of "what went out" (one a message); more are a number.
DOTS_SHOWN = 60

# Status words of the ledger, as the page's tables head their columns.
STATUS_WORDS = {
    "sent": N_("sent"),
    "rendered": N_("prepared"),
    "sending": N_("sending"),
    "uncertain": N_("uncertain"),
    "deferred": N_("waiting"),
    "skipped": N_("will not go"),
    "failed": N_("failed"),
    "missed": N_("missed"),
}
# What the owner can do about a held-back message, by its status.
TODO_WORDS = {
    "skipped": N_("fix the contact's row (address, email) or leave it: it is not tried again"),
    "deferred": N_("nothing: the next run inside its days tries again"),
    "failed": N_("see the error; the next run tries again"),
    "missed": N_("nothing can be done: its days are over"),
    "uncertain": N_("check whether it arrived, then outreach send --retry-uncertain"),
}
# The page's notes (ReportData.notes), by code.
NOTE_WORDS = {
    "plan_failed": N_("The plan could not be made (see outreach plan): the next days are empty."),
    "no_pdftoppm": N_("pdftoppm (poppler-utils) is not installed: no letter thumbnails."),
    "no_ledger": N_("There is no ledger yet: nothing has run."),
}
# The held-back chart's own codes beside the reasons of outreach.model.reasons.
OTHER_REASONS = {"other": N_("other reasons"), "planned": N_("planned (next days)")}


def status_word(status: str) -> str:
    """A ledger status in the owner's words."""
    return _(STATUS_WORDS[status]) if status in STATUS_WORDS else status


def todo_words(status: str) -> str:
    """What to do about a held-back message of this status."""
    return _(TODO_WORDS[status]) if status in TODO_WORDS else ""


def note_words(code: str) -> str:
    """A note of the page in the owner's words."""
    return _(NOTE_WORDS[code]) if code in NOTE_WORDS else code


def reason_words(code: str, fallback: str = "") -> str:
    """A reason code in the owner's words (the reasons' own accessor), else `fallback`."""
    if code in {c.value for c in Code}:
        return phrase(Code(code))
    if code in OTHER_REASONS:
        return _(OTHER_REASONS[code])
    return fallback or code


@dataclass(frozen=True, slots=True)
class Need:
    """One thing that needs the owner: a sentence, and the particulars under it."""

    key: str  # replies | failed | uncertain | returned | bounced | complaints | rows
    count: int
    text: str
    items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reason:
    """Messages held back for one reason: the words, how many, and some of the names."""

    code: str
    words: str
    count: int
    names: tuple[str, ...]
    more: int


@dataclass(frozen=True, slots=True)
class WentOut:
    """One line of what went out: a sentence, a picture (dots), and its particulars."""

    key: str  # email | letter | held | waiting | missed
    count: int
    text: str
    by_campaign: tuple[tuple[str, int], ...] = ()
    reasons: tuple[Reason, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def dots(self) -> int:
        """Dots drawn: one a message, up to DOTS_SHOWN."""
        return min(self.count, DOTS_SHOWN)


@dataclass(frozen=True, slots=True)
class Today:
    """What the newest run of the page did, in sentences."""

    run: RunView | None
    lines: tuple[WentOut, ...] = field(default_factory=tuple)


def _total(campaigns: Iterable[Mapping[str, object]], key: str) -> int:
    return sum(v for c in campaigns if isinstance(v := c.get(key, 0), int))


def needs(data: ReportData) -> list[Need]:
    """What needs the owner, most pressing first; empty when nothing does."""
    found: list[Need] = []
    replies = len(data.replies)
    if replies:
        found.append(
            Need(
                "replies",
                replies,
                ngettext(
                    "{n} reply waits for your answer (outreach replies shows it).",
                    "{n} replies wait for your answer (outreach replies shows them).",
                    replies,
                ).format(n=replies),
            )
        )
    failed = sum(counts.get("failed", 0) for counts in data.totals.values())
    if failed:
        text = ngettext(
            "{n} message failed: the next run tries it again; the tables below say why.",
            "{n} messages failed: the next run tries them again; the tables below say why.",
            failed,
        )
        found.append(Need("failed", failed, text.format(n=failed)))
    uncertain = sum(counts.get("uncertain", 0) for counts in data.totals.values())
    if uncertain:
        text = ngettext(
            "{n} email may not have arrived: check, then run outreach send --retry-uncertain.",
            "{n} emails may not have arrived: check, then run outreach send --retry-uncertain.",
            uncertain,
        )
        found.append(Need("uncertain", uncertain, text.format(n=uncertain)))
    found.extend(_block_needs(data))
    complained, emailed = data.complaints
    if emailed and 1000 * complained / emailed >= COMPLAINT_WARNING:
        text = ngettext(
            "{n} complaint in {emails} emails over the last 30 days: that is above 1 per 1,000 "
            "(Gmail asks senders to stay below 3).",
            "{n} complaints in {emails} emails over the last 30 days: that is above 1 per "
            "1,000 (Gmail asks senders to stay below 3).",
            complained,
        )
        found.append(Need("complaint_rate", complained, text.format(n=complained, emails=emailed)))
    problems = len(data.runs[0].problems) if data.runs else 0
    if problems:
        text = ngettext(
            "{n} row of the contacts file has a problem: the list is below.",
            "{n} rows of the contacts file have a problem: the list is below.",
            problems,
        )
        found.append(Need("rows", problems, text.format(n=problems)))
    return found


def _block_needs(data: ReportData) -> list[Need]:
    """Returned letters, bounced addresses and complaints of the period, each block named."""
    kinds: dict[str, tuple[tuple[str, ...], Callable[[int], str]]] = {
        "returned": (
            ("returned-letter",),
            lambda n: ngettext(
                "{n} letter came back by post: no more letters go to that address until "
                "contacts.csv has a new one.",
                "{n} letters came back by post: no more letters go to those addresses until "
                "contacts.csv has new ones.",
                n,
            ),
        ),
        "bounced": (
            ("hard-bounce", "soft-bounces"),
            lambda n: ngettext(
                "{n} email address is blocked after bounces: correct it in contacts.csv.",
                "{n} email addresses are blocked after bounces: correct them in contacts.csv.",
                n,
            ),
        ),
        "complaints": (
            ("complaint",),
            lambda n: ngettext(
                "{n} person marked an email as spam: they get nothing more from you.",
                "{n} people marked an email as spam: they get nothing more from you.",
                n,
            ),
        ),
    }
    found = []
    for key, (reasons, words) in kinds.items():
        blocks = [b for b in data.blocks if b.reason in reasons]
        if blocks:
            found.append(
                Need(
                    key,
                    len(blocks),
                    words(len(blocks)).format(n=len(blocks)),
                    tuple(describe_block(b) for b in blocks),
                )
            )
    return found


def went_out(data: ReportData, *, money: Callable[[float], str]) -> Today:
    """What the newest run did: emails, letters and their postage, who was held back and why."""
    if not data.runs:
        return Today(None)
    run = data.runs[0]
    campaigns = run.campaigns
    lines = [_emails(campaigns, outbox=run.extra.get("outbox")), _letters(campaigns, money=money)]
    for key, status in (("held", "skipped"), ("waiting", "deferred"), ("missed", "missed")):
        chosen = [g for g in data.held_groups if g.status == status]
        count = sum(g.total for g in chosen)
        if count:
            text = _held_words(key, count).format(n=count)
            lines.append(WentOut(key, count, text, reasons=_reasons(chosen)))
    return Today(run, tuple(lines))


def _held_words(key: str, n: int) -> str:
    """The sentence over a list of reasons: held back, waiting or missed."""
    if key == "held":
        return ngettext(
            "{n} message will not go, for this reason:",
            "{n} messages will not go, for these reasons:",
            n,
        )
    if key == "waiting":
        return ngettext(
            "{n} message waits for a later day (the next run sends it when it may):",
            "{n} messages wait for a later day (the next runs send them when they may):",
            n,
        )
    return ngettext(
        "{n} message missed its days and will not go:",
        "{n} messages missed their days and will not go:",
        n,
    )


def _by_campaign(
    campaigns: Sequence[Mapping[str, object]], key: str
) -> tuple[tuple[str, int], ...]:
    return tuple(
        (str(c.get("name", "")), n) for c in campaigns if isinstance(n := c.get(key, 0), int) and n
    )


def _emails(campaigns: Sequence[Mapping[str, object]], *, outbox: object) -> WentOut:
    """How many emails the run made, and whether any was sent (the outbox sends nothing)."""
    made, sent = _total(campaigns, "emails"), _total(campaigns, "sent")
    if not made:
        text = _("No email went out.")
    elif not sent:
        text = ngettext(
            "{n} email was prepared in the outbox and not sent: outreach send sends it.",
            "{n} emails were prepared in the outbox and not sent: outreach send sends them.",
            made,
        ).format(n=made)
    elif sent >= made:
        text = ngettext("{n} email was sent.", "{n} emails were sent.", sent).format(n=sent)
    else:
        text = ngettext(
            "{n} email was prepared; {sent} of them sent.",
            "{n} emails were prepared; {sent} of them sent.",
            made,
        ).format(n=made, sent=sent)
    notes = (
        (_("The outbox folder: {folder}").format(folder=outbox),)
        if made and not sent and outbox
        else ()
    )
    return WentOut("email", made, text, by_campaign=_by_campaign(campaigns, "emails"), notes=notes)


def _letters(
    campaigns: Sequence[Mapping[str, object]], *, money: Callable[[float], str]
) -> WentOut:
    """How many letters to post, and their postage (or what has no price)."""
    letters = _total(campaigns, "letters")
    if not letters:
        return WentOut("letter", 0, _("No letter to post."))
    text = ngettext("{n} letter to print and post.", "{n} letters to print and post.", letters)
    priced, unpriced = 0.0, Counter[str]()
    for c in campaigns:
        postage = c.get("postage")
        lines = postage.get("lines", []) if isinstance(postage, Mapping) else []
        for line in lines if isinstance(lines, list) else []:
            if not isinstance(line, Mapping):
                continue
            amount, count = line.get("amount"), line.get("letters")
            if isinstance(amount, int | float):
                priced += amount
            elif isinstance(count, int):
                grams = line.get("up_to_grams")
                step = f"{line.get('zone')} ≤ {grams} g" if grams else str(line.get("zone"))
                unpriced[step] += count
    notes = []
    if priced:
        notes.append(_("Postage: {amount}.").format(amount=money(priced)))
    for step, n in unpriced.items():
        notes.append(
            ngettext(
                "Postage: {n} letter ({step}) has no price: add it under letters.postage.prices "
                "in config.yaml.",
                "Postage: {n} letters ({step}) have no price: add it under "
                "letters.postage.prices in config.yaml.",
                n,
            ).format(n=n, step=step)
        )
    return WentOut(
        "letter",
        letters,
        text.format(n=letters),
        by_campaign=_by_campaign(campaigns, "letters"),
        notes=tuple(notes),
    )


def _reasons(groups: Sequence[HeldGroup]) -> tuple[Reason, ...]:
    """The groups' messages by reason, most first, with the first few people's names (one
    person held back in two campaigns is named once)."""
    counts: Counter[str] = Counter()
    people: dict[str, dict[str, str]] = {}  # reason -> contact id -> name, as listed
    unlisted: Counter[str] = Counter()  # people past a group's listed ones
    words: dict[str, str] = {}
    for g in groups:
        key = g.code or g.reason
        counts[key] += g.total
        words.setdefault(key, reason_words(g.code, g.reason))
        listed = people.setdefault(key, {})
        listed.update((h.contact_id, h.name or h.contact_id) for h in g.contacts)
        unlisted[key] += g.total - len(g.contacts)
    found = []
    for key, n in counts.most_common():
        names = tuple(people[key].values())
        shown = names[:NAMES_SHOWN]
        more = len(names) - len(shown) + unlisted[key]
        found.append(Reason(key, words[key], n, shown, more))
    return tuple(found)
