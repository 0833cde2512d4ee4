"""`outreach init`: a new workspace that validates and runs at once, and never clobbers files."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import Workspace

from outreach.model.errors import OutreachError
from outreach.skeleton import create_workspace, existing_files, skeleton_files

EXPECTED = {
    "config.yaml",
    "contacts.csv",
    "campaigns/birthday.yaml",
    "campaigns/promotion.yaml",
    "campaigns/reminder.yaml",
    "templates/birthday.txt.j2",
    "templates/birthday.html.j2",
    "templates/birthday_letter.html.j2",
    "templates/email_base.html.j2",
    "templates/promotion.txt.j2",
    "templates/promotion.html.j2",
    "templates/reminder.txt.j2",
}


def outreach(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m outreach ARGS` in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "outreach", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root, by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_skeleton_holds_a_whole_workspace() -> None:
    names = set(skeleton_files())
    assert names >= EXPECTED
    # Nothing but workspace files: no Python caches or editor leftovers.
    assert all(not part.startswith((".", "__")) for n in names for part in n.split("/"))


def test_init_into_a_new_folder_then_validate_and_run(tmp_path: Path) -> None:
    result = outreach("init", "shop", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "shop"
    assert set(snapshot(root)) == set(skeleton_files())
    for name in EXPECTED:
        assert f"  {name}\n" in result.stdout
    assert "next steps:" in result.stdout
    assert "cd shop" in result.stdout
    assert "outreach validate" in result.stdout

    # The skeleton's config.yaml says `language: es`: the workspace speaks Spanish.
    validated = outreach("validate", cwd=root)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "todo está en orden" in validated.stdout
    assert "everything is in order" not in validated.stdout

    ran = outreach("run", "--all", cwd=root)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    emails = sorted((root / "out" / "outbox").glob("*/*/*.eml"))
    assert emails, ran.stdout
    # The promotion is open from the day of init: its emails are among them.
    assert any(p.parent.name == "promotion" for p in emails)
    assert (root / "state" / "ledger.sqlite").is_file()


def test_init_fills_in_the_dates_and_a_secret_of_its_own(tmp_path: Path) -> None:
    day = date(2027, 3, 14)
    create_workspace(tmp_path / "a", today=day)
    create_workspace(tmp_path / "b", today=day)
    for root in (tmp_path / "a", tmp_path / "b"):
        leftovers = [
            name
            for name, data in snapshot(root).items()
            if re.search(rb"@[A-Z_]+@", data) is not None
        ]
        assert leftovers == []
    promotion = (tmp_path / "a" / "campaigns" / "promotion.yaml").read_text(encoding="utf-8")
    assert "start: 2027-03-13 " in promotion
    assert "end: 2027-04-13 " in promotion
    rows = (tmp_path / "a" / "contacts.csv").read_text(encoding="utf-8").splitlines()
    assert [r for r in rows if r.endswith(",2027-03-15")] == [r for r in rows if "c005" in r]

    def secret(root: Path) -> str:
        text = (root / "config.yaml").read_text(encoding="utf-8")
        found = re.search(r'secret: "([^"]+)"', text)
        assert found is not None
        return found.group(1)

    assert len(secret(tmp_path / "a")) >= 16
    assert secret(tmp_path / "a") != secret(tmp_path / "b")


# A Sunday, 29 February, the last day of a year: a run on the day of init always has work.
@pytest.mark.parametrize("day", [date(2027, 2, 28), date(2028, 2, 29), date(2027, 12, 31)])
def test_a_run_on_the_day_of_init_has_something_to_do(tmp_path: Path, day: date) -> None:
    create_workspace(tmp_path, today=day)
    ws = Workspace(tmp_path)  # the runs are what is tested here, not a new user's process
    ran = ws.run("run", "--all", "--date", day.isoformat(), "--json")
    assert ran.code == 0, ran.out + ran.err
    assert sorted((tmp_path / "out" / "outbox" / day.isoformat()).glob("promotion/*.eml"))
    # The contact with an appointment tomorrow gets the reminder.
    reminders = sorted((tmp_path / "out" / "outbox" / day.isoformat()).glob("reminder/*.eml"))
    assert [p.name.split(".")[0] for p in reminders] == ["c005"]
    # And a month later the promotion is over: recorded as missed, never sent late.
    later = (day + timedelta(days=40)).isoformat()
    again = ws.run("run", "promotion", "--date", later)
    assert again.code == 0, again.out + again.err
    assert not (tmp_path / "out" / "outbox" / later / "promotion").exists()


def test_init_refuses_to_overwrite_and_touches_nothing(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    (root / "campaigns").mkdir(parents=True)
    (root / "config.yaml").write_text("sender: {name: Mine, email: me@example.com}\n")
    (root / "campaigns" / "promotion.yaml").write_text("kind: promotion\n")
    (root / "notes.txt").write_text("keep me\n")
    before = snapshot(root)

    result = outreach("init", str(root), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    assert "already exist" in result.stderr
    assert str(root / "config.yaml") in result.stderr
    assert str(root / "campaigns" / "promotion.yaml") in result.stderr
    assert str(root / "contacts.csv") not in result.stderr  # listed only what exists
    assert "--force" in result.stderr
    assert snapshot(root) == before  # nothing written, not even the missing files


def test_init_force_overwrites_the_skeleton_files_only(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    create_workspace(root, today=date(2026, 11, 24))
    (root / "config.yaml").write_text("broken: [\n")
    (root / "state").mkdir()
    (root / "state" / "ledger.sqlite").write_bytes(b"not touched")
    (root / "notes.txt").write_text("keep me\n")

    result = outreach("init", "--force", str(root), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert (root / "config.yaml").read_text(encoding="utf-8").startswith("# An outreach workspace")
    assert (root / "state" / "ledger.sqlite").read_bytes() == b"not touched"
    assert (root / "notes.txt").read_text() == "keep me\n"
    assert Workspace(root).run("validate").code == 0


def test_init_into_a_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("my notes\n")
    assert existing_files(tmp_path) == []
    written = create_workspace(tmp_path, today=date(2026, 11, 24))
    assert {p.relative_to(tmp_path).as_posix() for p in written} == set(skeleton_files())
    assert (tmp_path / "README").read_text() == "my notes\n"


def test_init_names_a_file_not_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("a file\n")
    with pytest.raises(OutreachError, match="not a folder"):
        create_workspace(target, today=date(2026, 11, 24))
    assert target.read_text() == "a file\n"
