"""What a run did: per campaign counts, whom it held back and why, for the CLI and the logs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from outreach.i18n import ngettext
from outreach.model.errors import Problem
from outreach.model.reasons import Code, Reason
from outreach.postage import PostageLine, postage_total

if TYPE_CHECKING:
    from outreach.deliver.send import SendSummary, Unsent

# The text summary lists this many held-back messages per reason; `--json` lists them all.
SHOWN_PER_REASON = 20


def distinct_lines(problems: Sequence[Problem]) -> list[tuple[str, int]]:
    """Each different problem's line once, in the order first met, with how often it came
    (a full disk fails a thousand messages with one sentence)."""
    return list(Counter(str(problem) for problem in problems).items())


def shown_line(text: str, count: int) -> str:
    """A problem's line as printed, with how often it came when more than once."""
    if count <= 1:
        return text
    return ngettext("{text} ({n} time)", "{text} ({n} times)", count).format(text=text, n=count)


@dataclass(slots=True)
class HeldBack:
    """A message the run did not make: skipped, failed or missed, and why."""

    outcome: str  # skipped | failed | missed
    contact_id: str
    line: int | None  # the contact's line in the contacts file (None: not in it any more)
    occurrence_key: str
    reason: Reason

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "outcome": self.outcome,
            "contact": self.contact_id,
            "line": self.line,
            "occurrence": self.occurrence_key,
            "reason": self.reason.as_dict(),
        }


def label(reason: Reason) -> str:
    """What messages held back for this reason are counted under ("opted out (email)")."""
    if reason.code is Code.OPTED_OUT:
        return reason.text
    return Reason(reason.code).text


@dataclass
class CampaignSummary:
    """What one run did for one campaign."""

    name: str
    kind: str
    channel: str
    due: int = 0
    already: int = 0
    emails: int = 0
    letters: int = 0
    # Letters not printed because a housemate's letter covers them (letters.households: merge).
    merged: int = 0
    pages: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    missed: int = 0
    default_language: int = 0  # messages made in the default language: no variant for theirs
    skipped: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    held: list[HeldBack] = field(default_factory=list)
    batch: str | None = None
    postage: list[PostageLine] = field(default_factory=list)  # the batch's postage list

    def merge(self, other: CampaignSummary) -> None:
        """Add another part of the same campaign's run (a chunk of contacts) to this one."""
        for name in (
            "due",
            "already",
            "emails",
            "letters",
            "merged",
            "pages",
            "sent",
            "failed",
            "deferred",
            "missed",
            "default_language",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped.update(other.skipped)
        self.problems.extend(other.problems)
        self.held.extend(other.held)

    def held_by_reason(self) -> dict[tuple[str, str], list[HeldBack]]:
        """(outcome, reason label) → the messages held back for it, in run order."""
        groups: dict[tuple[str, str], list[HeldBack]] = {}
        for item in self.held:
            groups.setdefault((item.outcome, label(item.reason)), []).append(item)
        return groups

    def as_dict(self, *, lists: bool = True) -> dict[str, object]:
        """A JSON-ready view (`lists`: with the held-back messages and row problems)."""
        view: dict[str, object] = {
            "name": self.name,
            "kind": self.kind,
            "channel": self.channel,
            "due": self.due,
            "already_done": self.already,
            "emails": self.emails,
            "letters": self.letters,
            "merged": self.merged,
            "pages": self.pages,
            "sent": self.sent,
            "failed": self.failed,
            "deferred": self.deferred,
            "missed": self.missed,
            "default_language": self.default_language,
            "skipped": dict(sorted(self.skipped.items())),
            "batch": self.batch,
            "postage": {
                "lines": [line.as_dict() for line in self.postage],
                "total": postage_total(self.postage),
            },
        }
        if lists:
            view["held_back"] = [h.as_dict() for h in self.held]
            view["problems"] = [p.as_dict() for p in self.problems]
        return view


@dataclass
class RunSummary:
    """What one run did, for the CLI to print."""

    run_date: date
    dry_run: bool
    delivery: str
    campaigns: list[CampaignSummary]
    problems: list[Problem]
    outbox: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    contacts_file: str | None = None  # what the held-back lines' numbers refer to
    default_locale: str | None = None
    sending: SendSummary | None = None  # the send step of `run --send`
    # Emails left uncertain by an earlier send (delivery: smtp), for a person to check.
    uncertain_emails: list[Unsent] = field(default_factory=list)
    # What came back since the previous run: suppressions people's own answers made
    # (value, channel, source), each undoable, and the replies that wait for the owner.
    came_back: list[tuple[str, str, str]] = field(default_factory=list)
    replies_waiting: int = 0
    # The do-not-contact lists consulted: file → when it was last changed (proof, per run).
    suppression_lists: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Messages that should have gone out and did not (render or delivery failures)."""
        return sum(c.failed for c in self.campaigns)

    @property
    def uncertain(self) -> int:
        """Emails that may or may not have reached the server: a person should check."""
        return len(self.uncertain_emails)

    @property
    def exit_code(self) -> int:
        """0 all went well; 1 some messages failed (the rest were done)."""
        sending = self.sending.exit_code if self.sending is not None else 0
        return 1 if self.failed or sending else 0

    def counts(self) -> dict[str, object]:
        """The run's counts as the ledger keeps them (without the lists of contacts)."""
        return self.as_dict(lists=False)

    def as_dict(self, *, lists: bool = True) -> dict[str, object]:
        """A JSON-ready view (`lists`: with the held-back messages and row problems)."""
        view: dict[str, object] = {
            "date": self.run_date.isoformat(),
            "dry_run": self.dry_run,
            "delivery": self.delivery,
            "outbox": self.outbox,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "campaigns": [c.as_dict(lists=lists) for c in self.campaigns],
            "send": self.sending.as_dict() if self.sending is not None else None,
            "uncertain": [u.as_dict() for u in self.uncertain_emails],
            "came_back": {
                "suppressed": [
                    {"value": v, "channel": c, "source": s} for v, c, s in self.came_back
                ],
                "replies_waiting": self.replies_waiting,
            },
            "exit_code": self.exit_code,
        }
        if self.suppression_lists:
            view["suppression_lists"] = dict(self.suppression_lists)
        if lists:
            view["problems"] = [p.as_dict() for p in self.problems]
        return view
