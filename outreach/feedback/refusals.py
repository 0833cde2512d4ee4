"""A 5xx for a recipient at sending time is a hard bounce, counted like one from the mailbox."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Protocol

from outreach.deliver.smtp import refused_recipients_message
from outreach.feedback.classify import clean_text
from outreach.feedback.score import verdict
from outreach.ledger import Block, BounceEvent, FeedbackStore
from outreach.model.config import Settings

# outreach.deliver.smtp words a refused recipient so: "the server refused the recipient
# ADDRESS: 550 5.1.1 ..." in the owner's language (tests/test_feedback_smtp.py sends to a real
# server to keep it so); read back in the words of the language the send step spoke.
_REFUSED_REST = r"(?P<address>\S+?): (?P<code>5\d\d)(?P<text>.*)$"
_ENHANCED = re.compile(r"\b5\.\d{1,3}\.\d{1,3}\b")


class _Failed(Protocol):
    """An email the send step could not send (outreach.deliver.send.Unsent)."""

    @property
    def contact_id(self) -> str: ...
    @property
    def campaign(self) -> str: ...
    @property
    def occurrence_key(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def permanent(self) -> bool: ...


def _refused_pattern() -> re.Pattern[str]:
    """The one-recipient refusal as smtp words it now, its {refused} part split into fields."""
    before, _sep, after = refused_recipients_message(1).partition("{refused}")
    assert not after  # the refused recipient ends the sentence in every language
    return re.compile("^" + re.escape(before) + _REFUSED_REST, re.S)


def record_refusals(
    settings: Settings,
    *,
    ledger: FeedbackStore,
    failed: Iterable[_Failed],
    today: date,
    now: datetime,
) -> list[Block]:
    """Count each recipient the SMTP server refused for good as a hard bounce; the new blocks."""
    found: list[tuple[_Failed, str, str, str]] = []
    refused = _refused_pattern()
    for unsent in failed:
        match = refused.match(unsent.error) if unsent.permanent else None
        if match is None:
            continue
        text = clean_text(match.group("code") + match.group("text"))
        enhanced = _ENHANCED.search(text)
        status = enhanced.group(0) if enhanced else match.group("code")
        found.append((unsent, match.group("address").lower(), status, text))
    if not found:
        return []
    history = {
        a: [(e.day, e.kind) for e in events]
        for a, events in ledger.bounce_events(a for _, a, _, _ in found).items()
    }
    already = {(b.channel, b.value) for b in ledger.blocks(values=[a for _, a, _, _ in found])}
    events: list[BounceEvent] = []
    blocks: list[Block] = []
    for unsent, address, status, text in found:
        events.append(
            BounceEvent(
                address=address,
                contact_id=unsent.contact_id,
                day=today,
                kind="hard",
                campaign=unsent.campaign,
                occurrence_key=unsent.occurrence_key,
                status=status,
                diagnostic=text,
                source="smtp",
            )
        )
        past = history.setdefault(address, [])
        past.append((today, "hard"))
        if ("email", address) in already:
            continue
        judged = verdict(past, latest="hard", rules=settings.bounces, today=today)
        if judged.block is not None:
            already.add(("email", address))
            blocks.append(
                Block(
                    channel="email",
                    value=address,
                    contact_id=unsent.contact_id,
                    reason=judged.block,
                    day=today,
                    status=status,
                    diagnostic=text,
                    score=judged.score,
                )
            )
    ledger.record_feedback(events=events, blocks=blocks, now=now)
    return blocks
