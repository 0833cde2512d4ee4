"""The command line in the owner's language: `--help` and usage errors follow the environment
(click's own words too), a run's table and summary follow config.yaml's `language:`, and the
catalog holds every help text click shows and every message click itself says."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import click
import pytest
from babel.messages.pofile import read_po
from conftest import Workspace, copy_sample

from outreach import catalogs, i18n
from outreach.cli import cli
from outreach.cli.clickmessages import extracted
from outreach.cli.commands.records import STATUSES
from outreach.cli.helptext import EXAMPLES, translate_help


def _catalog_ids() -> set[str]:
    with catalogs.TEMPLATE.open("rb") as f:
        template = read_po(f)
    return {m.id if isinstance(m.id, str) else m.id[0] for m in template if m.id}


def _commands(command: click.Command) -> list[click.Command]:
    found = [command]
    if isinstance(command, click.Group):
        subs = command.every_command() if command is cli else command.commands
        for sub in subs.values():
            found.extend(_commands(sub))
    return found


def _help_texts(command: click.Command) -> list[str]:
    """What translate_help looks up for one command, as click holds it in English."""
    texts = []
    if command.help:
        texts.append(inspect.cleandoc(command.help).partition("\f")[0])
    for line in (command.epilog or "").split("\n"):
        comment = line.partition("# ")[2].strip()
        texts.extend([comment] if comment else [EXAMPLES] if line == EXAMPLES else [])
    for param in command.params:
        if isinstance(param, click.Option) and param.help:
            texts.append(param.help)
        if param.metavar:
            texts.append(param.metavar)
    return texts


def test_every_help_text_click_shows_is_in_the_catalog() -> None:
    """outreach/cli/extract.py finds each text exactly as translate_help looks it up."""
    ids = _catalog_ids()
    texts = [t for command in _commands(cli) for t in _help_texts(command)]
    assert len(texts) > 100  # every command, its options and its examples
    assert [t for t in texts if t not in ids] == []


def test_every_message_the_installed_click_says_is_in_the_catalog() -> None:
    """A click upgrade that adds a message fails here (regenerate outreach/cli/clickmessages.py
    and translate it), not in front of a user."""
    found = extracted()
    assert "Show this message and exit." in found and len(found) > 50
    ids = _catalog_ids()
    missing = [m for m in found if (m if isinstance(m, str) else m[0]) not in ids]
    assert missing == []


def test_history_offers_the_ledgers_statuses() -> None:
    from outreach.ledger import STATUSES as LEDGER_STATUSES

    assert STATUSES == LEDGER_STATUSES


def test_the_help_texts_are_translated_and_back_again() -> None:
    """The walk keeps the English it started from: Spanish, then English again."""
    run = cli.every_command()["run"]
    try:
        i18n.use("es")
        translate_help(cli)
        assert run.help is not None and run.help.startswith("Ejecuta las campañas de hoy")
        assert run.epilog is not None and "# ensaya un día: no se guarda nada" in run.epilog
        assert "outreach run --all --dry-run --date 2026-11-24" in run.epilog
    finally:
        i18n.use("en")
        translate_help(cli)
    assert run.help is not None and run.help.startswith("Run campaigns for today")
    assert run.epilog is not None and "# rehearse a day: nothing is kept" in run.epilog


def test_help_in_spanish(tmp_path) -> None:
    ws = Workspace(tmp_path)
    top = ws.run("--help", env={"LANGUAGE": "es"})
    assert top.code == 0, top.err
    for spanish in ("Uso: outreach", "Opciones:", "Comandos:", "Muestra este mensaje y termina."):
        assert spanish in top.out, top.out
    assert "Mantenga el contacto con sus clientes" in top.out
    assert "outreach validate                         # ¿está todo en orden?" in top.out
    for english in ("Usage:", "Options:", "Show this message", "Keep in touch", "Examples:"):
        assert english not in top.out, top.out

    run = ws.run("run", "--help", env={"LANGUAGE": "es"})
    assert run.code == 0, run.err
    words = " ".join(run.out.split())  # click wraps the option's help
    assert "Ejecuta todas las campañas de la carpeta campaigns." in words
    assert "Lo genera todo y no escribe nada (ni siquiera el registro)." in words
    assert "# ensaya un día: no se guarda nada" in run.out
    assert "--config RUTA" in run.out and "--shard K/N" in run.out  # click's type names too
    assert "Render everything" not in run.out and "Run every campaign" not in run.out

    version = ws.run("--version", env={"LANGUAGE": "es"})
    assert version.code == 0 and version.out.startswith("outreach, versión "), version.out


def test_help_in_english(tmp_path) -> None:
    top = Workspace(tmp_path).run("run", "--help", env={"LANGUAGE": "en"})
    assert top.code == 0, top.err
    assert "Usage: outreach run" in top.out and "Show this message and exit." in top.out
    assert "Render everything, write nothing (not even the ledger)." in " ".join(top.out.split())
    assert "Uso:" not in top.out and "Lo genera todo" not in top.out
    assert "--config PATH" in top.out and "RUTA" not in top.out


@pytest.mark.parametrize(
    ("language", "said", "not_said"),
    [
        ("es", ("Error: No existe la opción '--bogus'.", "Pruebe 'outreach run --help'"), "Usage"),
        ("en", ("Error: No such option '--bogus'.", "Try 'outreach run --help'"), "Uso"),
    ],
)
def test_a_usage_error_in_the_environments_language(
    tmp_path, language: str, said: tuple[str, ...], not_said: str
) -> None:
    done = Workspace(tmp_path).run("run", "--bogus", env={"LANGUAGE": language})
    assert done.code == 2
    for text in said:
        assert text in done.err, done.err
    assert not_said not in done.err


def test_a_json_usage_error_keeps_its_keys(tmp_path) -> None:
    done = Workspace(tmp_path).run("run", "--bogus", "--json", env={"LANGUAGE": "es"})
    assert done.code == 2
    error = json.loads(done.out)["error"]
    assert error["kind"] == "usage" and "--bogus" in error["message"]


SPANISH_RUN = (
    "outreach run del 2026-11-24 — ensayo: no se escribe ni se envía nada",
    "campaña",
    "tocaban",
    "ya hechos",
    "aplazados",
)
ENGLISH_RUN = (
    "outreach run for 2026-11-24 — dry run: nothing written, nothing sent",
    "campaign",
    "done before",
    "deferred",
)


@pytest.mark.parametrize(
    ("language", "said", "not_said"),
    [("es", SPANISH_RUN, ENGLISH_RUN), ("en", ENGLISH_RUN, SPANISH_RUN)],
)
def test_the_runs_table_and_summary_in_the_configs_language(
    tmp_path, language: str, said: tuple[str, ...], not_said: tuple[str, ...]
) -> None:
    """config.yaml's `language:` wins over LANGUAGE=en (conftest's) once the config is read."""
    ws = copy_sample(tmp_path / "ws", language=language)
    done = ws.run("run", "--all", "--dry-run", "--date", "2026-11-24")
    assert done.code == 0, done.out + done.err
    table = done.out.splitlines()
    assert table[1].split()[0] == said[1]  # the table's first column title
    for text in said:
        assert text in done.out, done.out
    for text in not_said:
        assert text not in done.out, done.out


@pytest.mark.parametrize(
    ("language", "asked", "aborted"),
    [
        ("es", "¿borrar todo lo que hay sobre c001 (filas del registro", "¡Cancelado!"),
        ("en", "erase everything about c001 (ledger rows", "Aborted!"),
    ],
)
def test_forgets_question_and_its_abort_in_the_configs_language(
    tmp_path, language: str, asked: str, aborted: str
) -> None:
    """A prompt and click's own "Aborted!" (said by click, through our catalog)."""
    ws = copy_sample(tmp_path / "ws", language=language)
    done = subprocess.run(
        [sys.executable, "-m", "outreach", "forget", "c001"],
        cwd=ws.root,
        input="n\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert asked in done.stdout
    assert done.stderr.strip().splitlines()[-1] == aborted
    assert "erased" not in done.stdout and "borrados" not in done.stdout  # nothing erased


def test_the_command_line_loads_no_heavy_library_before_a_command_runs() -> None:
    """`--help` and the commands' start stay light: each command imports what it needs when
    it runs (benchmarks/startup.py measures the time)."""
    heavy = ("pydantic", "jinja2", "weasyprint", "matplotlib", "psycopg", "dkim", "babel", "yaml")
    probe = (
        "import sys, outreach.cli.app; "
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules)); "
        "print(' '.join(m for m in sys.modules if m.startswith('outreach.') and "
        "not m.startswith(('outreach.cli', 'outreach.i18n')) and "
        "m not in ('outreach.model', 'outreach.model.errors')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded, ours = done.stdout.split("\n")[:2]
    assert loaded == "" and ours == "", done.stdout
