"""What happens to a message the run decided to send: the outlets.

* `PublishOutlet` renders it and writes it: the email to the outbox, the letter into its
  campaign's batch PDF for the printer (a real run).
* `RenderOnlyOutlet` renders and lays out everything — every letter through WeasyPrint and
  the envelope-window check, in worker processes as the run does — and keeps nothing
  (a dry run, `validate`, `explain`).
* `CountOnlyOutlet` renders nothing: every message counts as made (`plan`).

Every outlet works in two phases, the same for both channels, and never calls back into the
run: `prepare_emails` renders a chunk's emails and says what each would be (its path, its
Message-ID) before any file exists; the run claims those in the store; `publish_emails`
writes the granted ones and returns the writes that failed. Letters are queued one by one
(`letter`), offered together (`prepare_letters`), and the granted ones laid out and printed
(`publish_letters`). The outlets that write nothing publish nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from outreach.deliver.outbox import OutboxWriter
from outreach.deliver.printing import BatchOptions, PrintedLetter, lay_out, write_batch
from outreach.i18n import _
from outreach.model.errors import DeliveryError, OutreachError, Problem
from outreach.model.reasons import Code, Reason, Status
from outreach.postage import PostageLine, postage_csv, postage_lines
from outreach.render.letter import LetterRenderer, RenderedLetter
from outreach.render.templates import EmailRenderer
from outreach.rules.households import Household

if TYPE_CHECKING:
    from outreach.contacts import Contact
    from outreach.model.campaigns import Campaign, Occurrence
    from outreach.model.config import Settings
    from outreach.render.email import RenderedEmail
    from outreach.shards import Shard


@dataclass(frozen=True, slots=True)
class Made:
    """What became of one message the runner decided to send."""

    status: Status  # rendered | sent | uncertain | failed
    artifact: str | None = None  # path relative to the workspace root
    message_id: str | None = None
    reason: Reason | None = None  # why it failed
    problem: Problem | None = None  # the failure, located (file, line, field, hint)
    # False when the contact's language has no template variant: it went in the default one
    own_language: bool = True

    @property
    def failed(self) -> bool:
        """Whether the message could not be made (nothing exists of it)."""
        return self.status == "failed" and self.artifact is None


MessageKey = tuple[str, str, str]  # (contact_id, campaign, occurrence_key)
EmailJob = tuple["Campaign", "Contact", "Occurrence"]
# (campaign, letters laid out, letters in its batch): for a progress bar
LetterProgress = Callable[[str, int, int], None]


@dataclass
class LetterBatch:
    """One campaign's letters after `finish`: what became of each, and the batch file."""

    campaign: str
    made: dict[MessageKey, Made] = field(default_factory=dict)
    artifact: str | None = None
    pages: int = 0
    postage: list[PostageLine] = field(default_factory=list)


class Outlet(Protocol):
    """What the run needs of an outlet."""

    def prepare_emails(self, jobs: Sequence[EmailJob]) -> list[Made]:
        """Render each email of a chunk, writing nothing: one Made per job, in order (what it
        would be, or why it cannot be made)."""
        ...

    def publish_emails(self, granted: Collection[MessageKey]) -> dict[MessageKey, Made]:
        """Write the prepared emails whose keys are granted; the writes that failed."""
        ...

    def letter(
        self,
        campaign: Campaign,
        contact: Contact,
        occurrence: Occurrence,
        *,
        household: Household | None = None,
    ) -> Made | None:
        """Queue a letter (to a whole household, whose first contact is `contact`) for
        `finish`; a Made only when it fails at once."""
        ...

    def prepare_letters(self) -> list[MessageKey]:
        """The queued letters, to claim."""
        ...

    def publish_letters(self, granted: Collection[MessageKey]) -> list[LetterBatch]:
        """Lay out (and, for a publish, print) the queued letters whose keys are granted."""
        ...

    def close(self) -> None: ...


def _failure(
    exc: OutreachError, *, code: Code, channel: str, contact: Contact, campaign: Campaign
) -> Made:
    return Made(
        status="failed",
        reason=Reason(code, channel, detail=str(exc)),
        problem=exc.as_problem(contact_id=contact.id, campaign=campaign.name),
    )


class _Renderers:
    """Each campaign's renderers, compiled once (a broken template stops the run at once)."""

    def __init__(
        self, settings: Settings, campaigns: Sequence[Campaign], *, today: date, now: datetime
    ) -> None:
        self.settings = settings
        self.emails = {
            c.name: EmailRenderer(settings=settings, campaign=c, today=today, now=now)
            for c in campaigns
            if c.email is not None
        }
        self.today, self.now = today, now
        # Letter renderers are made on the first letter: most runs have none.
        self.letters: dict[str, LetterRenderer | OutreachError] = {}

    def letter(self, campaign: Campaign) -> LetterRenderer | OutreachError:
        found = self.letters.get(campaign.name)
        if found is None:
            try:
                found = LetterRenderer(
                    settings=self.settings, campaign=campaign, today=self.today, now=self.now
                )
            except OutreachError as exc:
                found = exc
            self.letters[campaign.name] = found
        return found


class _RenderingOutlet:
    """Renders emails and letters; what it does with them is its subclass's business."""

    def __init__(
        self,
        *,
        settings: Settings,
        campaigns: Sequence[Campaign],
        today: date,
        now: datetime,
        workers: int | None = None,
        progress: LetterProgress | None = None,
    ) -> None:
        self.settings = settings
        self.renderers = _Renderers(settings, campaigns, today=today, now=now)
        self.today = today
        self.workers = workers or 2
        self.progress = progress
        self.queued: dict[str, list[tuple[RenderedLetter, bool]]] = {}

    def _progress_of(self, campaign: str) -> Callable[[int, int], None] | None:
        return functools.partial(self.progress, campaign) if self.progress is not None else None

    def _render_email(
        self, campaign: Campaign, contact: Contact, occurrence: Occurrence
    ) -> tuple[Made | None, object]:
        renderer = self.renderers.emails[campaign.name]
        try:
            message = renderer.render(contact, occurrence)
        except OutreachError as exc:
            made = _failure(
                exc, code=Code.RENDER_FAILED, channel="email", contact=contact, campaign=campaign
            )
            return made, None
        return None, message

    def letter(
        self,
        campaign: Campaign,
        contact: Contact,
        occurrence: Occurrence,
        *,
        household: Household | None = None,
    ) -> Made | None:
        """Render the letter's HTML now (cheap); lay it out in `finish`."""
        renderer = self.renderers.letter(campaign)
        try:
            if isinstance(renderer, OutreachError):
                raise renderer
            letter = renderer.render(contact, occurrence, household=household)
        except OutreachError as exc:
            return _failure(
                exc, code=Code.RENDER_FAILED, channel="letter", contact=contact, campaign=campaign
            )
        own = renderer.in_own_language(contact)
        self.queued.setdefault(campaign.name, []).append((letter, own))
        return None

    def prepare_letters(self) -> list[MessageKey]:
        """The queued letters, to claim."""
        return [
            (letter.contact_id, name, letter.occurrence_key)
            for name, queued in self.queued.items()
            for letter, _key in queued
        ]

    def close(self) -> None:
        """Nothing held open."""


def _layout_failure(letter: RenderedLetter, exc: OutreachError) -> Made:
    return Made(
        status="failed",
        reason=Reason(Code.LAYOUT_FAILED, "letter", detail=str(exc)),
        problem=exc.as_problem(contact_id=letter.contact_id, campaign=letter.campaign),
    )


def _key_of(message: RenderedEmail) -> MessageKey:
    return (message.contact_id, message.campaign, message.occurrence_key)


def _write_failure(campaign: Campaign, contact: Contact, error: str) -> Made:
    return Made(
        status="failed",
        reason=Reason(Code.WRITE_FAILED, "email", detail=error),
        problem=Problem(message=error, contact_id=contact.id, campaign=campaign.name),
    )


class PublishOutlet(_RenderingOutlet):
    """The real run's outlet: the outbox for emails, batch PDFs for letters."""

    def __init__(
        self,
        *,
        settings: Settings,
        campaigns: Sequence[Campaign],
        today: date,
        now: datetime,
        split: bool = False,
        workers: int | None = None,
        progress: LetterProgress | None = None,
        shard: Shard | None = None,
    ) -> None:
        super().__init__(
            settings=settings,
            campaigns=campaigns,
            today=today,
            now=now,
            workers=workers,
            progress=progress,
        )
        self.split = split
        # A shard's files say which shard made them: recovery of one shard touches only its own.
        self.shard_label = shard.label if shard is not None else ""
        self.outbox = OutboxWriter(
            root=settings.root,
            out_dir=settings.out_dir,
            run_date=today,
            subfolder=self.shard_label,
        )
        # The chunk's emails between prepare and publish.
        self.prepared: dict[MessageKey, tuple[Campaign, Contact, RenderedEmail]] = {}

    def prepare_emails(self, jobs: Sequence[EmailJob]) -> list[Made]:
        """Render the chunk's emails and name each one's outbox file (nothing written yet)."""
        from outreach.render.email import RenderedEmail

        made: list[Made] = []
        self.prepared.clear()
        for campaign, contact, occurrence in jobs:
            failed, message = self._render_email(campaign, contact, occurrence)
            if failed is not None:
                made.append(failed)
                continue
            assert isinstance(message, RenderedEmail)
            try:
                artifact = self.outbox.artifact_of(message)
            except (DeliveryError, OSError) as exc:
                made.append(_write_failure(campaign, contact, str(exc)))
                continue
            own = self.renderers.emails[campaign.name].in_own_language(contact)
            made.append(
                Made(
                    status="rendered",
                    artifact=artifact,
                    message_id=message.message_id,
                    own_language=own,
                )
            )
            self.prepared[_key_of(message)] = (campaign, contact, message)
        return made

    def publish_emails(self, granted: Collection[MessageKey]) -> dict[MessageKey, Made]:
        """Write the granted emails to the outbox (the others another run made)."""
        failures: dict[MessageKey, Made] = {}
        for key, (campaign, contact, message) in self.prepared.items():
            if key not in granted:
                continue
            result = self.outbox.push(message)
            if result.status == "failed":
                # The file could not be written (disk full, permissions): nothing exists, so
                # the next run makes it again.
                error = result.error or _("could not write the message")
                failures[key] = _write_failure(campaign, contact, error)
        self.prepared.clear()
        return failures

    def publish_letters(self, granted: Collection[MessageKey]) -> list[LetterBatch]:
        """Print each campaign's batch of the granted letters; a letter that does not fit its
        envelope fails alone."""
        settings = self.settings
        batches = []
        for name, queued in self.queued.items():
            batch = LetterBatch(campaign=name)
            batches.append(batch)
            letters = [
                letter
                for letter, _key in queued
                if (letter.contact_id, name, letter.occurrence_key) in granted
            ]
            if not letters:
                continue
            own = {(letter.contact_id, letter.occurrence_key): o for letter, o in queued}
            try:
                result = write_batch(
                    letters=letters,
                    out_dir=settings.out_dir,
                    run_date=self.today,
                    campaign=name,
                    options=BatchOptions(
                        duplex=settings.letters.duplex,
                        sort_by_postal_code=settings.letters.sort_by_postal_code,
                        split=self.split,
                        workers=self.workers,
                        name_suffix=f".{self.shard_label}" if self.shard_label else "",
                    ),
                    progress=self._progress_of(name),
                    postage=functools.partial(self._postage, batch),
                )
            except DeliveryError as exc:
                for letter in letters:
                    batch.made[(letter.contact_id, name, letter.occurrence_key)] = Made(
                        status="failed",
                        reason=Reason(Code.WRITE_FAILED, "letter", detail=str(exc)),
                        problem=exc.as_problem(contact_id=letter.contact_id, campaign=name),
                    )
                continue
            by_key = {(letter.contact_id, letter.occurrence_key): letter for letter in letters}
            for failure in result.failures:
                letter = by_key[(failure.contact_id, failure.occurrence_key)]
                key = (failure.contact_id, name, failure.occurrence_key)
                batch.made[key] = _layout_failure(letter, failure.error)
            if result.pdf_path is None:
                continue
            artifact = result.pdf_path.relative_to(settings.root).as_posix()
            for printed in result.letters:
                key = (printed.contact_id, name, printed.occurrence_key)
                batch.made[key] = Made(
                    status="rendered",
                    artifact=artifact,
                    own_language=own[(printed.contact_id, printed.occurrence_key)],
                )
            batch.artifact = artifact
            batch.pages = result.pages
        self.queued.clear()
        return batches

    def _postage(self, batch: LetterBatch, printed: Sequence[PrintedLetter]) -> bytes:
        """The batch's postage list: kept for the summary, written beside the manifest."""
        settings = self.settings
        batch.postage = postage_lines(
            printed,
            home_country=settings.sender.address.country or settings.contacts.default_country,
            duplex=settings.letters.duplex,
            postage=settings.letters.postage,
        )
        return postage_csv(batch.postage)

    def close(self) -> None:
        """Close the outbox writer."""
        self.outbox.close()


class RenderOnlyOutlet(_RenderingOutlet):
    """Renders and lays out everything a publish would, and keeps nothing.

    With `layout_once`, a contact's later letters of the same campaign (validate's year holds
    two birthdays for some) are rendered but take the layout verdict of the first: the
    envelope windows see the same address and return lines, and WeasyPrint is most of the time.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        campaigns: Sequence[Campaign],
        today: date,
        now: datetime,
        workers: int | None = None,
        layout_once: bool = False,
        progress: LetterProgress | None = None,
    ) -> None:
        super().__init__(
            settings=settings,
            campaigns=campaigns,
            today=today,
            now=now,
            workers=workers,
            progress=progress,
        )
        self.layout_once = layout_once

    def prepare_emails(self, jobs: Sequence[EmailJob]) -> list[Made]:
        """Render each email and drop it."""
        made = []
        for campaign, contact, occurrence in jobs:
            failed, _message = self._render_email(campaign, contact, occurrence)
            if failed is not None:
                made.append(failed)
                continue
            own = self.renderers.emails[campaign.name].in_own_language(contact)
            made.append(Made(status="rendered", own_language=own))
        return made

    def publish_emails(self, granted: Collection[MessageKey]) -> dict[MessageKey, Made]:
        """Nothing to write."""
        return {}

    def publish_letters(self, granted: Collection[MessageKey]) -> list[LetterBatch]:
        """Lay every granted letter out for real (WeasyPrint, the envelope windows) and drop
        the PDF."""
        batches = []
        for name, everything in self.queued.items():
            queued = [
                item
                for item in everything
                if (item[0].contact_id, name, item[0].occurrence_key) in granted
            ]
            batch = LetterBatch(campaign=name)
            batches.append(batch)
            first: dict[str, int] = {}  # contact id → index of its letter that is laid out
            letters: list[RenderedLetter] = []
            for letter, _key in queued:
                if not self.layout_once or letter.contact_id not in first:
                    first[letter.contact_id] = len(letters)
                    letters.append(letter)
            errors = lay_out(
                letters,
                duplex=self.settings.letters.duplex,
                workers=self.workers,
                progress=self._progress_of(name),
            )
            verdicts = {letters[i].contact_id: errors[i] for i in first.values()}
            for index, (letter, own) in enumerate(queued):
                key = (letter.contact_id, name, letter.occurrence_key)
                error = verdicts[letter.contact_id] if self.layout_once else errors[index]
                if error is None:
                    batch.made[key] = Made(status="rendered", own_language=own)
                else:
                    batch.made[key] = _layout_failure(letter, error)
        self.queued.clear()
        return batches


class CountOnlyOutlet:
    """Decides without rendering: every message counts as made (`plan`)."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, MessageKey]] = []

    def prepare_emails(self, jobs: Sequence[EmailJob]) -> list[Made]:
        """Count them."""
        return [Made(status="rendered") for _job in jobs]

    def publish_emails(self, granted: Collection[MessageKey]) -> dict[MessageKey, Made]:
        """Nothing to write."""
        return {}

    def letter(
        self,
        campaign: Campaign,
        contact: Contact,
        occurrence: Occurrence,
        *,
        household: Household | None = None,
    ) -> Made | None:
        """Count it at `finish`."""
        self.queued.append((campaign.name, (contact.id, campaign.name, occurrence.key)))
        return None

    def prepare_letters(self) -> list[MessageKey]:
        """The queued letters, to claim."""
        return [key for _letter, key in self.queued]

    def publish_letters(self, granted: Collection[MessageKey]) -> list[LetterBatch]:
        """Every granted letter counts as printed."""
        batches: dict[str, LetterBatch] = {}
        for name, key in self.queued:
            if key not in granted:
                continue
            batch = batches.setdefault(name, LetterBatch(campaign=name))
            batch.made[key] = Made(status="rendered")
        self.queued.clear()
        return list(batches.values())

    def close(self) -> None:
        """Nothing held open."""


def outbox_folder(settings: Settings, today: date) -> Path:
    """Where a run's emails go."""
    return Path(settings.paths.out) / "outbox" / today.isoformat()


if TYPE_CHECKING:

    def _implements_outlet(
        a: PublishOutlet, b: RenderOnlyOutlet, c: CountOnlyOutlet
    ) -> tuple[Outlet, Outlet, Outlet]:
        return a, b, c  # mypy checks that each has everything Outlet promises
