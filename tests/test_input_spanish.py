"""The owner's input read back in Spanish: contacts rows, config.yaml, campaign files and the
reasons a run gives, through the real CLI on a small workspace with `language: es`; and the
reasons' two forms (English kept in decisions and the ledger, the owner's words when shown)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

import pytest
from conftest import Workspace

from outreach import i18n
from outreach.contacts.fields import normalize_email
from outreach.model.reasons import Code, Reason, words

DAY = "2026-11-24"
SPANISH = "language: es\n"
# c1 is due; c4 opted out of email; c6's email is not an address; the second c6 repeats an id.
ROWS = [
    "c1,Ana,García,ana@example.com,26/11/1990,,,,,,,customer,",
    "c4,Íñigo,Ortiz,inigo@example.com,25/11/2000,,,,,,,customer,email",
    "c6,Eva,Ruiz,eva@@example,25/11/1980,,,,,,,customer,",
    "c6,Otra,Vez,otra@example.com,25/11/1980,,,,,,,customer,",
]
CAMPAIGN = """\
    kind: birthday
    channel: email
    days_before: 3
    email:
      subject: Hola
      text: birthday.txt.j2
    """


@pytest.fixture
def spanish() -> Iterator[None]:
    """This process speaks Spanish for the test, English again after it."""
    i18n.use("es")
    yield
    i18n.use("en")


def test_contacts_row_problems_in_spanish(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(ROWS, config_extra=SPANISH)
    result = ws.run("validate")
    assert result.code == 0, result.err
    assert (
        "contacts.csv:4: email (columna 4): 'eva@@example' no es una dirección de email válida"
        in result.out
    )
    assert "el contacto no recibe emails — corrija la dirección o deje la celda vacía" in result.out
    assert (
        "contacts.csv:5: id (columna 1): el identificador 'c6' ya se usa en la línea 4, así que "
        "esta fila se deja fuera" in result.out
    )
    # The address library's explanation too, in the catalog's words.
    assert "(lo que va después de la @ tiene caracteres que una dirección no admite: '@')" in (
        result.out
    )
    for english in ("is not a valid email address", "is already used", "(column ", "leave the"):
        assert english not in result.out
    assert "@-sign" not in result.out


# Addresses the email library refuses, each with what the owner reads of it in Spanish: one
# for each of its sentences the catalog says in its own words. A library whose sentences change
# fails here (its English would reach a Spanish owner): say the new ones in contacts/fields.py.
REFUSED = {
    "nobody": "no tiene @",
    "@example.com": "no hay nada antes de la @",
    "ana@": "no hay nada después de la @",
    "ana@@example.com": "lo que va después de la @ tiene caracteres que una dirección no admite: '@'",
    "ana@exa mple.com": (
        "lo que va después de la @ tiene caracteres que una dirección no admite: un espacio"
    ),
    "josé@example.com": (
        "lo que va antes de la @ lleva letras que los servidores de correo no admiten ahí: 'é'"
    ),
    "ana..b@example.com": "tiene dos puntos seguidos",
    ".ana@example.com": "empieza por un punto",
    "ana@example.com.": "termina en un punto",
    "ana.@example.com": "tiene un punto justo antes de la @",
    "ana@.example.com": "tiene un punto justo después de la @",
    "ana@example": "lo que va después de la @ no tiene ningún punto (como en ejemplo.com)",
    "ana@example.invalid": "lo que va después de la @ es un nombre reservado que no recibe correo",
    "ana@example.com x": (
        "lo que va después de la @ tiene caracteres que una dirección no admite: un espacio"
    ),
    "Ana <ana@example.com>": "lleva un nombre y los signos < > alrededor: escriba solo la dirección",
}


def test_the_address_librarys_reasons_are_said_in_spanish(spanish: None) -> None:
    for address, said in REFUSED.items():
        with pytest.raises(ValueError) as refused:
            normalize_email(address)
        assert str(refused.value) == said, address


def test_config_errors_in_spanish(make_workspace: Callable[..., Workspace]) -> None:
    """Pydantic's own messages become ours: a wrong type, a choice, an unknown key."""
    ws = make_workspace(
        ROWS,
        config_extra=SPANISH
        + "timezon: Europe/Madrid\nletters:\n  delivery_days: mucho\ndelivery:\n  method: paloma\n",
    )
    result = ws.run("validate")
    assert result.code == 2
    lines = result.err.splitlines()
    # The first error leads with the file, line and key; the others follow, one a line.
    assert lines[0].endswith(
        "config.yaml:21: delivery.method: debe ser uno de estos valores: 'outbox', 'smtp' "
        "(se encontró 'paloma')"
    )
    assert lines[1].endswith(
        "config.yaml:19: letters.delivery_days: debe ser un número entero (se encontró 'mucho')"
    )
    assert lines[2].endswith(
        "config.yaml:17: timezon: clave desconocida — ¿quería decir `timezone`? — corrija la clave "
        "(consulte el recorrido por config.yaml del README)"
    )
    assert all(line.lstrip().startswith("también ") for line in lines[1:3])
    for english in ("Input should", "valid integer", "unknown key", "did you mean", "also "):
        assert english not in result.err


@pytest.mark.parametrize(
    ("extra", "spanish", "english"),
    [
        pytest.param(
            "days_after: 61\n",
            "campaigns/birthday.yaml:7: days_after: debe ser menor o igual que 60 (se encontró 61)",
            "less than or equal",
            id="out-of-range",
        ),
        pytest.param(
            "priorty: 5\n",
            "campaigns/birthday.yaml:7: priorty: clave desconocida — ¿quería decir `priority`?",
            "unknown key",
            id="unknown-key",
        ),
        pytest.param(
            "start: 2026-11-20\n",
            "`start` no se aplica a las campañas birthday — quítela (es para el tipo promotion)",
            "does not apply",
            id="key-of-another-kind",
        ),
    ],
)
def test_campaign_errors_in_spanish(
    make_workspace: Callable[..., Workspace], extra: str, spanish: str, english: str
) -> None:
    ws = make_workspace(
        ROWS[:1], config_extra=SPANISH, campaigns={"birthday.yaml": CAMPAIGN + extra}
    )
    result = ws.run("validate")
    assert result.code == 2
    assert spanish in result.out + result.err
    assert english not in result.out + result.err


def test_a_runs_reasons_in_spanish_and_the_ledger_keeps_english(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(ROWS, config_extra=SPANISH, campaigns={"birthday.yaml": CAMPAIGN})
    result = ws.run("run", "--all", "--date", DAY)
    assert result.code == 0, result.err
    assert "1 de baja (email): c4" in result.out
    assert "1 sin email utilizable: c6" in result.out
    assert "opted out" not in result.out
    assert "no usable email" not in result.out
    # Stored in English beside its code, so the ledger reads the same in either language.
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        stored = sorted(db.execute("SELECT contact_id, reason, reason_code FROM messages"))
    assert stored == [
        ("c1", None, None),
        ("c4", "opted out (email)", "opted_out"),
        ("c6", "no usable email", "no_email"),
    ]


@pytest.mark.usefixtures("spanish")
@pytest.mark.parametrize(
    ("reason", "record", "shown"),
    [
        (Reason(Code.OPTED_OUT, "letter"), "opted out (letter)", "de baja (cartas)"),
        (Reason(Code.OPTED_OUT), "opted out (all)", "de baja (de todo)"),
        (
            Reason(
                Code.MIN_GAP,
                "email",
                detail="birthday on 2026-11-20 is 2 days before; min_gap_days 7",
            ),
            "birthday on 2026-11-20 is 2 days before; min_gap_days 7",
            "birthday del 2026-11-20 cae 2 días antes; min_gap_days 7",
        ),
        (
            Reason(
                Code.MAX_MESSAGES,
                detail="1 message in the 30 days 2026-11-25 to 2026-12-24 (max_messages 1)",
            ),
            "1 message in the 30 days 2026-11-25 to 2026-12-24 (max_messages 1)",
            "1 mensaje en el periodo de 30 días del 2026-11-25 al 2026-12-24 (max_messages 1)",
        ),
        (
            Reason(Code.ESSENTIAL_OVERRIDE, detail="essential, sent despite: quiet day (sun)"),
            "essential, sent despite: quiet day (sun)",
            "esencial, enviado pese a: día de descanso (sun)",
        ),
        (
            Reason(Code.INCOMPLETE_ADDRESS, "letter", detail="missing street, city"),
            "incomplete postal address: missing street, city",
            "dirección postal incompleta: sin street, city",
        ),
        (
            Reason(Code.NO_LEGAL_BASIS, "email", detail="consent refused"),
            "no legal basis for marketing: consent refused",
            "sin base legal para publicidad: consentimiento rechazado",
        ),
        (
            # A detail another part of the tool wrote in the owner's language stays as it is.
            Reason(Code.BAD_DATA, detail="'32/13/1990' no es una fecha"),
            "bad data in the contacts file: '32/13/1990' no es una fecha",
            "datos erróneos en el archivo de contactos: '32/13/1990' no es una fecha",
        ),
    ],
)
def test_a_reason_is_english_as_a_value_and_spanish_when_shown(
    reason: Reason, record: str, shown: str
) -> None:
    assert reason.record == record
    assert reason.as_dict()["text"] == record  # --json keeps the stable form
    assert reason.text == shown
    assert words(record) == shown  # what history and the report do with a ledger row


@pytest.mark.usefixtures("spanish")
def test_words_leaves_a_sentence_it_does_not_know_alone() -> None:
    assert words("window closed before it was sent") == "el plazo se cerró antes de enviarlo"
    assert words("ledger rebuilt from the outbox") == "ledger rebuilt from the outbox"
    assert words(None) == ""
