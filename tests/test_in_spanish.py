"""The tool in Spanish (`language: es`): the rehearsals, the history, redeem and results say
their sentences in Spanish, and the sample run in Spanish prints none of its English phrases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import Workspace, copy_sample

from outreach.outcomes.coupons import coupon_code
from outreach.rules.control import in_control

# Phrases the sample prints in English (validate, run --all --date 2026-11-24, explain c002 and
# c001, plan --days 7, history --runs), each said by one of the modules that speak Spanish now:
# rehearse/ (validate, explain), history.py, the history's headings. A phrase from another
# part of the tool joins this list once that part speaks Spanish (see the module's end).
ENGLISH_PHRASES = (
    "config config.yaml: ok",  # validate
    "in the audience",
    "messages rendered",
    "purpose: marketing (promotions",
    "no consent needed",
    "in the default language (es): no template variant",
    "already made on",  # explain
    "deferred by the cadence policy:",
    "tried again on each run until",
    "after that it is missed",
    "nothing due on 2026-11-24",
    "the next window opens on",
    "not due: no next_appointment in the contacts file",
    "promotion from 2026-11-20 to 2026-12-05",
    "messages in the ledger, newest first",
    "reason / error",  # history
    "letters 2, deferred 5, skipped 6",
)
# What the same commands say in Spanish instead (one or more per command).
SPANISH_PHRASES = (
    "configuración config.yaml: correcta",  # validate
    "28 en el público, 29 mensajes preparados, 0 fallidos",
    "finalidad: comercial",
    "ya hecho el 2026-11-24 por email",  # explain
    "aplazado por la regla de frecuencia:",
    "nada toca el 2026-11-24; la próxima ventana se abre el 2027-03-11",
    "(promoción del 2026-11-20 al 2026-12-05)",
    "mensajes en el registro, los más recientes primero:",
    "motivo / error",  # history
    "emails 20, cartas 2, aplazados 5, omitidos 6",
)


def _sample_in(root: Path, language: str) -> str:
    """Everything the sample prints for validate, a run, explain, plan and history."""
    ws = copy_sample(root, language=language)
    commands = [
        ("validate", "--date", "2026-11-24"),
        ("run", "--all", "--date", "2026-11-24"),
        ("explain", "c002", "--date", "2026-11-24"),
        ("explain", "c001", "--date", "2026-11-24"),
        ("plan", "--days", "7", "--from", "2026-11-24"),
        ("history", "--runs"),
    ]
    said = []
    for command in commands:
        result = ws.run(*command)
        assert result.code == 0, (command, result.out, result.err)
        said += [result.out, result.err]
    return "\n".join(said)


def test_the_sample_in_spanish_says_none_of_its_english_phrases(tmp_path: Path) -> None:
    spanish = _sample_in(tmp_path / "es", "es")
    assert [p for p in ENGLISH_PHRASES if p in spanish] == []
    assert [p for p in SPANISH_PHRASES if p not in spanish] == []


# A birthday campaign with a control group (30 % held out) over forty contacts.
ROWS = [f"c{i:03d},Ana,García,c{i}@example.com,26/11/1990,,,,,,,customer," for i in range(40)]
CAMPAIGN = """\
    kind: birthday
    channel: email
    days_before: 3
    control_group: 30%
    email:
      subject: "¡Feliz cumpleaños!"
      text: birthday.txt.j2
    """


def test_plan_redeem_and_results_speak_spanish(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(ROWS, campaigns={"birthday.yaml": CAMPAIGN}, config_extra="language: es\n")
    got = sorted(
        c
        for i in range(40)
        if not in_control(campaign="birthday", contact_id=(c := f"c{i:03d}"), percent=30)
    )
    plan = ws.run("plan", "--from", "2026-11-24", "--days", "1", "--contact", got[0])
    assert plan.code == 0, plan.err
    assert "saldría por email" in plan.out and "would go by" not in plan.out
    assert ws.run("run", "--all", "--date", "2026-11-24").code == 0
    code = coupon_code(
        secret="test-secret",
        contact_id=got[0],
        campaign="birthday",
        occurrence_key="birthday:2026",
        prefix="CL-",
        length=8,
    )
    redeemed = ws.run("redeem", code, "--date", "2026-11-27")
    # issue 24: "válido: <name>, <campaign>"; the code is good 60 days after the message.
    assert (redeemed.code, redeemed.out.strip()) == (
        0,
        "válido: Ana García, birthday (vale hasta el 2027-01-23)",
    )
    again = ws.run("redeem", code, "--date", "2026-11-28")
    assert (again.code, again.out.strip()) == (
        1,
        "ya canjeado: Ana García, birthday: el 2026-11-27",
    )
    mistyped = ws.run("redeem", code[:-1] + ("0" if code[-1] != "0" else "1"))
    assert mistyped.code == 2
    assert mistyped.err.startswith("mal escrito: ") and f"¿quería decir {code}?" in mistyped.err
    results = ws.run("results", "--from", "2026-11-01", "--to", "2026-11-30")
    assert results.code == 0, results.err
    assert "birthday: todavía no hay datos suficientes: +" in results.out
    assert "lo recibieron" in results.out and "apartados" in results.out
    assert "not enough data" not in results.out and "got it" not in results.out
