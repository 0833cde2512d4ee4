"""Letters that arrive in time: posted `letters.delivery_days` before their window, by email
(fallback) or missed when the post can no longer make it, never late."""

from __future__ import annotations

import tempfile
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outreach.contacts import Contact, ContactList
from outreach.deliver.outlets import CountOnlyOutlet
from outreach.ledger import Ledger
from outreach.model.campaigns import Campaign, EmailSpec, LetterSpec, Occurrence
from outreach.model.config import CadencePolicy, Letters, Sender, Settings
from outreach.model.reasons import Code
from outreach.pipeline.decide import Decision, RunDates
from outreach.pipeline.run import execute_run
from outreach.rules.arrival import Timing, send_window, timing
from outreach.workspace import Workspace

MADRID = ZoneInfo("Europe/Madrid")
BIRTHDAY = Occurrence(
    campaign="birthday",
    key="birthday:2026",
    date=date(2026, 11, 26),
    earliest=date(2026, 11, 23),
    latest=date(2026, 11, 26),
)


def test_a_letters_window_is_moved_back_by_the_delivery_days() -> None:
    assert send_window(BIRTHDAY, channel="letter", delivery_days=2) == (
        date(2026, 11, 21),
        date(2026, 11, 24),
    )
    assert send_window(BIRTHDAY, channel="email", delivery_days=2) == (
        date(2026, 11, 23),
        date(2026, 11, 26),
    )


@pytest.mark.parametrize(
    ("day", "channel", "expected"),
    [
        (20, "letter", Timing.EARLY),
        (21, "letter", Timing.IN_TIME),  # arrives on the 23rd, the window's first day
        (24, "letter", Timing.IN_TIME),  # arrives on the birthday
        (25, "letter", Timing.TOO_LATE),
        (22, "email", Timing.EARLY),
        (26, "email", Timing.IN_TIME),
        (27, "email", Timing.EARLY),  # a closed window is not due (it is missed elsewhere)
        (22, None, Timing.EARLY),  # no channel: judged by the occurrence's own window
    ],
)
def test_timing(day: int, channel: str | None, expected: Timing) -> None:
    when = date(2026, 11, day)
    assert timing(BIRTHDAY, channel=channel, today=when, until=when, delivery_days=2) is expected


def ana(**fields: object) -> Contact:
    values: dict[str, object] = {
        "id": "c1",
        "line": 2,
        "first_name": "Ana",
        "last_name": "Gómez",
        "birthday": date(1990, 11, 26),
        "street": "Calle Mayor 5",
        "postal_code": "28013",
        "city": "Madrid",
        "preferred_channel": "letter",
        "email_consent": date(2025, 1, 15),  # the email a late letter becomes has a basis
        **fields,
    }
    return Contact(**values)  # type: ignore[arg-type]


def birthday(**fields: object) -> Campaign:
    values: dict[str, object] = {
        "name": "birthday",
        "kind": "birthday",
        "path": Path("campaigns/birthday.yaml"),
        "channel": "preferred",
        "days_before": 3,
        "email": EmailSpec(subject="s", text="t.txt.j2"),
        "letter": LetterSpec(template="l.html.j2"),
        **fields,
    }
    return Campaign(**values)  # type: ignore[arg-type]


def run_on(days: list[int], contact: Contact, campaign: Campaign) -> list[tuple[int, Decision]]:
    """Real runs on a real ledger, one per day of November 2026; their trace."""
    settings = Settings(
        root=Path("/nonexistent"),
        sender=Sender(name="Casa Lucía", email="hola@casalucia.example"),
        cadence=CadencePolicy(min_gap_days=0, max_messages=10, per_days=30),
        letters=Letters(delivery_days=2),
    )
    workspace = Workspace(
        settings=settings,
        contacts=ContactList(path=Path("contacts.csv"), contacts=(contact,), problems=(), rows=1),
        campaigns=(campaign,),
    )
    trace: list[tuple[int, Decision]] = []
    with tempfile.TemporaryDirectory() as folder, Ledger.open(Path(folder) / "l.sqlite") as ledger:
        for day in days:
            now = datetime.combine(date(2026, 11, day), time(9), tzinfo=MADRID)
            execute_run(
                workspace=workspace,
                store=ledger,
                outlet=CountOnlyOutlet(),
                dates=RunDates(now.date()),
                clock=lambda now=now: now,
                observer=lambda event, day=day: trace.append((day, event)),
            )
    return [(day, event) for day, event in trace if event.occurrence_key or event.occurrence]


def outcomes(trace: list[tuple[int, Decision]]) -> list[tuple[int, str, str | None]]:
    return [(day, event.outcome, event.channel) for day, event in trace]


def test_a_letter_goes_when_it_can_arrive_by_the_birthday() -> None:
    trace = run_on([20, 21, 22], ana(), birthday())
    assert outcomes(trace) == [(21, "send", "letter"), (22, "already", None)]


def test_too_late_for_the_post_a_letter_goes_by_email_with_fallback() -> None:
    trace = run_on([25], ana(email="ana@example.com"), birthday(fallback=True))
    assert outcomes(trace) == [(25, "send", "email")]
    reason = trace[0][1].reason
    assert reason is not None and reason.code is Code.LETTER_TOO_LATE
    assert "it takes 2 days; the window ends 2026-11-26" in reason.text


def test_too_late_for_the_post_and_no_fallback_a_letter_is_missed_once() -> None:
    trace = run_on([25, 26], ana(email="ana@example.com"), birthday(channel="letter"))
    assert outcomes(trace) == [(25, "missed", "letter"), (26, "already", None)]


def test_a_letter_too_late_waits_for_its_emails_window() -> None:
    # A window of one day (the birthday): the letter had to go on the 24th; on the 25th it is
    # too late for the post and too early for the email, which goes on the 26th.
    trace = run_on([25, 26], ana(email="ana@example.com"), birthday(fallback=True, days_before=0))
    assert outcomes(trace) == [(26, "send", "email")]
