"""Build and check the tool's message catalogs (`make catalogs`; the suite runs `check`).

    python -m outreach.catalogs          # extract, update es/en .po, compile .mo
    python -m outreach.catalogs --check  # exit 1, saying why, when the files are not current

The template (`outreach/locale/outreach.pot`) is extracted with Babel from the files babel.cfg
names, sorted and without source locations so that the files change only when a message does.
`en` is the sources' own language: its catalog is filled with the messages themselves. `es` is
written by people: new messages arrive untranslated, and the check fails until they are
translated (and not fuzzy).
"""

from __future__ import annotations

import copy
import io
import sys
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from outreach.i18n import DOMAIN, LOCALE_DIR

ROOT = LOCALE_DIR.parent.parent
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2)}
# A fixed date in the headers: the files change when a message does, not when they are built.
EPOCH = datetime(2026, 12, 1, tzinfo=UTC)
TEMPLATE = LOCALE_DIR / f"{DOMAIN}.pot"


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(language: str) -> Path:
    return po_path(language).with_suffix(".mo")


def extract() -> Catalog:
    """Every marked message of the sources, as babel.cfg maps them."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)  # type: ignore[no-untyped-call]
    template = Catalog(project="outreach", domain=DOMAIN, creation_date=EPOCH, fuzzy=False)
    found = extract_from_dir(
        str(ROOT),
        method_map,
        options_map,
        keywords=KEYWORDS,
        comment_tags=("i18n:",),
        strip_comment_tags=True,
    )
    for _filename, _lineno, message, comments, context in found:
        template.add(message, None, auto_comments=comments, context=context)
    return template


def _serialised(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    write_po(out, catalog, omit_header=False, no_location=True, sort_output=True, width=100)
    return out.getvalue()


def _compiled(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


# Both languages have two forms (one, other), as GNU gettext writes them; CLDR's third Spanish
# form ("many", for millions) would ask translators for a form no message of ours needs.
PLURAL_FORMS = "nplurals=2; plural=(n != 1);"
HEADER = """\
{language} messages of outreach, the tool's own words (customers' messages are in templates/).
Edit the translations here; `make catalogs` adds new messages and compiles the .mo beside it."""


def _new(language: str) -> Catalog:
    catalog = Catalog(
        locale=language,
        domain=DOMAIN,
        header_comment="",
        project="outreach",
        version="",
        copyright_holder="",
        msgid_bugs_address="",
        last_translator="outreach developers",
        language_team="",
        creation_date=EPOCH,
        revision_date=EPOCH,
        fuzzy=False,
    )
    return catalog


def _read(path: Path, language: str) -> Catalog:
    if not path.exists():
        catalog = _new(language)
    else:
        with path.open("rb") as f:
            catalog = read_po(f, locale=language, domain=DOMAIN)
    catalog.header_comment = "# " + HEADER.format(
        language={"es": "Spanish", "en": "English"}[language]
    ).replace("\n", "\n# ")
    catalog.mime_headers = [("Plural-Forms", PLURAL_FORMS)]
    return catalog


def updated(language: str, template: Catalog) -> Catalog:
    """The language's catalog brought up to the template: new messages added, gone ones
    dropped; English filled with the messages themselves."""
    catalog = _read(po_path(language), language)
    catalog.update(copy.deepcopy(template), no_fuzzy_matching=True, update_creation_date=False)
    catalog.obsolete.clear()
    catalog.revision_date = EPOCH
    catalog.creation_date = EPOCH
    if language == "en":
        for message in catalog:
            if message.id:
                message.string = message.id
                message.flags.discard("fuzzy")
    return catalog


def wanted() -> dict[Path, bytes]:
    """Each catalog file as it should be, from the sources and the translations written."""
    template = extract()
    files = {TEMPLATE: _serialised(template)}
    for language in ("en", "es"):
        catalog = updated(language, template)
        files[po_path(language)] = _serialised(catalog)
        files[mo_path(language)] = _compiled(catalog)
    return files


def problems() -> list[str]:
    """What is not current: files that differ from what the sources make, Spanish messages
    untranslated or fuzzy."""
    found = [
        f"{path.relative_to(ROOT)} is not current: run `make catalogs`"
        for path, data in wanted().items()
        if not path.exists() or path.read_bytes() != data
    ]
    spanish = _read(po_path("es"), "es")
    for message in spanish:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(strings):
            found.append(f"es: untranslated: {message.id!r}")
        elif message.fuzzy:
            found.append(f"es: fuzzy: {message.id!r}")
    return found


def main(argv: list[str]) -> int:
    if "--check" in argv:
        found = problems()
        for line in found:
            print(line, file=sys.stderr)
        return 1 if found else 0
    for path, data in wanted().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
