"""Audience filters: tags, the sandboxed `where`, and its errors."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import MappingProxyType

import pytest

from outreach.contacts import Contact
from outreach.model.campaigns import Audience
from outreach.model.errors import CampaignError
from outreach.rules.audience import (
    AudienceError,
    AudienceFilter,
    WhereRefusedError,
    compile_audience,
)

PATH = Path("campaigns/c.yaml")


def contact(**fields: object) -> Contact:
    extra = fields.pop("extra", {})
    return Contact(
        id=str(fields.pop("id", "c1")),
        line=2,
        extra=MappingProxyType(dict(extra)),  # type: ignore[call-overload]
        **fields,  # type: ignore[arg-type]
    )


def audience(**fields: object) -> AudienceFilter:
    return compile_audience(Audience.model_validate(fields), path=PATH, line=7)


ANA = contact(
    id="ana",
    first_name="Ana",
    last_name="García",
    city="Madrid",
    birthday=date(1990, 11, 26),
    tags=frozenset({"customer", "vip"}),
    extra={"visits": "12", "next_appointment": "25/11/2026"},
)
LUIS = contact(id="luis", first_name="Luis", city="Sevilla", tags=frozenset({"staff", "customer"}))
NOBODY = contact(id="nobody")


def test_an_empty_audience_takes_everyone() -> None:
    everyone = audience()
    assert [everyone.matches(c) for c in (ANA, LUIS, NOBODY)] == [True, True, True]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tags_any": ["customer"]}, [True, True, False]),
        ({"tags_any": ["VIP", "regular"]}, [True, False, False]),  # case-insensitive
        ({"tags_any": " Customer "}, [True, True, False]),  # one tag, spaces trimmed
        ({"tags_none": ["staff"]}, [True, False, True]),
        ({"tags_none": ["Staff", "vip"]}, [False, False, True]),
        ({"tags_any": ["customer"], "tags_none": ["staff"]}, [True, False, False]),
    ],
)
def test_tags(fields: dict[str, object], expected: list[bool]) -> None:
    chosen = audience(**fields)
    assert [chosen.matches(c) for c in (ANA, LUIS, NOBODY)] == expected
    assert [chosen(c) for c in (ANA, LUIS, NOBODY)] == expected  # callable, for the runner


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("contact.city == 'Madrid'", [True, False, False]),
        ("contact['city'] != 'Madrid'", [False, True, True]),
        ("contact.city in ['Madrid', 'Sevilla']", [True, True, False]),
        ("contact.visits | int > 10", [True, False, False]),
        ("contact.visits | int(0) < 5", [False, True, True]),
        ("contact.visits > 3", [True, False, False]),  # only compared where present: see below
        ("contact.birthday.month == 11", [True, False, False]),
        ("'vip' in contact.tags", [True, False, False]),
        (
            "contact.first_name is defined and contact.first_name.startswith('A')",
            [True, False, False],
        ),
        ("contact.nickname == 'x'", [False, False, False]),  # missing field: never equal
        ("contact.nickname != 'x'", [True, True, True]),
        ("contact.nickname > 3 or contact.nickname < 3", [False, False, False]),
        ("not contact.nickname", [True, True, True]),
        ("contact.get('city') == 'Sevilla'", [False, True, False]),  # the whole contact
        ("contact['ci' ~ 'ty'] == 'Madrid'", [True, False, False]),
        ("contact.score | float < 1.5", [True, True, True]),  # missing: 0.0
        ("contact | length > 6", [True, True, False]),  # ana 11 fields, luis 7, nobody 5
        ("contact.email", [False, False, False]),  # no email anywhere: undefined is falsy
        ("range(3) | list | length == 3", [True, True, True]),  # Jinja's globals are there
    ],
)
def test_where(where: str, expected: list[bool]) -> None:
    people = (ANA, LUIS, NOBODY)
    if where == "contact.visits > 3":
        # A text column compared with a number is an error for the contact that has it.
        chosen = audience(where=where)
        assert [chosen.matches(c) for c in (LUIS, NOBODY)] == [False, False]
        with pytest.raises(AudienceError):
            chosen.matches(ANA)
        return
    chosen = audience(where=where)
    assert [chosen.matches(c) for c in people] == expected


def test_tags_are_checked_with_where() -> None:
    chosen = audience(tags_any=["customer"], where="contact.city == 'Sevilla'")
    assert [chosen.matches(c) for c in (ANA, LUIS, NOBODY)] == [False, True, False]


def test_where_sees_what_templates_see() -> None:
    """Every field of `contact.template_fields()` reads the same in `where`, one by one."""
    people = [
        ANA,
        contact(
            id="full",
            first_name="Ana",
            last_name="Ruiz",
            title="Dra.",
            email="ana@example.com",
            birthday=date(1980, 2, 29),
            street="Calle Mayor 1",
            street2="2º B",
            postal_code="28013",
            city="Madrid",
            region="Madrid",
            country="ES",
            preferred_channel="letter",
            locale="es_MX",
            tags=frozenset({"b", "a"}),
            opt_out=frozenset({"email"}),
            extra={"visits": "3", "city": "ignored: the column wins"},
        ),
    ]
    for person in people:
        for name, value in person.template_fields().items():
            if isinstance(value, date):
                where = f"contact.{name}.isoformat() == {value.isoformat()!r}"
            elif isinstance(value, str | list):
                where = f"contact.{name} == {value!r}"
            else:
                raise AssertionError(f"a new kind of contact field: {name}={value!r}")
            assert audience(where=where).matches(person), where
            assert audience(where=f"contact['{name}'] is defined").matches(person), name
        for name in ("title", "email", "street2", "region", "not_a_column"):
            present = name in person.template_fields()
            assert audience(where=f"contact.{name} is defined").matches(person) is present


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("contact.city ==", "not a valid expression"),
        ("contact.city == 'Madrid' }}", "not a valid expression"),
        ("contact.city = 'Madrid'", "not a valid expression"),
        ("contact.city | no_such_filter", "No filter named 'no_such_filter'"),
        ("(contact.city", "not a valid expression"),
    ],
)
def test_a_where_that_does_not_compile_is_a_campaign_error(where: str, message: str) -> None:
    with pytest.raises(CampaignError) as caught:
        audience(where=where)
    error = caught.value
    assert message in error.message
    assert (error.path, error.line, error.field) == (str(PATH), 7, "audience.where")
    assert str(error).startswith("campaigns/c.yaml:7: audience.where: not a valid expression")


def test_a_where_that_fails_for_one_contact_names_that_contact() -> None:
    chosen = audience(where="contact.visits > 3")
    with pytest.raises(AudienceError) as caught:
        chosen.matches(ANA)
    error = caught.value
    assert error.contact_id == "ana"
    assert (error.path, error.line, error.field) == (str(PATH), 7, "audience.where")
    assert "contact ana" in error.message and "'>' not supported" in error.message
    assert "| int" in (error.hint or "")
    problem = error.as_problem(campaign="promo")
    assert (problem.contact_id, problem.campaign, problem.field) == (
        "ana",
        "promo",
        "audience.where",
    )


@pytest.mark.parametrize(
    "where",
    [
        "contact.__class__.__mro__",
        "contact.__class__.__mro__[1].__subclasses__()",
        "contact['__class__'].__mro__",
        "contact.city.__class__.__base__.__subclasses__()",
        "contact.items.__self__.__class__",
        "cycler.__init__.__globals__",
        "range.__self__.__import__('os').system('touch pwned')",
        "lipsum.__globals__['os'].system('touch pwned')",
        "contact.pop('city')",
        "contact.update({'city': 'x'})",
        "contact.tags.append('vip')",
        "'{0.__class__.__mro__}'.format(contact)",
    ],
)
def test_the_sandbox_blocks_escapes(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each is a campaign error: found as the campaign loads when the expression spells it
    # out, else on the first contact (WhereRefusedError is a CampaignError).
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CampaignError, match=r"sandbox refuses|unsafe") as caught:
        audience(where=where).matches(ANA)
    assert (caught.value.line, caught.value.field) == (7, "audience.where")
    assert not (tmp_path / "pwned").exists()
    assert ANA.city == "Madrid" and ANA.tags == frozenset({"customer", "vip"})


@pytest.mark.parametrize(
    "where",
    [
        "contact.__class__",
        "contact.city.__class__",
        "contact.__dict__",
        "contact._private",
        "contact.id.__class__",
        "contact.id | attr('__class__')",
        "contact['__class__'] is defined",
    ],
)
def test_a_refused_attribute_is_a_campaign_error_when_it_loads(where: str) -> None:
    with pytest.raises(CampaignError, match="sandbox refuses") as caught:
        audience(where=where)
    assert caught.value.hint == "`where` may read the contact's fields, not Python internals"


def test_a_refused_attribute_found_only_when_evaluated_is_a_campaign_error() -> None:
    chosen = audience(where="contact.id | attr(contact.city)")
    odd = contact(id="x1", city="__class__")
    with pytest.raises(WhereRefusedError, match="found with contact x1") as caught:
        chosen.matches(odd)
    assert (caught.value.path, caught.value.line) == (str(PATH), 7)


def test_a_blank_where_takes_everyone() -> None:
    assert audience(where="  ").matches(NOBODY) is True
