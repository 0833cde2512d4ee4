"""The tool's own words: the catalogs are current and complete, and the language is chosen as
the README says (config `language:`, else the environment)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import Workspace, copy_sample

from outreach import catalogs, i18n


def test_the_catalogs_are_current_and_every_spanish_message_is_translated() -> None:
    """The .pot, both .po and both .mo are what `make catalogs` makes from the sources now, and
    no Spanish message is untranslated or fuzzy."""
    assert catalogs.problems() == []


@pytest.mark.parametrize("language", ["es", "en"])
def test_msgfmt_finds_nothing_wrong_in_the_catalog(language: str) -> None:
    """GNU msgfmt's own checks: headers, plural forms, and every translation keeps the
    message's {placeholders}."""
    msgfmt = shutil.which("msgfmt")
    assert msgfmt, "msgfmt (Debian's gettext) is installed by `make test`"
    done = subprocess.run(
        [msgfmt, "--check", "--statistics", "-o", "/dev/null", str(catalogs.po_path(language))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "untranslated" not in done.stderr and "fuzzy" not in done.stderr, done.stderr


def test_a_translation_that_drops_a_placeholder_is_refused_by_msgfmt(tmp_path) -> None:
    """The check above can fail: a Spanish line that drops one of the message's placeholders
    is an error (and one naming a placeholder the message lacks would raise when said)."""
    header = catalogs.po_path("es").read_text(encoding="utf-8").split("\n\n")[0]
    po = tmp_path / "bad.po"
    po.write_text(
        header + '\n\n#, python-brace-format\nmsgid "{n} rows in {file}"\nmsgstr "{n} filas"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        ["msgfmt", "--check", "-o", "/dev/null", str(po)], capture_output=True, text=True
    )
    assert done.returncode != 0 and "'file'" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "en"),
        ({"LANG": "es_ES.UTF-8"}, "es"),
        ({"LANG": "C.UTF-8"}, "en"),
        ({"LANG": "fr_FR.UTF-8"}, "en"),
        ({"LC_ALL": "es_ES.UTF-8", "LANG": "en_GB.UTF-8"}, "es"),
        ({"LC_ALL": "C", "LANG": "es_ES.UTF-8"}, "en"),
        ({"LC_MESSAGES": "es_MX.UTF-8", "LANG": "en_US.UTF-8"}, "es"),
        ({"LANGUAGE": "fr:es:en", "LANG": "en_US.UTF-8"}, "es"),
        ({"LANGUAGE": "en", "LC_ALL": "es_ES.UTF-8"}, "en"),
    ],
)
def test_the_environment_chooses_as_gettext_reads_it(
    environ: dict[str, str], expected: str
) -> None:
    assert i18n.from_environment(environ) == expected


def test_ngettext_speaks_the_language_in_use() -> None:
    try:
        i18n.use("es")
        assert i18n.ngettext("{n} letter", "{n} letters", 1).format(n=1) == "1 carta"
        assert i18n.ngettext("{n} letter", "{n} letters", 3).format(n=3) == "3 cartas"
        i18n.use("en")
        assert i18n.ngettext("{n} letter", "{n} letters", 3).format(n=3) == "3 letters"
    finally:
        i18n.use("en")


def _spanish_config(ws: Workspace) -> None:
    config = ws.root / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("\nlanguage: en ", "\nlanguage: es "),
        encoding="utf-8",
    )


def test_the_config_language_wins_over_the_environment(tmp_path) -> None:
    """`language: es` in config.yaml: validate's counts in Spanish though LANGUAGE says en;
    without it, the environment's language."""
    ws = copy_sample(tmp_path / "ws", language="es")
    spanish = ws.run("validate", "--date", "2026-11-24")
    assert "filas" in spanish.out and " rows" not in spanish.out, spanish.out
    english = copy_sample(tmp_path / "en", language="en").run("validate", "--date", "2026-11-24")
    assert " rows" in english.out and "filas" not in english.out, english.out


def test_every_sentence_for_people_goes_through_the_catalog() -> None:
    """No sentence in the package is said to people without `_`/`ngettext`/`N_` (strings that
    are not for people say why with `# not translated:`): tests/i18n_scan.py."""
    from i18n_scan import ROOT, scan

    assert scan([ROOT / "outreach"]) == []


def test_the_scan_finds_an_unmarked_sentence(tmp_path) -> None:
    """The check above can fail: a printed sentence, a raised one and a hint are found; the
    marked one and the one that says why it is not translated are not."""
    from i18n_scan import unmarked

    source = tmp_path / "example.py"
    source.write_text(
        "import click\n"
        "from outreach.i18n import _\n"
        "def f(n):\n"
        '    click.echo(f"sent {n} emails today")\n'
        '    click.echo(_("sent {n} emails today").format(n=n))\n'
        '    raise ValueError("the file is empty", hint="add one row")\n'
        'PATTERN = "the rest of the line"  # not translated: a pattern\n',
        encoding="utf-8",
    )
    assert [line for line, _ in unmarked(source)] == [4, 6, 6]
