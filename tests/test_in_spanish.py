"""The tool in Spanish (`language: es`): the rehearsals, the history, redeem and results say
their sentences in Spanish, and the sample run in Spanish prints none of its English phrases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from conftest import Workspace, copy_sample

from outreach.deliver.send import SendSummary
from outreach.i18n import use
from outreach.logs import summary_lines
from outreach.model.config import load_settings
from outreach.model.errors import ConfigError
from outreach.outcomes.coupons import coupon_code
from outreach.pipeline.summary import CampaignSummary, RunSummary
from outreach.rules.control import in_control
from outreach.scheduler import schedule_jobs

# Phrases the sample prints in English (validate, run --all --date 2026-11-24, explain c002 and
# c001, plan --days 7, history --runs), each said by one of the modules that speak Spanish now:
# rehearse/ (validate, explain) and history.py. A phrase from another part of the tool (the
# CLI's own lines and tables, the reasons, the contacts file's problems) joins this list once
# that part speaks Spanish.
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
    "letters 2, deferred 5, skipped 6",  # history --runs: what each run did
    # the run's table and notes, plan's and history's headings (the command line)
    "outreach run for 2026-11-24",
    "done before",
    "letters for birthday:",
    "skipped in promotion:",
    "tried again on the next run inside their window",
    "not sent (delivery: outbox)",
    "plan for 2026-11-24 to 2026-11-30",
    "simulated on a copy of the ledger",
    "no contact would get more than one message",
    "reason / error",
    "last runs:",
    # reasons, and the contacts file's row problems
    "opted out (email)",
    "is the same day; min_gap_days 7",
    "no usable email",
    "is not a valid email address",
    "is not in the calendar",
    "so this row is left out",
    "contacts.csv line 3)",
)
# What the same commands say in Spanish instead (one or more per command).
SPANISH_PHRASES = (
    "configuración config.yaml: correcta",  # validate
    "28 en el público, 29 mensajes preparados, 0 fallidos",
    "finalidad: comercial",
    "ya hecho el 2026-11-24 por email",  # explain
    "aplazado por la política de frecuencia:",
    "nada toca el 2026-11-24; la próxima ventana se abre el 2027-03-11",
    "(promoción del 2026-11-20 al 2026-12-05)",
    "mensajes en el registro, los más recientes primero:",
    "emails 20, cartas 2, aplazados 5, omitidos 6",  # history --runs
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
    """Each English phrase is one the sample really prints in English (so its absence from the
    Spanish output means something), and none is left in Spanish."""
    english = _sample_in(tmp_path / "en", "en")
    assert [p for p in ENGLISH_PHRASES if p not in english] == []
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


def test_plan_redeem_and_visits_speak_spanish(make_workspace: Callable[..., Workspace]) -> None:
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
    # The till hears what is wrong with a code in Spanish (outreach.outcomes.coupons).
    typo = ws.run("redeem", code[:-1] + ("0" if code[-1] != "0" else "1"))
    assert typo.code == 2
    assert "el carácter de control no coincide: hay un carácter equivocado" in typo.err
    assert "check character" not in typo.err
    short = ws.run("redeem", code.replace("-", "")[2:7])  # five symbols, no prefix
    assert short.code == 2
    assert "un código tiene 8 caracteres tras su prefijo, este tiene 5" in short.err
    # A till's export with a line twice and an unknown contact: the lines left out, in Spanish.
    ws.write("caja.csv", f"date,id\n2026-12-01,{got[0]}\n2026-12-01,{got[0]}\n2026-12-01,x9\n")
    visits = ws.run("visits", "--import", "caja.csv")
    assert visits.code == 1
    assert "caja.csv:3: la misma visita que la línea 2 — se omite una vez" in visits.err
    assert (
        "caja.csv:4: contact_id: 'x9' no es ningún contacto del archivo de contactos" in visits.err
    )
    assert "the same visit" not in visits.err and "is no contact" not in visits.err


def test_the_run_summary_and_the_daemon_log_in_spanish(
    make_workspace: Callable[..., Workspace],
) -> None:
    """What the daemon and `--log-file` write for people (outreach.logs, outreach.scheduler)."""
    ws = make_workspace(ROWS[:1])
    settings = load_settings(ws.root / "config.yaml")
    promo = CampaignSummary(name="promo", kind="promotion", channel="email", due=3, emails=2)
    promo.deferred = 1
    summary = RunSummary(
        run_date=date(2026, 11, 24),
        dry_run=True,
        delivery="outbox",
        campaigns=[promo],
        problems=[],
        sending=SendSummary(
            send_date=date(2026, 11, 24),
            now=datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
            server="smtp.example",
            waiting=2,
            sent=2,
        ),
    )
    try:
        use("es")
        lines = summary_lines(summary)
        with pytest.raises(ConfigError) as refused:
            schedule_jobs(settings)
    finally:
        use("en")
    assert lines == [
        "ejecución del 2026-11-24: 2 emails, 0 cartas, 1 aplazado, 0 fallidos (ensayo)",
        "  promo: tocaban 3, hechos antes 0, emails 2, cartas 0, aplazados 1, omitidos 0, "
        "fallidos 0",
        "  envío: 2 enviados de 2 en espera, 0 fallidos, 0 en duda",
    ]
    assert refused.value.message == "no hay ningún horario que ejecutar"
    assert refused.value.hint is not None and refused.value.hint.startswith("añada uno, p. ej.")
    # The same lines in English, as the sources write them.
    assert (
        summary_lines(summary)[0]
        == "run for 2026-11-24: 2 emails, 0 letters, 1 deferred, 0 failed (dry run)"
    )
