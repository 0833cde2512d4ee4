"""When a campaign is due for a contact: its occurrences, each with a window and a stable key.

A birthday once a year, a promotion once, a reminder per offset of a date field (or every
`every_days` since it), a one-off on its day: each occurrence is a window `[earliest, latest]`
and a key the ledger keeps it under. Pure functions of the campaign, the contact and the days.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import MAXYEAR, MINYEAR, date, timedelta

from outreach.contacts import Contact, parse_date
from outreach.i18n import _
from outreach.model.campaigns import Campaign, FieldError, Occurrence
from outreach.model.errors import CampaignError


def _meets(occurrence: Occurrence, start: date, end: date) -> bool:
    return occurrence.earliest <= end and occurrence.latest >= start


def _birthday_in(birthday: date, year: int) -> date:
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def _birthdays(
    campaign: Campaign, contact: Contact, start: date, end: date
) -> Iterator[Occurrence]:
    born = contact.birthday
    if born is None:
        return
    before, after = timedelta(days=campaign.days_before), timedelta(days=campaign.days_after)
    # One year either side, so a window that crosses New Year is found from both ends.
    first = max(start.year - 1, born.year + 1, MINYEAR + 1)  # no "birthday" on the day of birth
    for year in range(first, min(end.year + 1, MAXYEAR - 1) + 1):
        day = _birthday_in(born, year)
        earliest, latest = day - before, day + after
        if earliest > end or latest < start:
            continue  # outside the days asked for: not worth a record (plan asks 450,000 times)
        yield Occurrence(
            campaign.name, f"birthday:{year}", day, earliest, latest, age=year - born.year
        )


def _field_date(campaign: Campaign, contact: Contact, date_format: str) -> date | None:
    field = campaign.date_field
    assert field is not None
    value: object = contact.extra.get(field)
    if value is None and field in Contact.__dataclass_fields__:
        value = getattr(contact, field)
    if value is None or isinstance(value, date):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return parse_date(text, date_format=date_format)
    except ValueError:
        raise FieldError(
            _("{text} is not a date").format(text=repr(text)),
            contact_id=contact.id,
            line=contact.line,
            field=field,
            hint=_("write dates as YYYY-MM-DD (or as config contacts.date_format says)"),
        ) from None


def _reminders(
    campaign: Campaign, contact: Contact, start: date, end: date, date_format: str
) -> Iterator[Occurrence]:
    base = _field_date(campaign, contact, date_format)
    if base is None:
        return
    grace = timedelta(days=campaign.grace_days)
    try:
        if campaign.every_days is not None:
            step = campaign.every_days
            # The k-th repeat is due on base + k*step; only the k whose window meets start..end.
            first_k = max(1, -(-((start - grace) - base).days // step))
            last_k = (end - base).days // step
            for k in range(first_k, last_k + 1):
                day = base + timedelta(days=k * step)
                yield Occurrence(
                    campaign.name, f"reminder:{day.isoformat()}:{step}", day, day, day + grace
                )
            return
        for offset in campaign.offsets:
            day = base + timedelta(days=offset)
            latest = day + grace
            if offset < 0:
                # A reminder *before* an appointment never goes out after the appointment day.
                latest = min(latest, base)
            # `date` is the appointment (what a subject like "su reserva del …" names);
            # the window says when to send.
            yield Occurrence(
                campaign.name, f"reminder:{base.isoformat()}:{offset}", base, day, latest
            )
    except OverflowError:  # a date near year 9999 in the data: nothing sensible to send
        return


def _all_occurrences(
    campaign: Campaign, contact: Contact, start: date, end: date, date_format: str
) -> Iterator[Occurrence]:
    kind = campaign.kind
    if kind == "birthday":
        yield from _birthdays(campaign, contact, start, end)
    elif kind == "promotion":
        if campaign.start is None or campaign.end is None:
            raise CampaignError(_("a promotion needs start and end"), path=campaign.path)
        yield Occurrence(campaign.name, "promotion", campaign.start, campaign.start, campaign.end)
    elif kind == "reminder":
        if campaign.date_field is None:
            raise CampaignError(_("a reminder needs date_field"), path=campaign.path)
        yield from _reminders(campaign, contact, start, end, date_format)
    else:
        if campaign.send_on is None:
            raise CampaignError(_("a one_off needs send_on"), path=campaign.path)
        day = campaign.send_on
        yield Occurrence(
            campaign.name, "one_off", day, day, day + timedelta(days=campaign.grace_days)
        )


def occurrence_basis(campaign: Campaign, contact: Contact) -> object:
    """What a campaign's occurrences for a contact depend on: equal bases, equal occurrences.

    A birthday's occurrences follow from the birthday, a reminder's from its date field, a
    promotion's and a one-off's from the campaign alone; a caller working out occurrences for
    many contacts (the plan: 100,000 contacts × campaigns) works each basis out once.
    """
    kind = campaign.kind
    if kind == "birthday":
        return contact.birthday
    if kind == "reminder" and campaign.date_field is not None:
        field = campaign.date_field
        value = contact.extra.get(field)
        if value is None and field in Contact.__dataclass_fields__:
            value = getattr(contact, field)
        return value if value is None or isinstance(value, date) else str(value)
    return None


def occurrences_between(
    campaign: Campaign, contact: Contact, *, start: date, end: date, date_format: str
) -> list[Occurrence]:
    """Occurrences whose window [earliest, latest] meets the days start..end."""
    found = [
        occurrence
        for occurrence in _all_occurrences(campaign, contact, start, end, date_format)
        if _meets(occurrence, start, end)
    ]
    found.sort(key=lambda occurrence: (occurrence.latest, occurrence.key))
    return found


def next_occurrence(
    campaign: Campaign, contact: Contact, *, today: date, date_format: str
) -> Occurrence | None:
    """The occurrence due today, else the next one within a year, else None."""
    found = occurrences_between(
        campaign, contact, start=today, end=today + timedelta(days=366), date_format=date_format
    )
    return found[0] if found else None
