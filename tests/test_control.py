"""Control groups: a stable share of a campaign's contacts held out, recorded, never cadence's."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

import pytest
from conftest import Workspace

from outreach.rules.control import in_control

DAY = "2026-11-24"


def test_the_share_is_close_and_the_choice_stable_and_per_campaign() -> None:
    ids = [f"c{n:05d}" for n in range(20_000)]
    held = [i for i in ids if in_control(campaign="birthday", contact_id=i, percent=20)]
    assert 0.19 < len(held) / len(ids) < 0.21
    assert held == [i for i in ids if in_control(campaign="birthday", contact_id=i, percent=20)]
    other = {i for i in ids if in_control(campaign="winback", contact_id=i, percent=20)}
    assert 0.15 < len(other & set(held)) / len(held) < 0.25  # independent of the first
    assert not any(in_control(campaign="birthday", contact_id=i, percent=0) for i in ids)
    # A larger share keeps everyone a smaller one held out.
    wider = {i for i in ids if in_control(campaign="birthday", contact_id=i, percent=30)}
    assert set(held) <= wider


def rows(n: int) -> list[str]:
    # Birthdays on 26 November: due on DAY (days_before 3).
    return [f"c{i:03d},Ana,García,c{i}@example.com,26/11/1990,,,,,,,customer," for i in range(n)]


CAMPAIGN = """\
    kind: birthday
    channel: email
    days_before: 3
    control_group: {share}
    {extra}
    email:
      subject: "¡Feliz cumpleaños!"
      text: birthday.txt.j2
    """


def ledger(ws: Workspace) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        return sorted(db.execute("SELECT contact_id, status, reason_code FROM messages"))


def test_a_run_holds_out_the_control_group_the_same_way_every_day(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(
        rows(40), campaigns={"birthday.yaml": CAMPAIGN.format(share="25%", extra="")}
    )
    first = ws.run("run", "--all", "--date", DAY, "--json")
    assert first.code == 0, first.err
    expected = {
        f"c{i:03d}"
        for i in range(40)
        if in_control(campaign="birthday", contact_id=f"c{i:03d}", percent=25)
    }
    assert 3 <= len(expected) <= 20
    held = {c for c, status, code in ledger(ws) if (status, code) == ("skipped", "control")}
    sent = {c for c, status, _ in ledger(ws) if status == "rendered"}
    assert held == expected
    assert sent == {f"c{i:03d}" for i in range(40)} - expected
    summary = json.loads(first.out)["campaigns"][0]
    assert summary["skipped"] == {"held out as control group": len(expected)}
    # The next day: nothing new goes, the control rows stay what they were.
    again = ws.run("run", "--all", "--date", "2026-11-25")
    assert again.code == 0, again.err
    assert {c for c, s, code in ledger(ws) if code == "control" and s == "skipped"} == expected
    assert {c for c, s, _ in ledger(ws) if s == "rendered"} == sent
    someone = sorted(expected)[0]
    explained = ws.run("explain", someone, "--date", "2026-11-25")
    assert explained.code == 0, explained.err
    assert "held out as control group" in explained.out


def test_a_control_row_does_not_count_against_cadence(
    make_workspace: Callable[..., Workspace],
) -> None:
    # With one message a month allowed, a held-out contact still gets the next campaign.
    promo = """\
        kind: one_off
        send_on: 2026-11-25
        channel: email
        email: {subject: Otoño, text: promo.txt.j2}
        """
    ws = make_workspace(
        rows(30),
        config_extra="",
        campaigns={
            "birthday.yaml": CAMPAIGN.format(share="50%", extra=""),
            "otono.yaml": promo,
        },
    )
    ws.write(
        "config.yaml",
        (ws.root / "config.yaml").read_text().replace("max_messages: 10", "max_messages: 1"),
    )
    assert ws.run("run", "--all", "--date", DAY).code == 0
    assert ws.run("run", "--all", "--date", "2026-11-25").code == 0
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        got = dict(db.execute("SELECT contact_id, status FROM messages WHERE campaign = 'otono'"))
    held = [
        f"c{i:03d}"
        for i in range(30)
        if in_control(campaign="birthday", contact_id=f"c{i:03d}", percent=50)
    ]
    assert held and all(got[c] == "rendered" for c in held)
    assert any(status == "deferred" for status in got.values())  # the others hit the limit


@pytest.mark.parametrize(
    ("share", "extra", "message"),
    [
        ("20%", "essential: true", "an essential campaign cannot hold back a control group"),
        ("lots%", "", "is not a percentage"),
        ("95%", "", "control_group"),
    ],
)
def test_validate_refuses_a_control_group_where_it_does_not_belong(
    make_workspace: Callable[..., Workspace], share: str, extra: str, message: str
) -> None:
    ws = make_workspace(
        rows(1), campaigns={"birthday.yaml": CAMPAIGN.format(share=share, extra=extra)}
    )
    result = ws.run("validate", "--date", DAY)
    assert result.code == 2
    assert message in result.out
    assert "birthday.yaml:" in result.out


def test_an_appointment_reminder_refuses_a_control_group(
    make_workspace: Callable[..., Workspace],
) -> None:
    from outreach.model.campaigns import load_campaign
    from outreach.model.errors import CampaignError

    ws = make_workspace(rows(1), campaigns={})
    path = ws.write(
        "campaigns/cita.yaml",
        """\
        kind: reminder
        date_field: next_appointment
        offsets: [-1]
        control_group: 10%
        email: {subject: Cita, text: promo.txt.j2}
        """,
    )
    with pytest.raises(CampaignError) as caught:
        load_campaign(path, templates_dir=ws.root / "templates")
    assert caught.value.line == 4 and caught.value.field == "control_group"
