"""validate's offline deliverability warnings: free-mail From through another server, return
path and DKIM domains not aligned with From, and invisible text in the email templates."""

from __future__ import annotations

import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from outreach.deliver.alignment import hidden_text, sender_warnings, template_warnings
from outreach.model.config import Settings, load_settings
from outreach.rehearse.validate import validate_workspace

# The preheader as the sample shipped it before issue 26: SpamAssassin scored it 1.7.
OLD_PREHEADER = (
    ".preheader { display: none; max-height: 0; overflow: hidden; font-size: 1px; "
    "line-height: 1px; color: #f5efe6; }"
)


def _settings(email: str, **sections: Any) -> Settings:
    return Settings.model_validate(
        {"root": Path("/nonexistent"), "sender": {"name": "Casa", "email": email}, **sections}
    )


def test_free_mail_from_through_another_server_is_warned() -> None:
    relay = {"method": "smtp", "host": "smtp.casalucia.example"}
    (warning,) = sender_warnings(_settings("casalucia@gmail.com", delivery=relay))
    assert warning.startswith(
        "sender.email is at gmail.com, a free-mail provider, but emails go through "
        "smtp.casalucia.example:"
    )
    own_server = {"method": "smtp", "host": "smtp.gmail.com"}
    assert sender_warnings(_settings("casalucia@gmail.com", delivery=own_server)) == []
    assert sender_warnings(_settings("casalucia@gmail.com")) == []  # the outbox sends nothing
    assert sender_warnings(_settings("hola@casalucia.example", delivery=relay)) == []


@pytest.mark.parametrize(
    ("return_path", "warned"),
    [
        ("rebotes+{token}@casalucia.example", False),
        ("rebotes+{token}@bounces.casalucia.example", False),  # relaxed alignment holds
        ("rebotes+{token}@mailer.example", True),
    ],
)
def test_a_verp_return_path_on_another_domain_is_warned(return_path: str, warned: bool) -> None:
    settings = _settings("hola@casalucia.example", bounces={"return_path": return_path})
    warnings = sender_warnings(settings)
    assert bool(warnings) is warned
    if warned:
        assert warnings[0].startswith(
            "bounces.return_path is at mailer.example and From at casalucia.example:"
        )


def test_a_dkim_domain_not_aligned_is_warned() -> None:
    dkim = {"domain": "esp.example", "selector": "s1", "key_env": "K"}
    (warning,) = sender_warnings(_settings("hola@casalucia.example", dkim=dkim))
    assert "dkim.domain is esp.example" in warning


@pytest.mark.parametrize(
    ("css", "why"),
    [
        (OLD_PREHEADER, "font-size: 1px; color #f5efe6, the colour of the background"),
        (".x { font-size: 0; }", "font-size: 0"),
        (".x { color: #FFF; background-color: #ffffff; }", "color #ffffff, the colour of the background"),
        (".x { visibility: hidden; }", "visibility: hidden"),
    ],
)  # fmt: skip
def test_hidden_text_is_found_with_its_line(css: str, why: str) -> None:
    text = f"<style>\nbody {{ background-color: #f5efe6; }}\n{css}\n</style>"
    (found,) = hidden_text(text, path=Path("t.html.j2"))
    assert (found.line, found.why) == (3, why)


def test_visible_text_and_a_display_none_preheader_pass() -> None:
    text = (
        "<style>body { background-color: #f5efe6; }\n"
        ".preheader { display: none; max-height: 0; overflow: hidden; }\n"
        ".button { color: #ffffff; background-color: #9a3b24; font-size: 14px; }</style>"
        '<p style="color: #3b2f2a; font-size: 16px">Hola</p>'
    )
    assert hidden_text(text, path=Path("t.html.j2")) == []


def test_shipped_templates_have_no_invisible_text(tmp_path: Path) -> None:
    for folder in (REPO / "templates", REPO / "outreach" / "skeleton" / "templates"):
        assert template_warnings(folder, letter_templates=["birthday_letter.html.j2"]) == []
    old = tmp_path / "templates"
    shutil.copytree(REPO / "templates", old)
    base = old / "email_base.html.j2"
    lines = base.read_text(encoding="utf-8").splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.startswith(".preheader"))
    lines[number - 1] = OLD_PREHEADER
    base.write_text("\n".join(lines), encoding="utf-8")
    (warning,) = template_warnings(old, letter_templates=["birthday_letter.html.j2"])
    assert warning.startswith(f"templates/email_base.html.j2:{number}: invisible text (font-size")


def test_validate_reports_the_warnings(make_workspace: Any) -> None:
    ws = make_workspace(
        ["c1,Ana,García,ana@example.com,26/11/1990,,,,,,,customer,"],
        config_extra="bounces:\n  return_path: 'rebotes+{token}@mailer.example'\n",
        templates={
            "birthday.html.j2": '<p style="font-size: 1px">Hola {{ contact.first_name }}</p>'
        },
    )
    settings = load_settings(ws.root / "config.yaml")
    report = validate_workspace(
        settings, today=date(2026, 11, 24), now=datetime(2026, 11, 24, 10, 0, tzinfo=settings.tz)
    )
    warnings = [line for line in report.lines if line.startswith("warning: ")]
    assert warnings[0].startswith("warning: bounces.return_path is at mailer.example")
    assert warnings[1].startswith(
        "warning: templates/birthday.html.j2:1: invisible text (font-size: 1px)"
    )
    assert not report.blocking
