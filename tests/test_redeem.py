"""`outreach redeem`: a real code once, a used or expired one refused, a typo told apart."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Workspace
from hypothesis import given, settings
from hypothesis import strategies as st
from pg_server import PgServer
from test_crash import pause_at, wait_until_paused

from outreach.ledger import Ledger, MessageRecord
from outreach.ledger.outcomes import redemptions
from outreach.model.config import Coupon, load_basics
from outreach.model.errors import CampaignError
from outreach.outcomes.coupons import coupon_code, display, read_code
from outreach.outcomes.names import contact_name, picked_lines
from outreach.outcomes.redeem import Till, redeem

COUPON = Coupon(secret="test-secret", prefix="CL-", length=8, valid_days=60)
SENT = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)
ROWS = [
    "c1,Ana,García,ana@example.com,26/11/1990,,,,,,,customer,",
    "c5,Mary,Smith,mary@example.org,25/11/1980,,,,,,en,customer,",
]


def code_for(contact_id: str, campaign: str = "birthday", key: str = "birthday:2026") -> str:
    return coupon_code(
        secret="test-secret",
        contact_id=contact_id,
        campaign=campaign,
        occurrence_key=key,
        prefix="CL-",
        length=8,
    )


def sent(contact_id: str, *, status: str = "sent", campaign: str = "birthday") -> MessageRecord:
    key = "birthday:2026" if campaign == "birthday" else "promotion"
    return MessageRecord(
        contact_id=contact_id,
        campaign=campaign,
        occurrence_key=key,
        channel="email",
        status=status,
        run_date=SENT,
        effective_date=SENT,
        updated_at=NOW,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        with Ledger.open(tmp_path / "state" / "ledger.sqlite") as led:
            yield led
    else:
        with Ledger.connect(request.getfixturevalue("pg_url")) as led:
            yield led


def at(day: date, *, till: str | None = None, cents: int | None = None) -> Till:
    return Till(day=day, now=NOW, amount_cents=cents, name=till)


def test_a_code_redeems_once_then_says_when_and_where(ledger: Ledger) -> None:
    ledger.record([sent("c1"), sent("c2")])
    conn = ledger.connection()
    first = redeem(conn, code_for("c1"), coupon=COUPON, campaigns={}, till=at(SENT, till="barra"))
    assert (first.outcome, first.exit_code) == ("valid", 0)
    assert first.issued is not None and first.issued.contact_id == "c1"
    assert first.expires == SENT + timedelta(days=60)
    again = redeem(conn, code_for("c1").lower(), coupon=COUPON, campaigns={}, till=at(SENT))
    assert (again.outcome, again.exit_code) == ("used", 1)
    assert again.earlier is not None
    assert (again.earlier.day, again.earlier.till) == (SENT, "barra")
    other = redeem(conn, code_for("c2"), coupon=COUPON, campaigns={}, till=at(SENT, cents=4250))
    assert other.outcome == "valid"
    assert sorted((r.contact_id, r.amount_cents, r.till) for r in redemptions(conn)) == [
        ("c1", None, "barra"),
        ("c2", 4250, None),
    ]


def test_an_expired_code_is_refused_and_not_recorded(ledger: Ledger) -> None:
    ledger.record([sent("c1")])
    conn = ledger.connection()
    late = SENT + timedelta(days=61)
    verdict = redeem(conn, code_for("c1"), coupon=COUPON, campaigns={}, till=at(late))
    assert (verdict.outcome, verdict.exit_code) == ("expired", 1)
    assert redemptions(conn) == []
    last = redeem(conn, code_for("c1"), coupon=COUPON, campaigns={}, till=at(late - timedelta(1)))
    assert last.outcome == "valid"


def test_unknown_codes_exit_2_whatever_their_check(ledger: Ledger) -> None:
    # Another workspace's secret, a message never given out, a message of no one.
    ledger.record([sent("c1"), sent("c3", status="skipped")])
    conn = ledger.connection()
    foreign = coupon_code(
        secret="other",
        contact_id="c1",
        campaign="birthday",
        occurrence_key="birthday:2026",
        prefix="CL-",
        length=8,
    )
    for typed in (foreign, code_for("c3"), code_for("c9")):
        verdict = redeem(conn, typed, coupon=COUPON, campaigns={}, till=at(SENT))
        assert (verdict.outcome, verdict.exit_code) == ("unknown", 2), typed
    assert redemptions(conn) == []


def test_a_typo_is_mistyped_and_the_one_known_code_a_slip_away_is_suggested(
    ledger: Ledger,
) -> None:
    ledger.record([sent("c1")])
    conn = ledger.connection()
    real = code_for("c1")
    symbols = real.replace("-", "")[2:]
    swapped = symbols[1] + symbols[0] + symbols[2:] if symbols[0] != symbols[1] else None
    wrong = ("Z" if symbols[5] != "Z" else "Y").join((symbols[:5], symbols[6:]))
    for typo in filter(None, (swapped, wrong)):
        verdict = redeem(
            conn, display(typo, prefix="CL"), coupon=COUPON, campaigns={}, till=at(SENT)
        )
        assert (verdict.outcome, verdict.exit_code) == ("mistyped", 2)
        assert verdict.suggestion == real
    bad = redeem(conn, real[:-1] + "U", coupon=COUPON, campaigns={}, till=at(SENT))
    assert (bad.outcome, bad.position) == ("mistyped", 8)
    assert redemptions(conn) == []


def test_a_promotions_code_lasts_until_its_end(make_workspace: Callable[..., Workspace]) -> None:
    from outreach.workspace import load_workspace

    ws = make_workspace(
        ROWS,
        campaigns={
            "promo.yaml": """\
                kind: promotion
                start: 2026-11-20
                end: 2026-12-06
                email: {subject: Otoño, text: promo.txt.j2}
                """
        },
    )
    campaigns = {c.name: c for c in load_workspace(ws.root / "config.yaml").campaigns}
    with Ledger.open(ws.root / "state" / "ledger.sqlite") as ledger:
        ledger.record([sent("c1", campaign="promo")])
        conn = ledger.connection()
        typed = code_for("c1", "promo", "promotion")
        late = redeem(conn, typed, coupon=COUPON, campaigns=campaigns, till=at(date(2026, 12, 7)))
        assert (late.outcome, late.expires) == ("expired", date(2026, 12, 6))
        good = redeem(conn, typed, coupon=COUPON, campaigns=campaigns, till=at(date(2026, 12, 6)))
        assert good.outcome == "valid"


# -- the command ---------------------------------------------------------------------------


def _printed_code(ws: Workspace, contact_id: str) -> str:
    path = ws.root / "out" / "outbox" / "2026-11-24" / "birthday" / f"{contact_id}.eml"
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"CL-[0-9A-Z]{4}-[0-9A-Z]{4}", text)
    assert found is not None, text
    return found.group(0)


def test_the_command_redeems_the_code_the_email_printed(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(ROWS)
    assert ws.run("run", "--all", "--date", "2026-11-24").code == 0
    printed = _printed_code(ws, "c1")
    assert printed == code_for("c1")
    assert read_code(printed, prefix="CL-", length=8).symbols is not None
    first = ws.run(
        "redeem", printed.lower().replace("-", " "), "--date", "2026-11-28", "--till", "barra"
    )
    assert (first.code, first.out.strip()) == (
        0,
        "válido: Ana García, birthday (good until 2027-01-23)",
    )
    again = ws.run("redeem", printed, "--date", "2026-11-29", "--json")
    assert again.code == 1
    verdict = json.loads(again.out)
    assert verdict["outcome"] == "used"
    assert (verdict["redeemed_on"], verdict["redeemed_at"], verdict["name"]) == (
        "2026-11-28",
        "barra",
        "Ana García",
    )
    unknown = ws.run("redeem", code_for("c9"))
    assert unknown.code == 2 and "unknown" in unknown.err
    typo = ws.run("redeem", printed[:-1] + ("0" if printed[-1] != "0" else "1"))
    assert typo.code == 2 and f"did you mean {printed}?" in typo.err
    amount = ws.run("redeem", _printed_code(ws, "c5"), "--amount", "12,3,4")
    assert amount.code == 2 and "--amount" in amount.err


def _race(ws: Workspace, code: str, env: dict[str, str] | None = None) -> list[int]:
    runs = [ws.start("redeem", code, "--date", "2026-11-26", env=env) for _ in range(2)]
    said = [run.communicate(timeout=60)[1].decode() for run in runs]
    codes = [run.wait() for run in runs]
    assert sorted(codes) == [0, 1], f"exit codes {codes}, stderr {said}"
    return sorted(codes)


def test_two_tills_at_once_one_wins_on_sqlite(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(ROWS)
    assert ws.run("run", "--all", "--date", "2026-11-24").code == 0
    for contact_id in ("c1", "c5"):
        assert _race(ws, _printed_code(ws, contact_id)) == [0, 1]


def test_two_tills_at_once_one_wins_on_postgresql(
    make_workspace: Callable[..., Workspace], pg_url: str
) -> None:
    ws = make_workspace(ROWS)
    env = {"OUTREACH_LEDGER_URL": pg_url}
    assert ws.run("run", "--all", "--date", "2026-11-24", env=env).code == 0
    for contact_id in ("c1", "c5"):
        assert _race(ws, _printed_code(ws, contact_id), env) == [0, 1]


def test_a_till_whose_messages_another_till_indexed_meanwhile_finds_the_code(
    make_workspace: Callable[..., Workspace],
) -> None:
    # The second till looks the code up (not indexed yet), then stops just before it reads the
    # messages the index lacks; the first redeems the code, indexing them. The second then finds
    # nothing new to index, and must look again: "used", never "unknown" (seen in a race on
    # PostgreSQL, where the first till's index filled between the second's two steps).
    ws = make_workspace(ROWS)
    assert ws.run("run", "--all", "--date", "2026-11-24").code == 0
    code = _printed_code(ws, "c1")
    second = ws.start(
        "redeem", code, "--date", "2026-11-26", env=pause_at("sql SELECT max(message_row) 1")
    )
    try:
        wait_until_paused(second)
        first = ws.run("redeem", code, "--date", "2026-11-26")
        assert first.code == 0, first.err
        second.send_signal(signal.SIGCONT)
        said = second.communicate(timeout=60)[1].decode()
    finally:
        second.kill()  # a no-op once it has ended; a stopped till left by a failure is killed
    assert second.wait() == 1, said
    assert "unknown" not in said


def test_a_redeemed_code_stays_redeemed_in_a_copy_of_the_ledger(
    make_workspace: Callable[..., Workspace], pg_server: PgServer, tmp_path: Path
) -> None:
    # `ledger copy` to a server and back: the redemption goes with the messages (were it left
    # behind, the code would be good again on the copy), the coupon index is filled anew.
    ws = make_workspace(ROWS)
    assert ws.run("run", "--all", "--date", "2026-11-24").code == 0
    code = _printed_code(ws, "c1")
    first = ws.run("redeem", code, "--date", "2026-11-25", "--till", "barra")
    assert first.code == 0, first.err
    server = pg_server.empty_database()
    copied = ws.run("ledger", "copy", "--to", server, "--json")
    assert copied.code == 0, copied.err
    tables = json.loads(copied.out)["tables"]
    assert tables["redemptions"] == {"source": 1, "copied": 1, "target": 1}
    on_server = {"OUTREACH_LEDGER_URL": server}
    again = ws.run("redeem", code, "--date", "2026-11-26", env=on_server)
    assert again.code == 1, again.out + again.err
    assert "already redeemed" in again.out and "2026-11-25" in again.out and "barra" in again.out
    back = tmp_path / "back.sqlite"
    assert ws.run("ledger", "copy", "--to", str(back), env=on_server).code == 0
    with sqlite3.connect(back) as db:
        rows = db.execute("SELECT contact_id, day, till FROM redemptions").fetchall()
    assert rows == [("c1", "2026-11-25", "barra")]


def test_a_rebuilt_ledger_is_indexed_again(ledger: Ledger) -> None:
    # Rows renumbered below the index's mark (a rebuild) are still found.
    ledger.record([sent("c1"), sent("c2")])
    conn = ledger.connection()
    assert (
        redeem(conn, code_for("c1"), coupon=COUPON, campaigns={}, till=at(SENT)).outcome == "valid"
    )
    conn.execute("DELETE FROM coupons WHERE contact_id = 'c2'")
    assert (
        redeem(conn, code_for("c2"), coupon=COUPON, campaigns={}, till=at(SENT)).outcome == "valid"
    )


def test_a_codes_campaign_is_read_for_its_terms_from_its_own_file(
    make_workspace: Callable[..., Workspace],
) -> None:
    from outreach.model.config import load_settings
    from outreach.workspace import CampaignTerms

    promo = "kind: promotion\nstart: 2026-11-20\nend: 2026-12-06\nemail: {subject: Otoño, text: promo.txt.j2}\n"
    ws = make_workspace(
        ROWS,
        campaigns={
            "promo.yaml": promo.replace("promo.txt.j2", "missing.txt.j2"),
            "otono.yaml": "name: fiesta\n" + promo,
            "broken.yaml": "kind: nonsense\n",
        },
    )
    settings = load_settings(ws.root / "config.yaml")
    campaigns = CampaignTerms(settings)
    # The code's own file, for its kind and dates: neither a missing template nor a broken
    # neighbour stops a till (`validate` and `run` still refuse them).
    assert (campaigns["promo"].kind, campaigns["promo"].end) == ("promotion", date(2026, 12, 6))
    assert ws.run("validate").code != 0
    # Terms are judged by the campaign rules all the same.
    ws.write("campaigns/promo.yaml", promo.replace("end: 2026-12-06", "end: 2026-11-01"))
    with pytest.raises(CampaignError, match="is before `start`"):
        CampaignTerms(settings).get("promo")
    # A campaign whose `name:` is not its file's is found among all of them.
    with pytest.raises(CampaignError, match="nonsense"):
        campaigns.get("fiesta")
    ws.write("campaigns/broken.yaml", promo.replace("2026-12-06", "2026-12-31"))
    ws.write("campaigns/promo.yaml", promo)
    campaigns = CampaignTerms(settings)
    assert campaigns["fiesta"].end == date(2026, 12, 6)
    assert campaigns.get("gone") is None and sorted(campaigns) == ["broken", "fiesta", "promo"]


def _imported_by_redeem(ws: Workspace, code: str, modules: tuple[str, ...]) -> tuple[int, str]:
    """The exit code of `outreach redeem CODE` in a fresh interpreter (the suite's CLI server
    has every module loaded already), and which of `modules` it imported."""
    probe = (
        "import sys; from outreach.cli.app import main; "
        f"sys.argv = ['outreach', 'redeem', {code!r}, '--date', '2026-11-25']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        f"print(code, ' '.join(m for m in {modules!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ws.root,
        env={**os.environ, "LANGUAGE": "en"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout, done.stderr
    code, _, loaded = done.stdout.splitlines()[-1].partition(" ")
    return int(code), loaded


def test_redeem_starts_without_what_a_till_does_not_need(
    make_workspace: Callable[..., Workspace],
) -> None:
    """A till runs `redeem` often (issue 24: <= 0.3 s of CPU, benchmarks/startup.py): it reads
    a code's campaign for its terms (no templates: no Jinja) and the contacts only for a found
    code's name."""
    ws = make_workspace(ROWS)
    heavy = ("jinja2", "outreach.rules.audience", "logging", "psycopg", "weasyprint")
    assert _imported_by_redeem(ws, code_for("c9"), (*heavy, "outreach.contacts")) == (2, "")
    assert ws.run("run", "--all", "--date", "2026-11-24").code == 0
    assert _imported_by_redeem(ws, _printed_code(ws, "c1"), heavy) == (0, "")


def test_redeem_judges_the_config_it_reads_and_leaves_the_rest_to_validate(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(ROWS, config_extra="delivery: {method: smtp}\n")
    unknown = ws.run("redeem", code_for("c9"))
    assert unknown.code == 2 and "unknown" in unknown.err
    assert ws.run("validate").code != 0  # a run or a validate is stopped as before
    config = (ws.root / "config.yaml").read_text(encoding="utf-8")
    ws.write("config.yaml", config.replace('prefix: "CL-"}', 'prefix: "CL-", length: 2}'))
    broken = ws.run("redeem", code_for("c9"))
    assert broken.code == 2 and "unknown" not in broken.err
    line = next(n for n, text in enumerate(config.splitlines(), 1) if text.startswith("coupon:"))
    assert f"config.yaml:{line}: coupon.length: should be greater than or equal to 4" in broken.err


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(
        st.sampled_from([b"c1", b"c12", b",Ana", b"\n", b"\r", b"\r\n", b"sep=;", b'"', b"x"]),
        max_size=30,
    ).map(b"".join),
    needle=st.sampled_from([b"c1", b"c12", b"Ana"]),
)
def test_the_lines_searched_for_a_name_are_those_splitlines_would_give(
    data: bytes, needle: bytes
) -> None:
    """The name's search cuts out the lines holding the id as the whole file cut into lines
    would give them (any line breaks, Excel's `sep=` line), without cutting the whole file."""
    lines = data.splitlines(keepends=True)
    head = 2 if lines and lines[0].lstrip(b'\xef\xbb\xbf"').lower().startswith(b"sep=") else 1
    assert picked_lines(data, needle) == lines[:head] + [
        line for line in lines[head:] if needle in line
    ]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_the_till_finds_the_name_in_a_contacts_file_of_either_encoding(
    make_workspace: Callable[..., Workspace], encoding: str
) -> None:
    """The name is found in the lines that hold the id, in UTF-8 or UTF-16 (as Excel saves
    "Unicode text"): looked for once in UTF-8, then as UTF-16 when no line holds it."""
    ws = make_workspace(ROWS)
    contacts = ws.root / "contacts.csv"
    text = contacts.read_text(encoding="utf-8")
    more = "".join(
        f"c{n},Nombre{n},Apellido,c{n}@example.com,,,,,,,,customer,\n" for n in range(10, 60)
    )
    contacts.write_text(text + more, encoding=encoding)  # Python's utf-16 writes its BOM
    settings = load_basics(ws.root / "config.yaml")
    assert contact_name(settings, "c5") == "Mary Smith"
    assert contact_name(settings, "c42") == "Nombre42 Apellido"
    assert contact_name(settings, "c99") == "c99"  # no row: the id
