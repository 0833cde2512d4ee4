"""The outbox deliverer: one complete .eml file per message, written atomically."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.deliver.base import DeliveryResult
from outreach.deliver.outbox import (
    OutboxWriter,
    clean_temporaries,
    outbox_file_name,
    path_component,
    temporary_path,
    write_atomic,
)
from outreach.model.errors import DeliveryError
from outreach.render.email import RenderedEmail

RUN_DAY = date(2026, 11, 24)
DATA = b"From: Casa Luc\xc3\xada <hola@casalucia.example>\r\nSubject: Hola\r\n\r\nHola Ana\r\n"


def email(
    contact_id: str = "c-001",
    campaign: str = "birthday",
    key: str = "birthday:2026",
    data: bytes = DATA,
) -> RenderedEmail:
    return RenderedEmail(
        contact_id=contact_id,
        campaign=campaign,
        occurrence_key=key,
        message_id=f"{contact_id}.{campaign}@casalucia.example",
        from_addr="hola@casalucia.example",
        to_addrs=("ana@example.com",),
        subject="Hola",
        data=data,
    )


def all_files(root: Path) -> list[str]:
    """Every file under root, relative, sorted (hidden ones included)."""
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _dirs, names in os.walk(root)
        for name in names
    )


@pytest.fixture
def writer(tmp_path: Path) -> OutboxWriter:
    return OutboxWriter(root=tmp_path, out_dir=tmp_path / "out", run_date=RUN_DAY)


def test_push_writes_the_exact_message_and_no_temporary_file(
    writer: OutboxWriter, tmp_path: Path
) -> None:
    result = writer.push(email())
    artifact = "out/outbox/2026-11-24/birthday/c-001.eml"
    assert result == DeliveryResult(
        ("c-001", "birthday", "birthday:2026"), "rendered", artifact=artifact
    )
    assert (tmp_path / artifact).read_bytes() == DATA
    assert all_files(tmp_path) == [artifact]
    writer.close()


def test_pushing_again_rewrites_the_same_file(writer: OutboxWriter, tmp_path: Path) -> None:
    first = writer.push(email(data=b"old"))
    second = writer.push(email())
    assert first.artifact == second.artifact
    assert second.artifact is not None
    assert (tmp_path / second.artifact).read_bytes() == DATA
    assert len(all_files(tmp_path)) == 1


def test_each_message_gets_its_own_file(writer: OutboxWriter, tmp_path: Path) -> None:
    results = [
        writer.push(email("c-001", "reminder", "reminder:2026-12-01:-7", data=b"a")),
        writer.push(email("c-001", "reminder", "reminder:2026-12-01:-1", data=b"b")),
        writer.push(email("c-002", "reminder", "reminder:2026-12-01:-1", data=b"c")),
        writer.push(email("c-001", "promo", "promotion", data=b"d")),
    ]
    assert [(tmp_path / str(r.artifact)).read_bytes() for r in results] == [b"a", b"b", b"c", b"d"]
    assert len(all_files(tmp_path)) == 4


@pytest.mark.parametrize(
    "contact_id", ["../evil", "a/b", "/etc/passwd", "", "x\x00y", "ana maría", "c\n1"]
)
def test_a_hostile_contact_id_is_refused_and_nothing_is_written(
    writer: OutboxWriter, tmp_path: Path, contact_id: str
) -> None:
    result = writer.push(email(contact_id))
    assert result.status == "failed"
    assert result.transient is False
    assert result.artifact is None
    assert result.error is not None and "not usable as a file name" in result.error
    assert all_files(tmp_path) == []


def test_a_leading_dot_cannot_hide_a_file(writer: OutboxWriter, tmp_path: Path) -> None:
    result = writer.push(email(".profile", campaign=".git"))
    assert result.artifact == "out/outbox/2026-11-24/%2Egit/%2Eprofile.eml"
    assert (tmp_path / result.artifact).read_bytes() == DATA
    dots = writer.push(email(".."))
    assert dots.artifact == "out/outbox/2026-11-24/birthday/%2E..eml"


def test_a_campaign_name_cannot_leave_the_outbox(writer: OutboxWriter, tmp_path: Path) -> None:
    result = writer.push(email(campaign="../../../etc"))
    assert result.status == "rendered"
    assert result.artifact is not None
    path = (tmp_path / result.artifact).resolve()
    assert path.parent.parent == (tmp_path / "out" / "outbox" / "2026-11-24").resolve()
    assert all_files(tmp_path) == [result.artifact]


def test_a_campaign_name_in_any_script_stays_readable(writer: OutboxWriter) -> None:
    result = writer.push(email(campaign="cumpleaños"))
    assert result.artifact == "out/outbox/2026-11-24/cumpleaños/c-001.eml"


def test_an_out_folder_outside_the_workspace_gives_an_absolute_artifact(tmp_path: Path) -> None:
    writer = OutboxWriter(root=tmp_path / "ws", out_dir=tmp_path / "elsewhere", run_date=RUN_DAY)
    result = writer.push(email())
    expected = tmp_path / "elsewhere/outbox/2026-11-24/birthday/c-001.eml"
    assert result.artifact == expected.as_posix()
    assert expected.read_bytes() == DATA


def test_a_write_that_fails_is_a_transient_failure(writer: OutboxWriter, tmp_path: Path) -> None:
    # A file where the day's folder should be: nothing can be written below it.
    (tmp_path / "out" / "outbox").mkdir(parents=True)
    (tmp_path / "out" / "outbox" / "2026-11-24").write_text("in the way")
    result = writer.push(email())
    assert result.status == "failed"
    assert result.transient is True
    assert result.error is not None and "cannot write" in result.error


def test_write_atomic_leaves_no_temporary_file_when_the_rename_fails(tmp_path: Path) -> None:
    target = tmp_path / "x.eml"
    target.mkdir()
    (target / "inside").write_text("a folder with something in it cannot be replaced")
    with pytest.raises(OSError):
        write_atomic(target, b"data")
    assert all_files(tmp_path) == ["x.eml/inside"]


def test_the_temporary_name_is_hidden_and_carries_the_pid(tmp_path: Path) -> None:
    assert temporary_path(tmp_path / "a.eml") == tmp_path / f".a.eml.tmp-{os.getpid()}"


def test_clean_temporaries_removes_only_leftovers(tmp_path: Path) -> None:
    day = tmp_path / "out" / "outbox" / "2026-11-24" / "birthday"
    day.mkdir(parents=True)
    leftovers = [day / ".c-001.eml.tmp-123", tmp_path / "out" / ".batch.pdf.tmp-99"]
    keep = [day / "c-001.eml", day / ".tmp-123", day / "c.eml.tmp-1", day / ".x.tmp-abc"]
    for path in leftovers + keep:
        path.write_bytes(b"x")
    removed = clean_temporaries(tmp_path / "out")
    assert sorted(removed) == sorted(leftovers)
    assert all(path.exists() for path in keep)
    assert not any(path.exists() for path in leftovers)
    assert clean_temporaries(tmp_path / "missing") == []


def test_the_file_name_holds_the_contact_and_a_reminder_s_occurrence() -> None:
    assert outbox_file_name(contact_id="c-001", occurrence_key="promotion") == "c-001.eml"
    assert outbox_file_name(contact_id="c-001", occurrence_key="birthday:2026") == "c-001.eml"
    # Two offsets of one appointment may be due together after a gap: distinct files.
    minus_two = outbox_file_name(contact_id="c-001", occurrence_key="reminder:2026-11-25:-2")
    minus_one = outbox_file_name(contact_id="c-001", occurrence_key="reminder:2026-11-25:-1")
    assert (minus_two, minus_one) == ("c-001.2026-11-25_-2.eml", "c-001.2026-11-25_-1.eml")
    with pytest.raises(DeliveryError, match="too long"):
        outbox_file_name(contact_id="c" * 300, occurrence_key="promotion")


def test_path_component_refuses_an_empty_name() -> None:
    with pytest.raises(DeliveryError):
        path_component("")


@given(st.text(min_size=1))
def test_path_component_is_safe_and_reversible(value: str) -> None:
    component = path_component(value)
    assert "/" not in component and "\x00" not in component
    assert not component.startswith(".")
    assert unquote(component, errors="surrogatepass") == value
