"""Template rendering: the sandbox, filters, locale variants, errors, and the sample templates."""

from __future__ import annotations

import email
import email.policy
import os
import re
import time
from datetime import date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import pytest

from outreach.contacts import Contact
from outreach.model.campaigns import Campaign, EmailSpec, Occurrence
from outreach.model.config import Settings
from outreach.model.errors import ConfigError, TemplateError
from outreach.render.email import RenderedEmail
from outreach.render.templates import (
    EmailRenderer,
    build_environment,
    coupon_code,
    unsubscribe_token,
    unsubscribe_url,
    variant_names,
)

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 9, 30, tzinfo=ZoneInfo("Europe/Madrid"))
UNSUBSCRIBE = {
    "url": "https://casalucia.example/baja?id={id}&token={token}",
    "mailto": "baja@casalucia.example",
}
BIRTHDAY = Occurrence(
    campaign="birthday",
    key="birthday:2026",
    date=date(2026, 11, 26),
    earliest=date(2026, 11, 23),
    latest=date(2026, 11, 26),
    age=41,
)


def make_settings(
    root: Path, *, templates: Path | None = None, unsubscribe: dict[str, str] | None = None
) -> Settings:
    return Settings(
        root=root,
        sender={
            "name": "Casa Lucía",
            "email": "hola@casalucia.example",
            "reply_to": "reservas@casalucia.example",
            "address": {
                "street": "Calle de la Cava Baja, 12",
                "postal_code": "28005",
                "city": "Madrid",
                "country": "ES",
            },
            "phone": "+34 913 000 000",
            "website": "https://casalucia.example",
            "signature": "Lucía Fernández",
        },
        locale="es",
        timezone="Europe/Madrid",
        paths={"templates": templates if templates is not None else root / "templates"},
        unsubscribe=unsubscribe or {},
        coupon={"secret": "test-secret", "prefix": "CL-", "length": 8},
    )


def make_campaign(
    root: Path,
    *,
    name: str = "birthday",
    kind: str = "birthday",
    subject: str = "¡Feliz cumpleaños, {{ contact.first_name }}!",
    text: str = "birthday.txt.j2",
    html: str | None = None,
    **extra: Any,
) -> Campaign:
    return Campaign(
        name=name,
        kind=kind,
        path=root / "campaigns" / f"{name}.yaml",
        email=EmailSpec(subject=subject, text=text, html=html),
        **extra,
    )


def contact(**fields: Any) -> Contact:
    values: dict[str, Any] = {
        "id": "c001",
        "line": 2,
        "first_name": "Ana",
        "last_name": "García",
        "email": "ana@example.com",
        "locale": "es",
    }
    values.update(fields)
    return Contact(**values)


def write(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        path = root / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def renderer(
    root: Path,
    files: dict[str, str],
    *,
    unsubscribe: dict[str, str] | None = None,
    **campaign: Any,
) -> EmailRenderer:
    write(root, files)
    return EmailRenderer(
        settings=make_settings(root, unsubscribe=unsubscribe),
        campaign=make_campaign(root, **campaign),
        today=TODAY,
        now=NOW,
    )


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> list[str]:
    found = []
    for part in message.walk():
        if not part.is_multipart():
            assert isinstance(part, EmailMessage)
            content = part.get_content()
            assert isinstance(content, str)
            found.append(content.replace("\r\n", "\n"))
    return found


# --- the environment and its filters -------------------------------------------------------


def render_string(source: str, *, html: bool = False, **context: Any) -> str:
    env = build_environment(templates_dir=Path("."), html=html)
    return env.from_string(source).render(context)


@pytest.mark.parametrize(
    ("locale", "fmt", "expected"),
    [
        ("es", "long", "24 de noviembre de 2026"),
        ("en_GB", "long", "24 November 2026"),
        # Without a business region, Babel's plain `en` is US English: month first.
        ("en", "long", "November 24, 2026"),
        ("es", "full", "martes, 24 de noviembre de 2026"),
        ("es", "medium", "24 nov 2026"),
        ("es", "short", "24/11/26"),
        ("es", "d 'de' MMMM", "24 de noviembre"),
        ("es", "EEEE d 'de' MMMM", "martes 24 de noviembre"),
        ("en-gb", "long", "24 November 2026"),
        ("es_MX", "long", "24 de noviembre de 2026"),
        ("fr", "long", "24 novembre 2026"),
        ("es_ZZ", "long", "24 de noviembre de 2026"),  # unknown region: the language alone
    ],
)
def test_date_filter_follows_the_locale(locale: str, fmt: str, expected: str) -> None:
    day = date(2026, 11, 24)
    assert render_string("{{ d | date(f) }}", d=day, f=fmt, _locale=locale) == expected


@pytest.mark.parametrize(
    ("country", "expected"),
    [
        # A bare language takes the business's country when Babel knows the pair.
        ("ES", "24 November 2026"),
        ("US", "November 24, 2026"),
        ("GB", "24 November 2026"),
        ("ZZ", "November 24, 2026"),  # no such pair: the language alone
    ],
)
def test_a_bare_language_reads_dates_as_in_the_business_country(
    country: str, expected: str
) -> None:
    sender = {"address": {"country": country}}
    day = date(2026, 11, 24)
    assert render_string("{{ d | date }}", d=day, _locale="en", sender=sender) == expected
    # A contact's own region wins over the business's.
    assert render_string("{{ d | date }}", d=day, _locale="en_US", sender=sender) == (
        "November 24, 2026"
    )


def test_date_filter_defaults_to_long_and_reads_iso_strings_and_datetimes() -> None:
    expected = "24 de noviembre de 2026"
    assert render_string("{{ d | date }}", d=date(2026, 11, 24), _locale="es") == expected
    assert render_string("{{ d | date }}", d=" 2026-11-24 ", _locale="es") == expected
    assert render_string("{{ d | date }}", d=NOW, _locale="es") == expected


def test_date_filter_refuses_what_is_not_a_date() -> None:
    with pytest.raises(ValueError, match="not a date"):
        render_string("{{ d | date }}", d="24/11/2026", _locale="es")
    with pytest.raises(ValueError, match="not a date"):
        render_string("{{ d | date }}", d=42, _locale="es")


def test_filters_need_a_locale_in_the_context() -> None:
    with pytest.raises(ValueError, match="_locale"):
        render_string("{{ d | date }}", d=date(2026, 11, 24))
    with pytest.raises(ValueError, match="unknown locale"):
        render_string("{{ d | date }}", d=date(2026, 11, 24), _locale="zz")


@pytest.mark.parametrize(
    ("locale", "amount", "currency", "expected"),
    [
        ("es", 12.5, "EUR", "12,50\xa0€"),
        ("es", "1234.5", "EUR", "1.234,50\xa0€"),
        ("en_GB", 12.5, "EUR", "€12.50"),
        ("en", 32, "USD", "$32.00"),
    ],
)
def test_money_filter_follows_the_locale(
    locale: str, amount: object, currency: str, expected: str
) -> None:
    out = render_string("{{ a | money(c) }}", a=amount, c=currency, _locale=locale)
    assert out == expected


def test_money_filter_refuses_what_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="not a number"):
        render_string("{{ a | money }}", a="doce", _locale="es")


MONEY_FILES = {
    "birthday.txt.j2": "es {{ 25 | money }} {{ occurrence.date | date }}\n",
    "birthday.en.txt.j2": "en {{ 25 | money }} {{ occurrence.date | date }}\n",
}


@pytest.mark.parametrize(
    ("files", "locale", "country", "expected"),
    [
        # An English template: an American customer reads amounts and dates the US way…
        (MONEY_FILES, "en", "US", "en €25.00 November 26, 2026"),
        # …one in Spain English amounts (never "25,00 €" in an English sentence), and dates
        # as English is written in Spain (the business's country).
        (MONEY_FILES, "en", "ES", "en €25.00 26 November 2026"),
        (MONEY_FILES, "en", "GB", "en €25.00 26 November 2026"),
        # Only a Spanish template: the whole message is Spanish, amounts too.
        ({"birthday.txt.j2": MONEY_FILES["birthday.txt.j2"]}, "en", "US",
         "es 25,00\xa0€ 26 de noviembre de 2026"),
        ({"birthday.txt.j2": MONEY_FILES["birthday.txt.j2"]}, "en", "ES",
         "es 25,00\xa0€ 26 de noviembre de 2026"),
        (MONEY_FILES, "es", "ES", "es 25,00\xa0€ 26 de noviembre de 2026"),
        # A region in the contact's locale decides, whatever the country.
        (MONEY_FILES, "en_GB", "US", "en €25.00 26 November 2026"),
    ],
)  # fmt: skip
def test_money_and_dates_are_written_in_the_message_language_and_the_contact_country(
    tmp_path: Path, files: dict[str, str], locale: str, country: str, expected: str
) -> None:
    emails = renderer(tmp_path, files)
    _, text, _ = emails.render_parts(contact(locale=locale, country=country), BIRTHDAY)
    assert text == expected + "\n"


def test_autoescape_only_for_html() -> None:
    assert render_string("{{ x }}", x="<b>&") == "<b>&"
    assert render_string("{{ x }}", html=True, x="<b>&") == "&lt;b&gt;&amp;"


def test_environment_is_strict_and_keeps_trailing_newline() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render_string("{{ missing }}")
    with pytest.raises(jinja2.UndefinedError):
        render_string("{% if missing %}x{% endif %}")
    assert render_string("{{ missing | default('ok') }}\n") == "ok\n"
    assert render_string("{% if true %}\n  a\n{% endif %}\n") == "  a\n"


def test_environment_is_a_sandbox() -> None:
    with pytest.raises(jinja2.exceptions.SecurityError):
        render_string("{{ ''.__class__.__mro__ }}")
    with pytest.raises(jinja2.exceptions.SecurityError):
        render_string("{{ items.append(1) }}", items=[])


def test_environment_loads_from_the_templates_folder(tmp_path: Path) -> None:
    (tmp_path / "a.txt.j2").write_text("Hola {{ name }}\n", encoding="utf-8")
    env = build_environment(templates_dir=tmp_path, html=False)
    assert env.get_template("a.txt.j2").render(name="Ana") == "Hola Ana\n"
    assert env.auto_reload is False


# --- coupons and unsubscribe links ---------------------------------------------------------


def test_the_context_coupon_is_the_messages_code() -> None:
    # The codes themselves are tested in test_coupons.py; here: one per occurrence.
    args: dict[str, Any] = {
        "secret": "s3cret",
        "contact_id": "c001",
        "campaign": "birthday",
        "prefix": "CL-",
        "length": 8,
    }
    first = coupon_code(occurrence_key="birthday:2026", **args)
    assert re.fullmatch(r"CL-[0-9A-Z]{4}-[0-9A-Z]{4}", first)
    assert coupon_code(occurrence_key="birthday:2027", **args) != first


def test_unsubscribe_url_is_none_without_config(tmp_path: Path) -> None:
    assert unsubscribe_url(make_settings(tmp_path), contact()) is None


def test_unsubscribe_url_fills_a_quoted_id_and_token(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, unsubscribe=UNSUBSCRIBE)
    url = unsubscribe_url(settings, contact(id="a b/&c"))
    token = unsubscribe_token(secret="test-secret", contact_id="a b/&c")
    assert re.fullmatch(r"[0-9a-f]{16}", token)
    assert url == f"https://casalucia.example/baja?id=a%20b%2F%26c&token={token}"
    assert unsubscribe_url(settings, contact(id="c002")) != unsubscribe_url(settings, contact())
    assert unsubscribe_token(secret="other", contact_id="a b/&c") != token


# --- locale variants -----------------------------------------------------------------------


def test_variant_names() -> None:
    assert variant_names("birthday.txt.j2", "en_GB") == [
        "birthday.en_GB.txt.j2",
        "birthday.en.txt.j2",
        "birthday.txt.j2",
    ]
    assert variant_names("birthday.html.j2", "es") == ["birthday.es.html.j2", "birthday.html.j2"]
    assert variant_names("mail/promo.html.jinja", "en-gb") == [
        "mail/promo.en_GB.html.jinja",
        "mail/promo.en.html.jinja",
        "mail/promo.html.jinja",
    ]
    assert variant_names("note.j2", "fr") == ["note.fr.j2", "note.j2"]
    assert variant_names("note", "fr") == ["note.fr", "note"]


VARIANTS = {
    "birthday.txt.j2": "es {{ contact.first_name }}\n",
    "birthday.en.txt.j2": "en {{ contact.first_name }}\n",
    "birthday.en_US.txt.j2": "en_US {{ contact.first_name }}\n",
    "birthday.html.j2": "<p>es</p>\n",
    "birthday.en.html.j2": "<p>en</p>\n",
    "birthday.en_US.html.j2": "<p>en_US</p>\n",
}


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("es", "es"), ("en", "en"), ("en_GB", "en"), ("EN-gb", "en"), ("en_US", "en_US"),
     ("fr", "es"), ("es_MX", "es")],
)  # fmt: skip
def test_locale_variant_is_chosen_per_contact(tmp_path: Path, locale: str, expected: str) -> None:
    emails = renderer(tmp_path, VARIANTS, html="birthday.html.j2")
    _, text, html = emails.render_parts(contact(locale=locale), BIRTHDAY)
    assert text == f"{expected} Ana\n"
    assert html is not None and f"<p>{expected}</p>" in html


def test_text_and_html_in_different_languages_is_an_error(tmp_path: Path) -> None:
    files = {
        "birthday.txt.j2": "es\n",
        "birthday.en.txt.j2": "en\n",
        "birthday.html.j2": "<p>es</p>\n",
    }
    emails = renderer(tmp_path, files, html="birthday.html.j2")
    assert emails.render_parts(contact(locale="es"), BIRTHDAY)[1] == "es\n"
    with pytest.raises(TemplateError, match="different languages") as caught:
        emails.render_parts(contact(id="c007", locale="en"), BIRTHDAY)
    assert "contact c007" in str(caught.value)
    assert caught.value.path is not None and caught.value.path.endswith("birthday.en.html.j2")


def test_a_broken_variant_fails_only_its_locale(tmp_path: Path) -> None:
    files = {"birthday.txt.j2": "Hola\n", "birthday.en.txt.j2": "Hi\n\n{% if %}\n"}
    emails = renderer(tmp_path, files)
    assert emails.render_parts(contact(), BIRTHDAY)[1] == "Hola\n"
    for _ in range(2):  # the failure is remembered, and reported for each contact
        with pytest.raises(TemplateError, match="syntax") as caught:
            emails.render_parts(contact(locale="en"), BIRTHDAY)
        assert caught.value.path == "birthday.en.txt.j2"
        assert caught.value.line == 3


# --- errors --------------------------------------------------------------------------------


def test_missing_field_names_contact_template_line_and_field(tmp_path: Path) -> None:
    files = {"birthday.txt.j2": "Hola,\n\n{{ contact.first_name }}, feliz día.\n"}
    emails = renderer(tmp_path, files, subject="Feliz cumpleaños")
    with pytest.raises(TemplateError) as caught:
        emails.render_parts(contact(id="c012", first_name=None), BIRTHDAY)
    error = caught.value
    assert error.path == "birthday.txt.j2"
    assert error.line == 3
    assert str(error) == (
        "birthday.txt.j2:3: contact c012: 'contact.first_name' is undefined"
        " — add the field to the contact or use a default() in the template"
    )


def test_missing_field_inside_an_include_names_the_included_file(tmp_path: Path) -> None:
    files = {
        "birthday.txt.j2": "Hola\n{% include 'footer.txt.j2' %}\n",
        "footer.txt.j2": "--\n{{ sender.name }}\n{{ contact.city }}\n",
    }
    emails = renderer(tmp_path, files, subject="Hola")
    with pytest.raises(TemplateError) as caught:
        emails.render_parts(contact(), BIRTHDAY)
    assert (caught.value.path, caught.value.line) == ("footer.txt.j2", 3)
    assert "'contact.city' is undefined" in str(caught.value)


def test_a_misspelt_name_gets_a_different_hint(tmp_path: Path) -> None:
    emails = renderer(tmp_path, {"birthday.txt.j2": "{{ sender.nmae }}\n"}, subject="Hola")
    with pytest.raises(TemplateError, match=re.escape("'sender.nmae' is undefined")) as caught:
        emails.render_parts(contact(), BIRTHDAY)
    assert caught.value.hint == "check the name in the template"


def test_missing_field_in_the_subject_names_the_campaign_file(tmp_path: Path) -> None:
    emails = renderer(tmp_path, {"birthday.txt.j2": "Hola\n"})
    with pytest.raises(
        TemplateError, match=re.escape("'contact.first_name' is undefined")
    ) as caught:
        emails.render_parts(contact(first_name=None), BIRTHDAY)
    assert caught.value.path == str(tmp_path / "campaigns" / "birthday.yaml")
    assert caught.value.field == "email.subject"


def test_default_gives_a_fallback_for_an_optional_field(tmp_path: Path) -> None:
    files = {"birthday.txt.j2": 'Hola, {{ contact.first_name | default("amigo") }}:\n'}
    emails = renderer(tmp_path, files, subject='Hola, {{ contact.first_name | default("amigo") }}')
    assert emails.render_parts(contact(first_name=None), BIRTHDAY)[:2] == (
        "Hola, amigo",
        "Hola, amigo:\n",
    )
    assert emails.render_parts(contact(), BIRTHDAY)[:2] == ("Hola, Ana", "Hola, Ana:\n")


def test_printing_none_is_an_error_not_a_blank(tmp_path: Path) -> None:
    write(tmp_path, {"birthday.txt.j2": "Hola\n{{ campaign.start }}\n"})
    emails = EmailRenderer(
        settings=make_settings(tmp_path),
        campaign=make_campaign(tmp_path, subject="Hola"),
        today=TODAY,
        now=NOW,
    )
    with pytest.raises(TemplateError, match="empty value") as caught:
        emails.render_parts(contact(), BIRTHDAY)
    assert (caught.value.path, caught.value.line) == ("birthday.txt.j2", 2)


def test_none_is_falsy_for_guards(tmp_path: Path) -> None:
    files = {"birthday.txt.j2": "Hola\n{% if campaign.start %}{{ campaign.start }}{% endif %}.\n"}
    emails = renderer(tmp_path, files, subject="Hola")
    assert emails.render_parts(contact(), BIRTHDAY)[1] == "Hola\n.\n"


def test_sandbox_violation_is_a_template_error(tmp_path: Path) -> None:
    files = {"birthday.txt.j2": "{{ contact.__class__.__mro__ }}\n"}
    emails = renderer(tmp_path, files, subject="Hola")
    with pytest.raises(TemplateError, match="not allowed") as caught:
        emails.render_parts(contact(), BIRTHDAY)
    assert caught.value.line == 1


def test_runtime_error_in_a_filter_is_a_template_error(tmp_path: Path) -> None:
    files = {"birthday.txt.j2": "Hola\n{{ contact.visit | date }}\n"}
    emails = renderer(tmp_path, files, subject="Hola")
    with pytest.raises(TemplateError, match="not a date") as caught:
        emails.render_parts(contact(extra={"visit": "ayer"}), BIRTHDAY)
    assert (caught.value.path, caught.value.line) == ("birthday.txt.j2", 2)


def test_missing_template_fails_at_construction(tmp_path: Path) -> None:
    write(tmp_path, {"birthday.txt.j2": "Hola\n"})
    with pytest.raises(TemplateError, match="not found") as caught:
        EmailRenderer(
            settings=make_settings(tmp_path),
            campaign=make_campaign(tmp_path, html="nope.html.j2"),
            today=TODAY,
            now=NOW,
        )
    assert caught.value.path is not None and caught.value.path.endswith("nope.html.j2")


def test_missing_include_is_not_mistaken_for_a_missing_variant(tmp_path: Path) -> None:
    write(tmp_path, {"birthday.txt.j2": "Hola\n{% include 'gone.txt.j2' %}\n"})
    emails = EmailRenderer(
        settings=make_settings(tmp_path),
        campaign=make_campaign(tmp_path, subject="Hola"),
        today=TODAY,
        now=NOW,
    )
    with pytest.raises(TemplateError, match=re.escape("'gone.txt.j2' not found")) as caught:
        emails.render_parts(contact(), BIRTHDAY)
    assert (caught.value.path, caught.value.line) == ("birthday.txt.j2", 2)


def test_syntax_error_fails_at_construction_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, {"birthday.txt.j2": "Hola\n\n{{ contact.first_name }\n"})
    with pytest.raises(TemplateError, match="syntax") as caught:
        EmailRenderer(
            settings=make_settings(tmp_path),
            campaign=make_campaign(tmp_path),
            today=TODAY,
            now=NOW,
        )
    assert (caught.value.path, caught.value.line) == ("birthday.txt.j2", 3)


def test_subject_syntax_error_fails_at_construction(tmp_path: Path) -> None:
    write(tmp_path, {"birthday.txt.j2": "Hola\n"})
    with pytest.raises(TemplateError, match="subject") as caught:
        EmailRenderer(
            settings=make_settings(tmp_path),
            campaign=make_campaign(tmp_path, subject="Hola {{ contact.first_name"),
            today=TODAY,
            now=NOW,
        )
    assert caught.value.field == "email.subject"


def test_campaign_without_email_is_an_error(tmp_path: Path) -> None:
    campaign = Campaign(name="x", kind="birthday", path=tmp_path / "x.yaml")
    with pytest.raises(TemplateError, match="no email"):
        EmailRenderer(settings=make_settings(tmp_path), campaign=campaign, today=TODAY, now=NOW)


def test_bad_sender_address_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path, {"birthday.txt.j2": "Hola\n"})
    settings = make_settings(tmp_path).model_copy(
        update={"sender": make_settings(tmp_path).sender.model_copy(update={"email": "a, b@x"})}
    )
    with pytest.raises(ConfigError):
        EmailRenderer(settings=settings, campaign=make_campaign(tmp_path), today=TODAY, now=NOW)


@pytest.mark.parametrize(
    "unsubscribe",
    [
        {"url": "https://casalucia.example/baja?id={id} &token={token}"},
        {"url": "casalucia.example/baja?id={id}"},
        {"url": "https://casalucia.example/baja?id={id}>"},
        {"mailto": "baja@casalucia.example\r\nBcc: evil@attacker.example"},
    ],
)
def test_bad_unsubscribe_config_is_a_config_error(
    tmp_path: Path, unsubscribe: dict[str, str]
) -> None:
    write(tmp_path, {"birthday.txt.j2": "Hola\n"})
    with pytest.raises(ConfigError) as caught:
        EmailRenderer(
            settings=make_settings(tmp_path, unsubscribe=unsubscribe),
            campaign=make_campaign(tmp_path),
            today=TODAY,
            now=NOW,
        )
    assert caught.value.field == "unsubscribe"


def test_errors_name_the_template_when_the_folder_path_has_dots(tmp_path: Path) -> None:
    write(tmp_path, {"birthday.txt.j2": "Hola\n{{ contact.city }}\n"})
    (tmp_path / "campaigns").mkdir()
    emails = EmailRenderer(
        settings=make_settings(tmp_path, templates=tmp_path / "campaigns" / ".." / "templates"),
        campaign=make_campaign(tmp_path, subject="Hola"),
        today=TODAY,
        now=NOW,
    )
    with pytest.raises(TemplateError) as caught:
        emails.render_parts(contact(), BIRTHDAY)
    assert (caught.value.path, caught.value.line) == ("birthday.txt.j2", 2)


# --- subjects and bodies -------------------------------------------------------------------


def test_subject_white_space_is_collapsed(tmp_path: Path) -> None:
    emails = renderer(
        tmp_path,
        {"birthday.txt.j2": "x\n"},
        subject="  ¡Feliz\tcumpleaños,   {{ contact.first_name }}!  ",
    )
    assert emails.render_parts(contact(), BIRTHDAY)[0] == "¡Feliz cumpleaños, Ana!"


@pytest.mark.parametrize(
    "name", ["Ana\r\nBcc: evil@attacker.example", "Ana\nX", "Ana\rX", "Ana\u2028X"]
)
def test_line_break_in_the_subject_is_an_error(tmp_path: Path, name: str) -> None:
    emails = renderer(tmp_path, {"birthday.txt.j2": "x\n"})
    with pytest.raises(TemplateError, match="line break") as caught:
        emails.render(contact(first_name=name), BIRTHDAY)
    assert "contact c001" in str(caught.value)


def test_empty_subject_is_an_error(tmp_path: Path) -> None:
    emails = renderer(
        tmp_path,
        {"birthday.txt.j2": "x\n"},
        subject="{{ contact.nickname | default('') }}",
    )
    with pytest.raises(TemplateError, match="subject renders empty"):
        emails.render_parts(contact(), BIRTHDAY)


def test_empty_bodies_are_errors(tmp_path: Path) -> None:
    files = {
        "birthday.txt.j2": "{% if contact.vip is defined %}Hola{% endif %}\n \n",
        "birthday.html.j2": "{% if contact.vip is defined %}<p>Hola</p>{% endif %}\n",
    }
    emails = renderer(tmp_path, files, html="birthday.html.j2", subject="Hola")
    with pytest.raises(TemplateError, match="text body renders empty"):
        emails.render_parts(contact(), BIRTHDAY)
    write(tmp_path, {"birthday.txt.j2": "Hola\n"})
    emails = renderer(tmp_path, {}, html="birthday.html.j2", subject="Hola")
    with pytest.raises(TemplateError, match="HTML body renders empty"):
        emails.render_parts(contact(), BIRTHDAY)


def test_text_body_is_trimmed_to_one_final_newline(tmp_path: Path) -> None:
    files = {"birthday.txt.j2": "\n\n  \nHola\r\n\r\nAdiós\n\n\n"}
    emails = renderer(tmp_path, files, subject="Hola")
    assert emails.render_parts(contact(), BIRTHDAY)[1] == "Hola\n\nAdiós\n"


def test_contact_data_is_escaped_in_html(tmp_path: Path) -> None:
    files = {
        "birthday.txt.j2": "Hola, {{ contact.first_name }}\n",
        "birthday.html.j2": "<html><body><h1>Hola, {{ contact.first_name }}</h1></body></html>",
    }
    emails = renderer(tmp_path, files, html="birthday.html.j2", subject="Hola")
    evil = contact(first_name='<script>alert("x")</script>')
    message = emails.render(evil, BIRTHDAY)
    text, html = parts(parse(message.data))
    assert text == 'Hola, <script>alert("x")</script>\n'
    assert "&lt;script&gt;" in html
    assert "<script>" not in html


def test_css_is_inlined(tmp_path: Path) -> None:
    files = {
        "birthday.txt.j2": "Hola\n",
        "base.html.j2": (
            "<html><head><style>h1 { color: #123456; } .note { font-size: 12px; }"
            " @media (max-width: 600px) { h1 { font-size: 20px; } }</style></head>"
            "<body>{% block content %}{% endblock %}</body></html>"
        ),
        "birthday.html.j2": (
            "{% extends 'base.html.j2' %}{% block content %}"
            '<h1>Hola</h1><p class="note">x</p><p>y</p>{% endblock %}'
        ),
    }
    emails = renderer(tmp_path, files, html="birthday.html.j2", subject="Hola")
    html = emails.render_parts(contact(), BIRTHDAY)[2]
    assert html is not None
    assert '<h1 style="color: #123456;">Hola</h1>' in html
    assert '<p class="note" style="font-size: 12px;">x</p>' in html
    assert "<p>y</p>" in html
    assert "color: #123456" not in html.split("<body")[0]  # the rule left the <style>
    assert "@media (max-width: 600px)" in html  # media queries cannot be inlined: kept


# --- the context and the whole message -----------------------------------------------------


def test_context_holds_contact_campaign_occurrence_sender_today_coupon(tmp_path: Path) -> None:
    files = {
        "birthday.txt.j2": (
            "{{ contact.id }} {{ contact.city }} {{ contact.items }}\n"
            "{{ campaign.name }} {{ campaign.kind }} {{ campaign.priority }}\n"
            "{{ occurrence.key }} {{ occurrence.date }} {{ occurrence.age }}"
            " {{ occurrence.earliest }} {{ occurrence.latest }}\n"
            "{{ sender.name }} {{ sender.address.city }} {{ sender.email }}\n"
            "{{ today }} {{ coupon }} {{ _locale }}\n"
            "{{ unsubscribe_url }}\n"
            "{{ contact['first_name'] }} {{ contact['nickname'] | default('-') }}\n"
        )
    }
    emails = renderer(tmp_path, files, subject="Hola", unsubscribe=UNSUBSCRIBE, priority=80)
    someone = contact(id="c009", city="Madrid", locale="en-gb", extra={"items": "3 platos"})
    text = emails.render_parts(someone, BIRTHDAY)[1]
    code = coupon_code(
        secret="test-secret",
        contact_id="c009",
        campaign="birthday",
        occurrence_key="birthday:2026",
        prefix="CL-",
        length=8,
    )
    token = unsubscribe_token(secret="test-secret", contact_id="c009")
    assert text.splitlines() == [
        "c009 Madrid 3 platos",
        "birthday birthday 80",
        "birthday:2026 2026-11-26 41 2026-11-23 2026-11-26",
        "Casa Lucía Madrid hola@casalucia.example",
        # The template has no en_GB variant: it is written in the default language, and so
        # are its dates and amounts (one message, one language).
        f"2026-11-24 {code} es",
        f"https://casalucia.example/baja?id=c009&token={token}",
        "Ana -",
    ]


def test_render_gives_a_complete_rendered_email(tmp_path: Path) -> None:
    files = {
        "birthday.txt.j2": "Hola, {{ contact.first_name }}:\n\nFeliz día.\n",
        "birthday.html.j2": "<html><body><p>Hola, {{ contact.first_name }}</p></body></html>",
    }
    emails = renderer(tmp_path, files, html="birthday.html.j2", unsubscribe=UNSUBSCRIBE)
    result = emails.render(contact(), BIRTHDAY)
    assert isinstance(result, RenderedEmail)
    assert result.contact_id == "c001"
    assert result.campaign == "birthday"
    assert result.occurrence_key == "birthday:2026"
    assert result.from_addr == "hola@casalucia.example"
    assert result.to_addrs == ("ana@example.com",)
    assert result.subject == "¡Feliz cumpleaños, Ana!"
    assert re.fullmatch(r"[0-9a-f]{32}@casalucia\.example", result.message_id)
    message = parse(result.data)
    assert message["Subject"] == "¡Feliz cumpleaños, Ana!"
    assert message["Message-ID"] == f"<{result.message_id}>"
    assert message["From"].addresses[0].display_name == "Casa Lucía"
    assert message["To"].addresses[0].display_name == "Ana García"
    assert message["Reply-To"] == "reservas@casalucia.example"
    token = unsubscribe_token(secret="test-secret", contact_id="c001")
    assert " ".join(str(message["List-Unsubscribe"]).split()) == (
        f"<https://casalucia.example/baja?id=c001&token={token}>, <mailto:baja@casalucia.example>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Date"] == "Tue, 24 Nov 2026 09:30:00 +0100"
    text, html = parts(message)
    _, text_rendered, html_rendered = emails.render_parts(contact(), BIRTHDAY)
    assert text == text_rendered == "Hola, Ana:\n\nFeliz día.\n"
    assert html == (html_rendered or "") + "\n"


def test_message_id_is_deterministic_per_occurrence(tmp_path: Path) -> None:
    files = {"birthday.txt.j2": "Hola\n"}
    first = renderer(tmp_path, files).render(contact(), BIRTHDAY)
    again = renderer(tmp_path, files).render(contact(), BIRTHDAY)
    assert first.message_id == again.message_id
    assert first.data == again.data
    next_year = Occurrence(
        campaign="birthday",
        key="birthday:2027",
        date=date(2027, 11, 26),
        earliest=date(2027, 11, 23),
        latest=date(2027, 11, 26),
    )
    emails = renderer(tmp_path, files)
    assert emails.render(contact(), next_year).message_id != first.message_id
    assert emails.render(contact(id="c002"), BIRTHDAY).message_id != first.message_id


def test_no_list_unsubscribe_without_config(tmp_path: Path) -> None:
    message = parse(
        renderer(tmp_path, {"birthday.txt.j2": "Hola\n"}).render(contact(), BIRTHDAY).data
    )
    assert "List-Unsubscribe" not in message
    assert "List-Unsubscribe-Post" not in message


@pytest.mark.parametrize(
    "mailto",
    ["baja@casalucia.example", "mailto:baja@casalucia.example", "MAILTO:baja@casalucia.example"],
)
def test_mailto_only_unsubscribe(tmp_path: Path, mailto: str) -> None:
    emails = renderer(tmp_path, {"birthday.txt.j2": "Hola\n"}, unsubscribe={"mailto": mailto})
    message = parse(emails.render(contact(), BIRTHDAY).data)
    assert message["List-Unsubscribe"].lower() == "<mailto:baja@casalucia.example>"
    assert "List-Unsubscribe-Post" not in message


def test_mailto_can_carry_the_contact_id(tmp_path: Path) -> None:
    unsubscribe = {"mailto": "baja@casalucia.example?subject=baja%20{id}"}
    emails = renderer(tmp_path, {"birthday.txt.j2": "Hola\n"}, unsubscribe=unsubscribe)
    message = parse(emails.render(contact(id="c 7"), BIRTHDAY).data)
    assert message["List-Unsubscribe"] == "<mailto:baja@casalucia.example?subject=baja%20c%207>"


def test_contact_data_cannot_add_a_recipient_or_header(tmp_path: Path) -> None:
    emails = renderer(tmp_path, {"birthday.txt.j2": "Hola\n"}, subject="Hola")
    sneaky = contact(first_name="Ana", last_name="García\r\nBcc: evil@attacker.example")
    message = parse(emails.render(sneaky, BIRTHDAY).data)
    assert "Bcc" not in message
    assert len(message["To"].addresses) == 1
    assert message["To"].addresses[0].addr_spec == "ana@example.com"
    with pytest.raises(TemplateError, match="contact c001"):
        emails.render(contact(email="ana@example.com, evil@attacker.example"), BIRTHDAY)


def test_contact_without_email_is_an_error(tmp_path: Path) -> None:
    emails = renderer(tmp_path, {"birthday.txt.j2": "Hola\n"})
    with pytest.raises(TemplateError, match="no usable email"):
        emails.render(contact(email=None), BIRTHDAY)


def test_naive_now_is_read_in_the_config_time_zone(tmp_path: Path) -> None:
    write(tmp_path, {"birthday.txt.j2": "Hola\n"})
    emails = EmailRenderer(
        settings=make_settings(tmp_path),
        campaign=make_campaign(tmp_path),
        today=TODAY,
        now=datetime(2026, 7, 1, 9, 30),
    )
    assert parse(emails.render(contact(), BIRTHDAY).data)["Date"] == (
        "Wed, 01 Jul 2026 09:30:00 +0200"
    )


# --- the sample templates ------------------------------------------------------------------


def sample_renderer(tmp_path: Path, name: str) -> EmailRenderer:
    campaigns = {
        "birthday": make_campaign(tmp_path, html="birthday.html.j2", days_before=3, priority=80),
        "promotion": make_campaign(
            tmp_path,
            name="promotion",
            kind="promotion",
            subject='Menú de otoño en Casa Lucía, {{ contact.first_name | default("amigo") }}',
            text="promotion.txt.j2",
            html="promotion.html.j2",
            start=date(2026, 11, 20),
            end=date(2026, 12, 5),
        ),
        "reminder": make_campaign(
            tmp_path,
            name="reminder",
            kind="reminder",
            subject='Recordatorio: su reserva del {{ occurrence.date | date("long") }}',
            text="reminder.txt.j2",
            date_field="next_appointment",
            offsets=(-1,),
            essential=True,
        ),
    }
    return EmailRenderer(
        settings=make_settings(tmp_path, templates=REPO / "templates", unsubscribe=UNSUBSCRIBE),
        campaign=campaigns[name],
        today=TODAY,
        now=NOW,
    )


def assert_clean(*texts: str | None) -> None:
    for text in texts:
        assert text is not None
        assert "None" not in text
        assert "{{" not in text and "{%" not in text
        assert "  ," not in text and " ," not in text and "Hola ," not in text


@pytest.mark.parametrize(
    ("locale", "greeting", "heading"),
    [
        ("es", "Hola, Ana:", "¡Feliz cumpleaños, Ana!"),
        ("es_MX", "Hola, Ana:", "¡Feliz cumpleaños, Ana!"),
        ("en", "Dear Ana,", "Happy birthday, Ana!"),
        ("en_GB", "Dear Ana,", "Happy birthday, Ana!"),
        ("fr", "Hola, Ana:", "¡Feliz cumpleaños, Ana!"),
    ],
)
def test_sample_birthday(tmp_path: Path, locale: str, greeting: str, heading: str) -> None:
    emails = sample_renderer(tmp_path, "birthday")
    subject, text, html = emails.render_parts(contact(locale=locale), BIRTHDAY)
    assert subject == "¡Feliz cumpleaños, Ana!"
    assert_clean(text, html)
    assert html is not None
    assert text.startswith(greeting + "\n")
    assert heading in html
    code = coupon_code(
        secret="test-secret",
        contact_id="c001",
        campaign="birthday",
        occurrence_key=BIRTHDAY.key,
        prefix="CL-",
        length=8,
    )
    assert code in text and code in html
    assert not re.search(r"\b41\b", text + html)  # the age is never printed
    assert "Lucía Fernández" in text and "Lucía Fernández" in html
    token = unsubscribe_token(secret="test-secret", contact_id="c001")
    assert f"https://casalucia.example/baja?id=c001&token={token}" in text
    assert f'href="https://casalucia.example/baja?id=c001&amp;token={token}"' in html
    assert re.search(r"<h1 style=\"[^\"]+\">", html)  # the stylesheet was inlined
    assert "<style>" not in html or "@media" in html


def test_sample_birthday_needs_a_first_name(tmp_path: Path) -> None:
    emails = sample_renderer(tmp_path, "birthday")
    with pytest.raises(TemplateError, match=re.escape("'contact.first_name' is undefined")):
        emails.render_parts(contact(first_name=None), BIRTHDAY)


def test_sample_birthday_without_unsubscribe_has_no_link(tmp_path: Path) -> None:
    emails = EmailRenderer(
        settings=make_settings(tmp_path, templates=REPO / "templates"),
        campaign=make_campaign(tmp_path, html="birthday.html.j2"),
        today=TODAY,
        now=NOW,
    )
    _, text, html = emails.render_parts(contact(), BIRTHDAY)
    assert "baja" not in text and html is not None and "baja" not in html


def test_sample_promotion_with_and_without_a_first_name(tmp_path: Path) -> None:
    emails = sample_renderer(tmp_path, "promotion")
    occurrence = Occurrence(
        campaign="promotion",
        key="promotion",
        date=date(2026, 11, 20),
        earliest=date(2026, 11, 20),
        latest=date(2026, 12, 5),
    )
    subject, text, html = emails.render_parts(contact(), occurrence)
    assert_clean(text, html)
    assert subject == "Menú de otoño en Casa Lucía, Ana"
    assert text.startswith("Hola, Ana:\n")
    assert "Del 20 de noviembre al 5 de diciembre de 2026" in text
    assert "32,00\xa0€" in text
    assert html is not None and "32,00&nbsp;€" in html  # the inliner writes NBSP as an entity
    subject, text, html = emails.render_parts(contact(first_name=None), occurrence)
    assert_clean(text, html)
    assert text.startswith("Hola:\n")
    assert html is not None and ">Hola:</p>" in html


@pytest.mark.parametrize(
    ("reservation", "phrase"),
    [
        (date(2026, 11, 25), "mañana, miércoles 25 de noviembre,"),
        (date(2026, 11, 24), "hoy, martes 24 de noviembre,"),
        (date(2026, 11, 28), "el sábado 28 de noviembre tiene"),
    ],
)
def test_sample_reminder(tmp_path: Path, reservation: date, phrase: str) -> None:
    emails = sample_renderer(tmp_path, "reminder")
    occurrence = Occurrence(
        campaign="reminder",
        key=f"reminder:{reservation}:-1",
        date=reservation,
        earliest=TODAY,
        latest=TODAY,
    )
    subject, text, html = emails.render_parts(contact(), occurrence)
    assert html is None
    assert_clean(text)
    day = reservation.day
    assert subject == f"Recordatorio: su reserva del {day} de noviembre de 2026"
    assert text.startswith("Hola, Ana:\n")
    assert phrase in " ".join(text.split())
    assert "+34 913 000 000" in text


def test_sample_rendering_is_fast(tmp_path: Path) -> None:
    # A regression guard far below the real figure (several thousand per second).
    emails = sample_renderer(tmp_path, "birthday")
    people = [contact(id=f"c{n:04d}", email=f"p{n}@example.com") for n in range(300)]
    start = time.process_time()
    for person in people:
        emails.render(person, BIRTHDAY)
    assert time.process_time() - start < 1.5


# --- the golden message --------------------------------------------------------------------


def normalise(data: bytes) -> bytes:
    return re.sub(rb"^Date: [^\r\n]*\r\n", b"Date: (normalised)\r\n", data, flags=re.M)


def test_golden_birthday_email(tmp_path: Path) -> None:
    # Refresh after an intended change with: OUTREACH_UPDATE_GOLDEN=1 pytest tests/test_templates.py
    emails = sample_renderer(tmp_path, "birthday")
    ana = contact(
        id="c001",
        first_name="Ana María",
        last_name="Núñez",
        email="ana.nunez@example.com",
        birthday=date(1985, 11, 26),
        city="Madrid",
        tags=frozenset({"customer"}),
    )
    data = normalise(emails.render(ana, BIRTHDAY).data)
    golden = GOLDEN / "birthday_c001.eml"
    if os.environ.get("OUTREACH_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(data)
    assert golden.is_file(), "no golden file: run with OUTREACH_UPDATE_GOLDEN=1 once"
    assert data == golden.read_bytes()
