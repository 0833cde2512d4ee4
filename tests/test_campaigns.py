"""Campaign files (loading, validation errors) and occurrences (windows and keys)."""

from __future__ import annotations

import textwrap
from datetime import date, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

from outreach.contacts import Contact
from outreach.model.campaigns import Campaign, FieldError, Occurrence, load_campaign, load_campaigns
from outreach.model.config import CadencePolicy
from outreach.model.errors import CampaignError
from outreach.rules.occurrences import occurrences_between

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_NAMES = (
    "birthday.txt.j2",
    "birthday.html.j2",
    "birthday_letter.html.j2",
    "promotion.txt.j2",
    "promotion.html.j2",
    "reminder.txt.j2",
    "note.txt.j2",
)


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    for name in TEMPLATE_NAMES:
        (folder / name).write_text("Hola {{ contact.first_name }}\n", encoding="utf-8")
    return folder


def write(folder: Path, text: str, name: str = "campaign.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, templates: Path, text: str, name: str = "campaign.yaml") -> Campaign:
    return load_campaign(write(tmp_path, text, name), templates_dir=templates)


def contact(**fields: object) -> Contact:
    extra = fields.pop("extra", {})
    return Contact(
        id=str(fields.pop("id", "c1")),
        line=2,
        extra=MappingProxyType(dict(extra)),  # type: ignore[call-overload]
        **fields,  # type: ignore[arg-type]
    )


def make(kind: str, **fields: object) -> Campaign:
    return Campaign.model_validate({"name": kind, "kind": kind, "path": Path("x.yaml"), **fields})


def due_occurrences(
    campaign: Campaign, contact: Contact, *, today: date, date_format: str
) -> list[Occurrence]:
    """Occurrences whose window contains today."""
    return occurrences_between(campaign, contact, start=today, end=today, date_format=date_format)


def due(campaign: Campaign, person: Contact, day: date, date_format: str = "DMY") -> list[str]:
    return [o.key for o in due_occurrences(campaign, person, today=day, date_format=date_format)]


EMAIL = """
email:
  subject: "Hola {{ contact.first_name }}"
  text: note.txt.j2
"""

# --- loading ----------------------------------------------------------------------------------


def test_a_full_birthday_campaign_loads(tmp_path: Path, templates: Path) -> None:
    campaign = load(
        tmp_path,
        templates,
        """
        kind: birthday
        channel: preferred
        fallback: true
        audience:
          tags_any: Customer
          tags_none: [staff]
          where: "contact.city == 'Madrid'"
        priority: 80
        days_before: 3
        days_after: 1
        cadence:
          min_gap_days: 14
          quiet_weekdays: [Sunday]
          quiet_hours: " 22:00-08:30 "
        email:
          subject: "¡Feliz cumpleaños, {{ contact.first_name }}!"
          text: birthday.txt.j2
          html: birthday.html.j2
        letter:
          template: birthday_letter.html.j2
          subject: Feliz cumpleaños
        """,
        name="cumpleaños.yaml",
    )
    assert campaign.name == "cumpleaños"  # the file's stem
    assert campaign.kind == "birthday"
    assert campaign.channel == "preferred"
    assert campaign.fallback is True
    assert campaign.audience.tags_any == ("customer",)  # one tag without brackets, lower-cased
    assert campaign.audience.tags_none == ("staff",)
    assert (campaign.days_before, campaign.days_after, campaign.priority) == (3, 1, 80)
    assert campaign.email is not None and campaign.email.html == "birthday.html.j2"
    assert campaign.letter is not None and campaign.letter.subject == "Feliz cumpleaños"
    assert campaign.path == tmp_path / "cumpleaños.yaml"
    assert campaign.cadence is not None
    policy = campaign.cadence.apply(CadencePolicy(min_gap_days=7, max_messages=3))
    assert (policy.min_gap_days, policy.max_messages, policy.quiet_weekdays) == (14, 3, ("sun",))
    assert policy.quiet_hours == "22:00-08:30"


def test_name_in_the_file_wins_over_the_stem(tmp_path: Path, templates: Path) -> None:
    text = "name: cumple\nkind: birthday\n" + textwrap.dedent(EMAIL)
    assert load(tmp_path, templates, text, name="other.yaml").name == "cumple"


def test_a_locale_variant_of_a_template_is_not_required(tmp_path: Path, templates: Path) -> None:
    (templates / "note.en.txt.j2").write_text("Hello", encoding="utf-8")
    text = "kind: birthday\n" + textwrap.dedent(EMAIL)
    assert load(tmp_path, templates, text).email is not None


@pytest.mark.parametrize(
    ("text", "field", "line", "message", "hint"),
    [
        pytest.param(
            "kind: birthday\ndays_befor: 3\n" + EMAIL,
            "days_befor",
            2,
            "unknown key",
            "did you mean `days_before`?",
            id="typo",
        ),
        pytest.param(
            "kind: birthday\nemail:\n  subjet: Hola\n  text: note.txt.j2\n",
            "email.subjet",
            3,
            "unknown key",
            "did you mean `subject`?",
            id="nested-typo",
        ),
        pytest.param(
            "kind: birthday\naudience:\n  tag_any: [a]\n" + EMAIL,
            "audience.tag_any",
            3,
            "unknown key",
            "`tags_any`",
            id="audience-typo",
        ),
        pytest.param(
            "kind: birthday\nzzz: 1\n" + EMAIL,
            "zzz",
            2,
            "unknown key",
            "known keys here: name, kind",
            id="no-close-key",
        ),
        pytest.param(
            "kind: birthday\npath: /etc\n" + EMAIL,
            "path",
            2,
            "unknown key",
            "",
            id="path-is-not-a-key",
        ),
        pytest.param(EMAIL.lstrip(), "kind", None, "required key is missing", "", id="no-kind"),
        pytest.param(
            "kind: birthdays\n" + EMAIL,
            "kind",
            1,
            "'birthday', 'promotion'",
            "",
            id="bad-kind",
        ),
        pytest.param(
            "kind: birthday\npriority: high\n" + EMAIL,
            "priority",
            2,
            "(got 'high')",
            "",
            id="wrong-type",
        ),
        pytest.param(
            "kind: birthday\ndays_before: -1\n" + EMAIL,
            "days_before",
            2,
            "greater than or equal to 0",
            "",
            id="negative-days",
        ),
        pytest.param(
            "kind: promotion\nstart: 2026-11-20\n" + EMAIL,
            "end",
            1,
            "a promotion needs `end`",
            "add `end:`",
            id="promotion-no-end",
        ),
        pytest.param(
            "kind: promotion\nend: 2026-11-20\n" + EMAIL,
            "start",
            1,
            "a promotion needs `start`",
            "",
            id="promotion-no-start",
        ),
        pytest.param(
            "kind: promotion\nstart: 2026-11-20\nend: 2026-11-19\n" + EMAIL,
            "end",
            3,
            "`end` (2026-11-19) is before `start` (2026-11-20)",
            "",
            id="end-before-start",
        ),
        pytest.param(
            "kind: promotion\nstart: 20/11/2026\nend: 2026-11-21\n" + EMAIL,
            "start",
            2,
            "(got '20/11/2026')",
            "",
            id="not-a-date",
        ),
        pytest.param(
            "kind: reminder\noffsets: [-1]\n" + EMAIL,
            "date_field",
            1,
            "a reminder needs `date_field`",
            "",
            id="reminder-no-field",
        ),
        pytest.param(
            "kind: reminder\ndate_field: next_appointment\n" + EMAIL,
            "offsets",
            1,
            "`offsets` (e.g. [-1]) or `every_days`",
            "",
            id="reminder-no-offsets",
        ),
        pytest.param(
            "kind: reminder\ndate_field: next_appointment\noffsets: [-1]\nevery_days: 90\n" + EMAIL,
            "every_days",
            4,
            "either `offsets` or `every_days`, not both",
            "",
            id="reminder-both",
        ),
        pytest.param(
            "kind: reminder\ndate_field: email\noffsets: [-1]\n" + EMAIL,
            "date_field",
            2,
            "`email` is not a date column",
            "",
            id="reminder-not-a-date-column",
        ),
        pytest.param(
            "kind: reminder\ndate_field: visit\noffsets:\n  - -1\n  - -1\n" + EMAIL,
            "offsets[1]",
            5,
            "offset -1 is listed twice",
            "",
            id="reminder-repeated-offset",
        ),
        pytest.param(
            "kind: reminder\ndate_field: visit\noffsets: [x]\n" + EMAIL,
            "offsets[0]",
            3,
            "valid integer",
            "",
            id="reminder-offset-not-a-number",
        ),
        pytest.param(
            "kind: one_off\ngrace_days: 2\n" + EMAIL,
            "send_on",
            1,
            "a one_off needs `send_on`",
            "",
            id="one-off-no-date",
        ),
        pytest.param(
            "kind: birthday\nstart: 2026-11-20\n" + EMAIL,
            "start",
            2,
            "`start` does not apply to birthday campaigns",
            "kind promotion",
            id="key-of-another-kind",
        ),
        pytest.param(
            "kind: birthday\nend: soon\n" + EMAIL,
            "end",
            2,
            "`end` does not apply to birthday campaigns",
            "",
            id="foreign-key-first",
        ),
        pytest.param(
            "kind: birthday\ngrace_days: 2\n" + EMAIL,
            "grace_days",
            2,
            "`grace_days` does not apply to birthday",
            "reminder / one_off",
            id="grace-on-birthday",
        ),
        pytest.param(
            "kind: promotion\nstart: 2026-11-20\nend: 2026-11-21\ndays_before: 3\n" + EMAIL,
            "days_before",
            4,
            "`days_before` does not apply to promotion",
            "",
            id="days-before-on-promotion",
        ),
        pytest.param(
            "kind: birthday\n",
            "email",
            1,
            "channel: email needs an `email:` section",
            "",
            id="email-without-section",
        ),
        pytest.param(
            "kind: birthday\nchannel: letter\n" + EMAIL,
            "letter",
            2,
            "channel: letter needs a `letter:` section",
            "",
            id="letter-without-section",
        ),
        pytest.param(
            "kind: birthday\nchannel: preferred\n" + EMAIL,
            "letter",
            2,
            "channel: preferred needs a `letter:` section",
            "",
            id="preferred-needs-both",
        ),
        pytest.param(
            "kind: birthday\nfallback: true\n" + EMAIL,
            "letter",
            2,
            "fallback: true needs a `letter:` section",
            "",
            id="fallback-needs-both",
        ),
        pytest.param(
            "kind: birthday\nemail:\n  subject: Hola\n  text: missing.txt.j2\n",
            "email.text",
            4,
            "template file not found",
            "create it in",
            id="missing-text",
        ),
        pytest.param(
            "kind: birthday\nemail:\n  subject: Hola\n  text: note.txt.j2\n  html: gone.html.j2\n",
            "email.html",
            5,
            "template file not found",
            "",
            id="missing-html",
        ),
        pytest.param(
            "kind: birthday\nchannel: letter\nletter:\n  template: gone.html.j2\n",
            "letter.template",
            4,
            "template file not found",
            "",
            id="missing-letter",
        ),
        pytest.param(
            "kind: birthday\nemail:\n  subject: Hola\n  text: ../secret.txt\n",
            "email.text",
            4,
            "is not a file name inside the templates folder",
            "",
            id="template-outside-the-folder",
        ),
        pytest.param(
            "kind: birthday\nemail:\n  subject: 'Hola {{ contact.first_name '\n"
            "  text: note.txt.j2\n",
            "email.subject",
            3,
            "the subject is not a valid template",
            "{{ }}",
            id="bad-subject",
        ),
        pytest.param(
            "kind: birthday\nemail:\n  subject: ' '\n  text: note.txt.j2\n",
            "email.subject",
            3,
            "the subject is empty",
            "",
            id="blank-subject",
        ),
        pytest.param(
            "kind: birthday\nchannel: letter\nletter:\n  template: note.txt.j2\n"
            "  subject: '{% if %}'\n",
            "letter.subject",
            5,
            "the subject is not a valid template",
            "",
            id="bad-letter-subject",
        ),
        pytest.param(
            'kind: birthday\naudience:\n  where: "contact.city == "\n' + EMAIL,
            "audience.where",
            3,
            "not a valid expression",
            "contact.city == 'Madrid'",
            id="bad-where",
        ),
        pytest.param(
            "kind: birthday\naudience:\n  tags_any: ['']\n" + EMAIL,
            "audience.tags_any",
            3,
            "a tag is empty",
            "",
            id="empty-tag",
        ),
        pytest.param(
            "kind: birthday\ncadence:\n  quiet_weekdays: [funday]\n" + EMAIL,
            "cadence.quiet_weekdays[0]",
            3,
            "'funday' is not a weekday",
            "",
            id="bad-weekday",
        ),
        pytest.param(
            "kind: birthday\ncadence:\n  quiet_hours: '21-09'\n" + EMAIL,
            "cadence.quiet_hours",
            3,
            "HH:MM",
            "",
            id="bad-quiet-hours",
        ),
        pytest.param(
            "kind: birthday\ncadence:\n  quiet_hours: '21:00'\n" + EMAIL,
            "cadence.quiet_hours",
            3,
            "a range of times",
            "",
            id="quiet-hours-not-a-range",
        ),
        pytest.param(
            "kind: reminder\ndate_field: visit\noffsets: [-1, 4000]\n" + EMAIL,
            "offsets[1]",
            3,
            "offset 4000 is more than 3660 days",
            "",
            id="offset-too-far",
        ),
        pytest.param(
            "kind: reminder\ndate_field: visit\nevery_days: 4000\n" + EMAIL,
            "every_days",
            3,
            "more than 3660 days",
            "",
            id="every-days-too-far",
        ),
        pytest.param(
            "kind: birthday\ncadence:\n  max_messages: 0\n" + EMAIL,
            "cadence.max_messages",
            3,
            "greater than or equal to 1",
            "",
            id="bad-max-messages",
        ),
        pytest.param(
            "name: ../escape\nkind: birthday\n" + EMAIL,
            "name",
            1,
            "is not a usable campaign name",
            "",
            id="bad-name",
        ),
    ],
)
def test_an_invalid_file_names_the_key_and_its_line(
    tmp_path: Path,
    templates: Path,
    text: str,
    field: str,
    line: int | None,
    message: str,
    hint: str,
) -> None:
    with pytest.raises(CampaignError) as caught:
        load(tmp_path, templates, text)
    error = caught.value
    assert error.path == str(tmp_path / "campaign.yaml")
    assert error.field == field
    assert error.line == line
    assert message in error.message
    assert hint in (error.hint or "")
    assert str(error).startswith(f"{tmp_path / 'campaign.yaml'}")


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("", "the file is empty", None),
        ("- kind: birthday\n", "the top level must be a mapping", 1),
        ("kind: birthday\n  email: [\n", "invalid YAML", 2),
    ],
)
def test_a_file_that_is_not_a_campaign_is_an_error(
    tmp_path: Path, templates: Path, text: str, message: str, line: int | None
) -> None:
    with pytest.raises(CampaignError) as caught:
        load(tmp_path, templates, text)
    assert message in caught.value.message
    assert caught.value.line == line


def test_several_unknown_keys_report_the_first_and_count_the_rest(
    tmp_path: Path, templates: Path
) -> None:
    text = "kind: birthday\nchanel: email\nprioriti: 3\n" + EMAIL
    with pytest.raises(CampaignError) as caught:
        load(tmp_path, templates, text)
    assert (caught.value.field, caught.value.line) == ("chanel", 2)
    assert caught.value.message == "unknown key (and 1 more)"
    assert caught.value.hint == "did you mean `channel`?"


def test_campaign_names_must_be_unique(tmp_path: Path, templates: Path) -> None:
    first = write(tmp_path, "kind: birthday\n" + textwrap.dedent(EMAIL), "a.yaml")
    second = write(tmp_path, "name: a\nkind: birthday\n" + textwrap.dedent(EMAIL), "b.yaml")
    with pytest.raises(CampaignError) as caught:
        load_campaigns([first, second], templates_dir=templates)
    error = caught.value
    assert error.path == str(second)
    assert (error.field, error.line) == ("name", 1)
    assert str(first) in error.message and "'a'" in error.message


def test_load_campaigns_keeps_the_order_given(tmp_path: Path, templates: Path) -> None:
    paths = [
        write(tmp_path, "kind: birthday\n" + textwrap.dedent(EMAIL), f"{name}.yaml")
        for name in ("zeta", "alpha")
    ]
    assert [c.name for c in load_campaigns(paths, templates_dir=templates)] == ["zeta", "alpha"]


# --- the sample campaigns ---------------------------------------------------------------------


def test_the_sample_campaigns_load(templates: Path) -> None:
    paths = [ROOT / "campaigns" / f"{name}.yaml" for name in ("birthday", "promotion", "reminder")]
    birthday, promotion, reminder = load_campaigns(paths, templates_dir=templates)

    assert (birthday.name, birthday.kind, birthday.channel, birthday.fallback) == (
        "birthday",
        "birthday",
        "preferred",
        True,
    )
    assert birthday.audience.tags_any == ("customer",)
    assert birthday.audience.tags_none == ("staff",)
    assert (birthday.priority, birthday.days_before) == (80, 3)
    assert birthday.email is not None and birthday.letter is not None
    assert birthday.email.subject_for("es") == "¡Feliz cumpleaños, {{ contact.first_name }}!"
    assert birthday.email.subject_for("en_GB") == "Happy birthday, {{ contact.first_name }}!"
    assert birthday.email.subject_for("fr") == birthday.email.subject_for("es")
    assert (birthday.email.text, birthday.email.html) == ("birthday.txt.j2", "birthday.html.j2")
    assert birthday.letter.template == "birthday_letter.html.j2"
    assert birthday.letter.subject == "Feliz cumpleaños"

    assert (promotion.kind, promotion.channel, promotion.priority) == ("promotion", "email", 40)
    assert promotion.audience.tags_any == ("newsletter", "regular")
    assert (promotion.start, promotion.end) == (date(2026, 11, 20), date(2026, 12, 5))
    assert promotion.email is not None and promotion.letter is None
    assert promotion.email.html == "promotion.html.j2"

    assert (reminder.kind, reminder.channel, reminder.essential) == ("reminder", "email", True)
    assert (reminder.date_field, reminder.offsets, reminder.grace_days) == (
        "next_appointment",
        (-1,),
        0,
    )
    assert reminder.priority == 90
    assert reminder.email is not None and reminder.email.html is None
    assert reminder.email.subject_for("es").startswith("Recordatorio: su reserva del {{ occ")
    assert reminder.email.subject_for("en").startswith("Reminder: your table on {{ occ")

    # What the lead's sample run on 2026-11-24 relies on.
    today = date(2026, 11, 24)
    guest = contact(birthday=date(1985, 11, 26), extra={"next_appointment": "25/11/2026"})
    assert due(birthday, guest, today) == ["birthday:2026"]
    assert due(promotion, guest, today) == ["promotion"]
    assert due(reminder, guest, today) == ["reminder:2026-11-25:-1"]


# --- birthday ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "keys"),
    [
        (date(2026, 11, 22), []),  # the day before the window opens
        (date(2026, 11, 23), ["birthday:2026"]),  # earliest: 3 days before
        (date(2026, 11, 26), ["birthday:2026"]),  # the birthday
        (date(2026, 11, 27), ["birthday:2026"]),  # latest: days_after 1
        (date(2026, 11, 28), []),
    ],
)
def test_birthday_window_edges(day: date, keys: list[str]) -> None:
    campaign = make("birthday", days_before=3, days_after=1)
    assert due(campaign, contact(birthday=date(1990, 11, 26)), day) == keys


def test_birthday_occurrence_carries_date_window_and_age() -> None:
    campaign = make("birthday", days_before=3)
    [occurrence] = due_occurrences(
        campaign, contact(birthday=date(1990, 11, 26)), today=date(2026, 11, 24), date_format="DMY"
    )
    assert occurrence == Occurrence(
        campaign="birthday",
        key="birthday:2026",
        date=date(2026, 11, 26),
        earliest=date(2026, 11, 23),
        latest=date(2026, 11, 26),
        age=36,
    )


@pytest.mark.parametrize(
    ("day", "keys", "event"),
    [
        (date(2027, 2, 27), [], None),
        (date(2027, 2, 28), ["birthday:2027"], date(2027, 2, 28)),  # common year: 28 Feb
        (date(2027, 3, 1), [], None),
        (date(2028, 2, 28), [], None),
        (date(2028, 2, 29), ["birthday:2028"], date(2028, 2, 29)),  # leap year: 29 Feb
        (date(2028, 3, 1), [], None),
    ],
)
def test_29_february(day: date, keys: list[str], event: date | None) -> None:
    campaign = make("birthday")
    found = due_occurrences(
        campaign, contact(birthday=date(2000, 2, 29)), today=day, date_format="DMY"
    )
    assert [o.key for o in found] == keys
    assert [o.date for o in found] == ([event] if event else [])
    assert [o.age for o in found] == ([event.year - 2000] if event else [])


def test_birthday_window_crosses_new_year() -> None:
    campaign = make("birthday", days_before=3)
    person = contact(birthday=date(1990, 1, 1))
    assert due(campaign, person, date(2026, 12, 28)) == []
    [occurrence] = due_occurrences(campaign, person, today=date(2026, 12, 29), date_format="DMY")
    assert occurrence.key == "birthday:2027"
    assert occurrence.date == date(2027, 1, 1)
    assert occurrence.age == 37
    assert due(campaign, person, date(2027, 1, 1)) == ["birthday:2027"]
    assert due(campaign, person, date(2027, 1, 2)) == []


def test_birthday_grace_crosses_new_year_backwards() -> None:
    campaign = make("birthday", days_after=2)
    person = contact(birthday=date(1990, 12, 31))
    assert due(campaign, person, date(2027, 1, 2)) == ["birthday:2026"]
    assert due(campaign, person, date(2027, 1, 3)) == []


def test_no_birthday_no_occurrence() -> None:
    assert due(make("birthday", days_before=60), contact(), date(2026, 11, 24)) == []


def test_the_day_of_birth_is_not_a_birthday() -> None:
    campaign = make("birthday", days_before=3)
    baby = contact(birthday=date(2026, 11, 20))
    assert due(campaign, baby, date(2026, 11, 20)) == []
    assert due(campaign, baby, date(2027, 11, 20)) == ["birthday:2027"]


def test_occurrences_between_spans_years_sorted_by_latest() -> None:
    campaign = make("birthday", days_before=3)
    found = occurrences_between(
        campaign,
        contact(birthday=date(1990, 3, 10)),
        start=date(2026, 1, 1),
        end=date(2028, 3, 8),
        date_format="DMY",
    )
    assert [o.key for o in found] == ["birthday:2026", "birthday:2027", "birthday:2028"]
    assert [o.age for o in found] == [36, 37, 38]


# --- promotion and one_off --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "keys"),
    [
        (date(2026, 11, 19), []),
        (date(2026, 11, 20), ["promotion"]),
        (date(2026, 12, 5), ["promotion"]),
        (date(2026, 12, 6), []),
    ],
)
def test_promotion_window_edges(day: date, keys: list[str]) -> None:
    campaign = make("promotion", start=date(2026, 11, 20), end=date(2026, 12, 5))
    assert due(campaign, contact(), day) == keys


def test_promotion_occurrence() -> None:
    campaign = make("promotion", start=date(2026, 11, 20), end=date(2026, 12, 5))
    [occurrence] = due_occurrences(campaign, contact(), today=date(2026, 12, 1), date_format="DMY")
    assert (occurrence.date, occurrence.earliest, occurrence.latest, occurrence.age) == (
        date(2026, 11, 20),
        date(2026, 11, 20),
        date(2026, 12, 5),
        None,
    )


@pytest.mark.parametrize(
    ("day", "keys"),
    [
        (date(2026, 11, 30), []),
        (date(2026, 12, 1), ["one_off"]),
        (date(2026, 12, 3), ["one_off"]),
        (date(2026, 12, 4), []),
    ],
)
def test_one_off_window_edges(day: date, keys: list[str]) -> None:
    campaign = make("one_off", send_on=date(2026, 12, 1), grace_days=2)
    assert due(campaign, contact(), day) == keys


# --- reminder ---------------------------------------------------------------------------------


def reminder(**fields: object) -> Campaign:
    return make("reminder", date_field="next_appointment", **fields)


@pytest.mark.parametrize(
    ("day", "keys"),
    [
        (date(2026, 11, 22), []),
        (date(2026, 11, 23), ["reminder:2026-11-25:-2"]),
        (date(2026, 11, 24), ["reminder:2026-11-25:-2", "reminder:2026-11-25:-1"]),
        (date(2026, 11, 25), ["reminder:2026-11-25:-1"]),  # the -2 window [23, 24]
        (date(2026, 11, 26), ["reminder:2026-11-25:1"]),
        (date(2026, 11, 27), ["reminder:2026-11-25:1"]),
        (date(2026, 11, 28), []),
    ],
)
def test_reminder_offsets_window_edges(day: date, keys: list[str]) -> None:
    campaign = reminder(offsets=(-2, -1, 1), grace_days=1)
    person = contact(extra={"next_appointment": "25/11/2026"})
    assert due(campaign, person, day) == keys


def test_a_reminder_before_the_date_never_goes_out_after_it() -> None:
    campaign = reminder(offsets=(-1,), grace_days=5)
    person = contact(extra={"next_appointment": "2026-11-25"})
    [occurrence] = due_occurrences(campaign, person, today=date(2026, 11, 24), date_format="DMY")
    # The reminder names the appointment; the window says when to send it.
    assert occurrence.date == date(2026, 11, 25)
    assert (occurrence.earliest, occurrence.latest) == (date(2026, 11, 24), date(2026, 11, 25))
    assert due(campaign, person, date(2026, 11, 26)) == []


@pytest.mark.parametrize(
    ("value", "date_format", "key"),
    [
        ("2026-11-25", "DMY", "reminder:2026-11-25:-1"),  # ISO whatever the config says
        ("25/11/2026", "DMY", "reminder:2026-11-25:-1"),
        ("11/25/2026", "MDY", "reminder:2026-11-25:-1"),
        (" 25/11/2026 ", "DMY", "reminder:2026-11-25:-1"),
    ],
)
def test_reminder_reads_the_date_per_the_configured_format(
    value: str, date_format: str, key: str
) -> None:
    campaign = reminder(offsets=(-1,))
    person = contact(extra={"next_appointment": value})
    assert due(campaign, person, date(2026, 11, 24), date_format) == [key]


def test_reminder_without_the_date_has_no_occurrence() -> None:
    campaign = reminder(offsets=(-1,))
    assert due(campaign, contact(), date(2026, 11, 24)) == []
    assert due(campaign, contact(extra={"next_appointment": "  "}), date(2026, 11, 24)) == []


def test_reminder_with_an_unreadable_date_is_that_contacts_problem() -> None:
    campaign = reminder(offsets=(-1,))
    person = contact(id="c7", extra={"next_appointment": "32/13/2026"})
    with pytest.raises(FieldError) as caught:
        due(campaign, person, date(2026, 11, 24))
    error = caught.value
    assert error.contact_id == "c7"
    assert error.field == "next_appointment"
    assert str(error).startswith("next_appointment: '32/13/2026' is not a date")
    problem = error.as_problem(campaign="reminder")
    assert (problem.contact_id, problem.campaign, problem.field) == (
        "c7",
        "reminder",
        "next_appointment",
    )


def test_reminder_can_use_the_birthday_column() -> None:
    campaign = make("reminder", date_field="birthday", offsets=(0,))
    person = contact(birthday=date(2026, 11, 24))
    assert due(campaign, person, date(2026, 11, 24)) == ["reminder:2026-11-24:0"]


@pytest.mark.parametrize(
    ("day", "keys"),
    [
        (date(2026, 1, 1), []),  # the visit itself
        (date(2026, 3, 31), []),
        (date(2026, 4, 1), ["reminder:2026-04-01:90"]),  # 90 days after
        (date(2026, 4, 3), ["reminder:2026-04-01:90"]),  # grace 2
        (date(2026, 4, 4), []),
        (date(2026, 6, 30), ["reminder:2026-06-30:90"]),  # 180 days after
    ],
)
def test_reminder_every_days(day: date, keys: list[str]) -> None:
    campaign = make("reminder", date_field="last_visit", every_days=90, grace_days=2)
    person = contact(extra={"last_visit": "2026-01-01"})
    assert due(campaign, person, day) == keys


def test_reminder_every_days_over_a_year() -> None:
    campaign = make("reminder", date_field="last_visit", every_days=90, grace_days=2)
    person = contact(extra={"last_visit": "2026-01-01"})
    found = occurrences_between(
        campaign, person, start=date(2026, 1, 1), end=date(2026, 12, 31), date_format="DMY"
    )
    assert [o.date for o in found] == [
        date(2026, 4, 1),
        date(2026, 6, 30),
        date(2026, 9, 28),
        date(2026, 12, 27),
    ]
    assert all(o.latest - o.earliest == timedelta(days=2) for o in found)


def test_a_date_at_the_end_of_the_calendar_has_no_occurrence() -> None:
    campaign = reminder(offsets=(1,), grace_days=3)
    person = contact(extra={"next_appointment": "9999-12-31"})
    assert due(campaign, person, date(9999, 12, 31)) == []


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("promotion", "a promotion needs start and end"),
        ("reminder", "a reminder needs date_field"),
        ("one_off", "a one_off needs send_on"),
    ],
)
def test_a_campaign_built_without_its_kinds_keys_is_refused(kind: str, message: str) -> None:
    # load_campaign never returns one of these; a Campaign built in code might.
    with pytest.raises(CampaignError, match=message):
        due(make(kind), contact(), date(2026, 11, 24))


def test_the_sample_campaigns_find_the_sample_templates() -> None:
    paths = sorted((ROOT / "campaigns").glob("*.yaml"))
    campaigns = load_campaigns(paths, templates_dir=ROOT / "templates")
    assert [c.name for c in campaigns] == ["birthday", "promotion", "reminder"]
