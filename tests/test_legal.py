"""The legal basis of marketing messages (issue 23): consent read from the contacts file, the
customer exception, letters on legitimate interest, service messages, the basis kept in the
ledger, and `no_legal_basis` where there is none."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, time
from pathlib import Path

from conftest import BASE_CONFIG, FOOTER, Workspace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.contacts import Contact, load_contacts
from outreach.donotcontact import load_lists
from outreach.ledger.backend import open_ledger
from outreach.model.campaigns import load_campaign
from outreach.model.config import ContactsSettings
from outreach.model.reasons import Code, Reason
from outreach.pipeline.run import RunOptions, RunRequest, perform_run
from outreach.rules.legal import FutureConsentError, LegalPolicy, basis
from outreach.workspace import load_workspace

HEADER = (
    "id,first_name,last_name,email,birthday,tags,opt_out,last_visit,email_consent,consent_source"
)
PROMOTION = """\
    kind: promotion
    channel: email
    start: 2026-11-20
    end: 2026-12-05
    email:
      subject: "Menú de otoño"
      text: promo.txt.j2
    """
REMINDER = """\
    kind: reminder
    channel: email
    date_field: next_visit
    offsets: [-1]
    email:
      subject: "Su reserva"
      text: promo.txt.j2
    """


def _workspace(
    make_workspace: Callable[..., Workspace],
    rows: list[str],
    *,
    campaigns: dict[str, str] | None = None,
    config_extra: str = "",
) -> Workspace:
    ws = make_workspace(
        [], campaigns=campaigns or {"promotion.yaml": PROMOTION}, config_extra=config_extra
    )
    ws.write("contacts.csv", "\n".join([HEADER, *rows]) + "\n")
    return ws


def _read(tmp_path: Path, rows: list[str]) -> tuple[list[Contact], list[str]]:
    path = tmp_path / "contacts.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    found = load_contacts(path, settings=ContactsSettings(), default_locale="es")
    return list(found.contacts), [str(p) for p in found.problems]


# --- the consent cell ------------------------------------------------------------------------


def test_consent_cells_as_spreadsheets_hold_them(tmp_path: Path) -> None:
    contacts, problems = _read(
        tmp_path,
        [
            "c1,Ana,García,ana@example.com,,,,,2025-03-01,formulario web",
            'c2,José,Núñez,jose@example.com,,,,,12/03/2024,"papel en el local, 12/03/2024"',
            "c3,Íñigo,Ortiz,inigo@example.com,,,,,NO,",
            "c4,Lucía,Martín,lucia@example.com,,,,,sí,",
            "c5,Pablo,Díaz,pablo@example.com,,,,,x,",
            "c6,Elena,Gómez,elena@example.com,,,,,Sí - 12/03/2024,",
            "c7,María,López,maria@example.com,,,,,,",
        ],
    )
    by_id = {c.id: c for c in contacts}
    assert by_id["c1"].email_consent == date(2025, 3, 1)
    assert by_id["c1"].consent_source == "formulario web"
    assert by_id["c2"].email_consent == date(2024, 3, 12)  # the workspace's DMY format
    assert by_id["c3"].email_consent is None and by_id["c3"].consent_refused
    for unclear in ("c4", "c5", "c6", "c7"):  # never a silent yes
        assert by_id[unclear].email_consent is None
        assert not by_id[unclear].consent_refused
    # One problem per unclear cell, naming the file, its line and the column, and what to write.
    assert len(problems) == 3
    for line, text in ((5, "'sí'"), (6, "'x'"), (7, "'Sí - 12/03/2024'")):
        found = [p for p in problems if f"contacts.csv:{line}" in p]
        assert len(found) == 1, problems
        assert "email_consent" in found[0] and text in found[0]
        assert "no if they refused" in found[0]
        assert "not having consented" in found[0]


# --- the rule --------------------------------------------------------------------------------


def _campaign(tmp_path: Path, text: str, name: str = "promo") -> object:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "promo.txt.j2").write_text("Hola\n", encoding="utf-8")
    (tmp_path / "templates" / "gift.txt.j2").write_text(
        "Tu regalo: {{ coupon }}\n", encoding="utf-8"
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return load_campaign(path, templates_dir=tmp_path / "templates")


def test_purpose_defaults(tmp_path: Path) -> None:
    promo = _campaign(tmp_path, PROMOTION.replace("    ", "", 1).replace("\n    ", "\n"))
    assert promo.purpose == "marketing"  # type: ignore[attr-defined]
    reminder = _campaign(tmp_path, REMINDER.replace("\n    ", "\n").lstrip(), "reminder")
    assert reminder.purpose == "service"  # type: ignore[attr-defined]
    plain = "kind: birthday\nemail: {subject: Hola, text: promo.txt.j2}\n"
    assert _campaign(tmp_path, plain, "b1").purpose == "service"  # type: ignore[attr-defined]
    gift = "kind: birthday\nemail: {subject: Hola, text: gift.txt.j2}\n"
    assert _campaign(tmp_path, gift, "b2").purpose == "marketing"  # type: ignore[attr-defined]
    said = "kind: birthday\npurpose: service\nemail: {subject: Hola, text: gift.txt.j2}\n"
    assert _campaign(tmp_path, said, "b3").purpose == "service"  # type: ignore[attr-defined]


def test_basis_per_channel_and_policy(tmp_path: Path) -> None:
    today = date(2026, 11, 24)
    promo = _campaign(tmp_path, PROMOTION.replace("\n    ", "\n").lstrip())
    similar = _campaign(
        tmp_path, PROMOTION.replace("\n    ", "\n").lstrip() + "similar_products: true\n", "s"
    )
    consented = Contact(
        "c1", 2, email="a@example.com", email_consent=date(2025, 3, 1), consent_source="web"
    )
    customer = Contact("c2", 3, email="b@example.com", extra={"last_visit": "2026-05-02"})
    lapsed = Contact("c3", 4, email="c@example.com", extra={"last_visit": "2024-11-23"})
    refused = Contact(
        "c4", 5, email="d@example.com", consent_refused=True, extra={"last_visit": "2026-05-02"}
    )
    strict = LegalPolicy()
    lenient = LegalPolicy(email_basis="consent_or_customer", consent_text_version="v2")
    assert basis(promo, consented, "email", policy=strict, today=today) == "consent 2025-03-01 web"  # type: ignore[arg-type]
    assert (
        basis(promo, consented, "email", policy=lenient, today=today)  # type: ignore[arg-type]
        == "consent 2025-03-01 web · consent text v2"
    )
    no_basis = Reason(Code.NO_LEGAL_BASIS, "email", detail="no email_consent")
    assert basis(promo, customer, "email", policy=strict, today=today) == no_basis  # type: ignore[arg-type]
    # The customer exception needs the policy and a campaign about similar products.
    assert basis(promo, customer, "email", policy=lenient, today=today) == no_basis  # type: ignore[arg-type]
    assert (
        basis(similar, customer, "email", policy=lenient, today=today)  # type: ignore[arg-type]
        == "customer last_visit 2026-05-02"
    )
    # 24 months back from 24 Nov 2026 is 24 Nov 2024: a visit the day before is too old.
    assert isinstance(basis(similar, lapsed, "email", policy=lenient, today=today), Reason)  # type: ignore[arg-type]
    refusal = basis(similar, refused, "email", policy=lenient, today=today)  # type: ignore[arg-type]
    assert refusal == Reason(Code.NO_LEGAL_BASIS, "email", detail="consent refused")
    # Letters: legitimate interest by default, consent when the config says so.
    assert basis(promo, customer, "letter", policy=strict, today=today) == "legitimate_interest"  # type: ignore[arg-type]
    by_consent = LegalPolicy(letter_basis="consent")
    assert isinstance(basis(promo, customer, "letter", policy=by_consent, today=today), Reason)  # type: ignore[arg-type]
    future = Contact("c5", 6, email="e@example.com", email_consent=date(2026, 12, 1))
    try:
        basis(promo, future, "email", policy=strict, today=today)  # type: ignore[arg-type]
    except FutureConsentError as exc:
        assert "2026-12-01" in str(exc)
    else:
        raise AssertionError("a consent dated after today was taken")


# --- through the CLI -------------------------------------------------------------------------


def test_run_holds_back_marketing_without_basis_and_keeps_the_basis(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = _workspace(
        make_workspace,
        [
            "c1,Ana,García,ana@example.com,,,,,2025-03-01,formulario web",
            "c2,José,Núñez,jose@example.com,,,,,,",
            "c3,Íñigo,Ortiz,inigo@example.com,,,email,,2025-03-01,",  # opt-out wins
            "c4,Lucía,Martín,lucia@example.com,,,,,sí,",
            "c5,Pablo,Díaz,pablo@example.com,,,,,2026-12-01,",  # after the run's day
        ],
        config_extra="legal: {consent_text_version: '2025-01'}\n",
    )
    result = ws.run("run", "--all", "--date", "2026-11-24")
    assert result.code == 1, result.err  # c5's consent date cannot be made: a failure
    assert len(ws.files("out")) == 1
    text = result.out + result.err
    assert "no legal basis for marketing" in text
    assert "contacts.csv:5" in text and "email_consent" in text  # 'sí'
    assert "contacts.csv:6" in text and "after today" in text
    history = json.loads(ws.run("history", "--json", "--limit", "0").out)["messages"]
    rows = {m["contact"]: m for m in history}
    assert rows["c1"]["status"] == "rendered"
    assert rows["c1"]["basis"] == "consent 2025-03-01 formulario web · consent text 2025-01"
    assert rows["c2"]["status"] == "skipped" and rows["c2"]["basis"] is None
    assert rows["c2"]["reason"] == "no legal basis for marketing: no email_consent"
    assert rows["c3"]["reason"] == "opted out (email)"
    explained = ws.run("explain", "c2", "--date", "2026-11-24", "--json")
    assert explained.code == 0, explained.err
    answer = json.loads(explained.out)["campaigns"][0]
    assert answer["outcome"] == "skipped"
    assert "no email_consent" in answer["text"] and "line 3" in answer["text"]


def test_customer_exception_and_service_messages(
    make_workspace: Callable[..., Workspace],
) -> None:
    reminder = REMINDER
    ws = _workspace(
        make_workspace,
        [
            "c1,Ana,García,ana@example.com,,,,02/05/2026,,",
            "c2,José,Núñez,jose@example.com,,,,02/05/2023,,",
        ],
        campaigns={
            "promotion.yaml": PROMOTION + "similar_products: true\n",
            "reminder.yaml": reminder,
        },
        config_extra="legal: {email_basis: consent_or_customer}\n",
    )
    ws.write(
        "contacts.csv",
        "\n".join(
            [
                HEADER + ",next_visit",
                "c1,Ana,García,ana@example.com,,,,02/05/2026,,,2026-11-25",
                "c2,José,Núñez,jose@example.com,,,,02/05/2023,,,2026-11-25",
            ]
        )
        + "\n",
    )
    result = ws.run("run", "--all", "--date", "2026-11-24")
    assert result.code == 0, result.err
    history = json.loads(ws.run("history", "--json", "--limit", "0").out)["messages"]
    made = {(m["contact"], m["campaign"]): m for m in history}
    assert made[("c1", "promotion")]["basis"] == "customer last_visit 2026-05-02"
    assert made[("c2", "promotion")]["status"] == "skipped"
    assert made[("c1", "reminder")]["basis"] == "service"
    assert made[("c2", "reminder")]["basis"] == "service"


# --- no marketing message without a recorded basis -------------------------------------------

_CELLS = st.sampled_from(["", "2025-03-01", "no", "sí", "x", "2027-01-01", "12/03/2024"])
_VISITS = st.sampled_from(["", "2026-05-02", "2020-01-01", "ayer"])
_OPT_OUTS = st.sampled_from(["", "email", "all"])


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.tuples(_CELLS, _VISITS, _OPT_OUTS), min_size=1, max_size=6),
    lenient=st.booleans(),
    similar=st.booleans(),
)
def test_no_marketing_message_without_a_recorded_basis(
    tmp_path_factory: object,
    rows: list[tuple[str, str, str]],
    lenient: bool,
    similar: bool,
) -> None:
    root: Path = tmp_path_factory.mktemp("ws")  # type: ignore[attr-defined]
    (root / "templates").mkdir()
    (root / "campaigns").mkdir()
    (root / "templates" / "promo.txt.j2").write_text("Hola\n", encoding="utf-8")
    (root / "campaigns" / "promotion.yaml").write_text(
        PROMOTION.replace("\n    ", "\n").lstrip() + f"similar_products: {str(similar).lower()}\n",
        encoding="utf-8",
    )
    policy = "consent_or_customer" if lenient else "consent"
    (root / "config.yaml").write_text(
        BASE_CONFIG + f"legal: {{email_basis: {policy}}}\n", encoding="utf-8"
    )
    lines = [
        f"c{i},Ana,García,a{i}@example.com,,,{opt},{visit},{cell},"
        for i, (cell, visit, opt) in enumerate(rows)
    ]
    (root / "contacts.csv").write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    workspace = load_workspace(root / "config.yaml")
    day = date(2026, 11, 24)
    now = datetime.combine(day, time(9, 0), tzinfo=workspace.settings.tz)
    perform_run(workspace, RunRequest(today=day, now=now, options=RunOptions(workers=1)))
    with open_ledger(workspace.settings) as ledger:
        made = [m for m in ledger.messages() if m.status in ("rendered", "sent")]
    for message in made:
        cell, visit, opt = rows[int(message.contact_id[1:])]
        assert message.basis, message
        assert opt == ""
        if message.basis.startswith("consent"):
            assert cell in ("2025-03-01", "12/03/2024")
        else:
            assert lenient and similar and visit == "2026-05-02", message


# --- do-not-contact lists --------------------------------------------------------------------


def test_do_not_contact_lists_plain_hashed_and_postal(
    make_workspace: Callable[..., Workspace],
) -> None:
    hashed = hashlib.sha256(b"jose@example.com").hexdigest()
    ws = _workspace(
        make_workspace,
        [
            "c1,Ana,García,ana@example.com,,,,,2025-03-01,",
            "c2,José,Núñez,Jose@Example.com,,,,,2025-03-01,",  # hashed, found in any case
            "c3,Íñigo,Ortiz,inigo@example.com,,,,,2025-03-01,",  # plain
            "c4,Lucía,Martín,lucia@example.com,,,,,2025-03-01,",
        ],
        config_extra="suppression_lists: [robinson.csv]\n",
    )
    ws.write(
        "robinson.csv",
        f"email,first_name,last_name,street,postal_code,city\n"
        f"{hashed},,,,,\n"
        " INIGO@example.com ,,,,,\n"
        "not-a-digest-nor-an-address,,,,,\n"
        ',Carmen,Ruiz,"Calle de Serrano, 45",28001,Madrid\n',
    )
    result = ws.run("run", "--all", "--date", "2026-11-24")
    assert result.code == 0, result.err
    assert "robinson.csv:4" in result.out and "neither an email address" in result.out
    history = json.loads(ws.run("history", "--json", "--limit", "0").out)["messages"]
    reasons = {m["contact"]: m["reason"] for m in history}
    listed = "no legal basis for marketing: on a do-not-contact list (robinson.csv)"
    assert reasons == {"c1": None, "c2": listed, "c3": listed, "c4": None}
    runs = json.loads(ws.run("history", "--json", "--runs").out)["runs"]
    assert set(runs[0]["counts"]["suppression_lists"]) == {"robinson.csv"}
    # A list that cannot be read stops a marketing run before anything is made.
    (ws.root / "robinson.csv").unlink()
    stopped = ws.run("run", "--all", "--date", "2026-11-25")
    assert stopped.code == 2
    assert "robinson.csv" in stopped.err and "cannot be read" in stopped.err


def test_postal_lines_hold_back_letters(tmp_path: Path) -> None:
    listed = tmp_path / "robinson.csv"
    listed.write_text(
        'name,street,postal_code,city\n"Carmen Ruiz de la Peña","Calle de Serrano, 45",28001,MADRID\n',
        encoding="utf-8",
    )
    loaded = load_lists([Path("robinson.csv")], root=tmp_path)
    carmen = Contact(
        "c5",
        2,
        first_name="Carmen",
        last_name="Ruiz de la Peña",
        street="Calle de Serrano 45",
        postal_code="28001",
        city="Madrid",
    )
    neighbour = replace(carmen, first_name="Pilar", last_name="Sanz")
    assert loaded.lists.covers(carmen, "letter")
    assert not loaded.lists.covers(neighbour, "letter")
    assert not loaded.lists.covers(carmen, "email")
    assert set(loaded.changed) == {"robinson.csv"} and not loaded.problems


# --- what validate checks in the message (LSSI) ----------------------------------------------


def test_validate_refuses_a_marketing_email_without_opt_out_or_sender(
    make_workspace: Callable[..., Workspace],
) -> None:
    rows = ["c1,Ana,García,ana@example.com,,,,,2025-03-01,"]
    bare = {"promo.txt.j2": "Hola {{ contact.first_name }}, menú de otoño.\n"}
    ws = _workspace(make_workspace, rows)
    ws.write("templates/promo.txt.j2", bare["promo.txt.j2"])
    result = ws.run("validate", "--date", "2026-11-24")
    assert result.code == 2, result.out
    said = result.out + result.err
    assert "campaign promotion, template promo.txt.j2" in said
    assert "no unsubscribe link in its body" in said
    assert "does not identify the sender" in said and "'Calle de la Cava Baja, 12'" in said
    assert "says nothing of its end date or conditions" in said  # a warning beside them
    # With the footer the law asks for, only the promotion's terms are left (a warning).
    ws.write("templates/promo.txt.j2", bare["promo.txt.j2"] + FOOTER)
    fixed = ws.run("validate", "--date", "2026-11-24")
    assert fixed.code == 0, fixed.out + fixed.err
    assert "says nothing of its end date or conditions" in fixed.out + fixed.err
    assert "purpose: marketing (promotions, one-offs" in fixed.out
    # No `unsubscribe:` in config.yaml: an error whatever the template says.
    config = (ws.root / "config.yaml").read_text(encoding="utf-8")
    start = config.index("unsubscribe:")
    end = config.index("coupon:")
    ws.write("config.yaml", config[:start] + config[end:])
    unconfigured = ws.run("validate", "--date", "2026-11-24")
    assert unconfigured.code == 2
    assert "config.yaml has no `unsubscribe:`" in unconfigured.out + unconfigured.err


def test_a_marketing_email_without_a_basis_falls_back_to_a_letter_on_legitimate_interest(
    make_workspace: Callable[..., Workspace],
) -> None:
    promotion = """\
        kind: promotion
        channel: preferred
        fallback: true
        start: 2026-11-20
        end: 2026-12-05
        email:
          subject: "Menú de otoño"
          text: promo.txt.j2
        letter:
          template: letter.html.j2
        """
    ws = make_workspace(
        [],
        campaigns={"promotion.yaml": promotion},
        templates={"letter.html.j2": "<p>Menú de otoño, {{ contact.first_name }}.</p>\n"},
    )
    ws.write(
        "contacts.csv",
        """\
        id,first_name,last_name,email,street,postal_code,city,country,opt_out,email_consent
        c1,Ana,García,ana@example.com,Calle Mayor 18,28013,Madrid,ES,,2025-03-01
        c2,José,Núñez,jose@example.com,Calle de Serrano 45,28001,Madrid,ES,,
        c3,Íñigo,Ortiz,inigo@example.com,,,,ES,,
        c4,Lucía,Martín,lucia@example.com,Calle de Atocha 3,28012,Madrid,ES,letter,
        """,
    )
    # With letters on consent too, the letter has no basis either: c2 is held back.
    config = (ws.root / "config.yaml").read_text(encoding="utf-8")
    ws.write("config.yaml", config + "legal: {letter_basis: consent}\n")
    strict = ws.run("run", "--all", "--date", "2026-11-24", "--dry-run", "--json")
    assert strict.code == 0, strict.err
    (promo,) = json.loads(strict.out)["campaigns"]
    assert (promo["emails"], promo["letters"]) == (1, 0)
    ws.write("config.yaml", config)
    explained = ws.run("explain", "c2", "--date", "2026-11-24")
    assert explained.code == 0, explained.err
    assert (
        "promotion: would go today by letter, arriving about 2026-11-26 (promotion from "
        "2026-11-20 to 2026-12-05); not by email: no legal basis for marketing"
    ) in explained.out
    result = ws.run("run", "--all", "--date", "2026-11-24", "--json")
    assert result.code == 0, result.err
    (promo,) = json.loads(result.out)["campaigns"]
    assert (promo["emails"], promo["letters"]) == (1, 1)
    history = json.loads(ws.run("history", "--json", "--limit", "0").out)["messages"]
    rows = {m["contact"]: (m["channel"], m["status"], m["basis"]) for m in history}
    assert rows == {
        "c1": ("email", "rendered", "consent 2025-03-01"),
        # No consent to email; the post on legitimate interest (legal.letter_basis' default).
        "c2": ("letter", "rendered", "legitimate_interest"),
        # No consent and no postal address; c4 refused letters: neither may go.
        "c3": ("email", "skipped", None),
        "c4": ("email", "skipped", None),
    }
