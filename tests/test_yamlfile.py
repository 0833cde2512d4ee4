"""YAML files with limits: bombs, recursion, depth, duplicate keys, dates and numbers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Workspace

from outreach import yamlfile
from outreach.model.errors import CampaignError, ConfigError
from outreach.yamlfile import LOADERS, load_yaml

BOMB = (
    "a: &a ["
    + ", ".join(['"lol"'] * 9)
    + "]\n"
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


@pytest.fixture(params=sorted(LOADERS))
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each parser a file can be read with (libyaml's where PyYAML has it, PyYAML's own):
    the limits and the lines they report are the composer's, the same for both."""
    monkeypatch.setattr(yamlfile, "_LineLoader", LOADERS[request.param])
    return str(request.param)


def test_libyaml_reads_the_files_where_pyyaml_was_built_with_it() -> None:
    import yaml

    assert yaml.__with_libyaml__  # PyYAML's wheels are
    assert yamlfile._LineLoader is LOADERS["libyaml"]


def load(tmp_path: Path, text: str) -> tuple[object, dict[tuple[str | int, ...], int]]:
    path = tmp_path / "file.yaml"
    path.write_text(text, encoding="utf-8")
    return load_yaml(path, error=ConfigError)


def refused(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value


def test_an_anchor_bomb_is_refused_quickly(tmp_path: Path, parser: str) -> None:
    started = time.monotonic()
    error = refused(tmp_path, BOMB)
    assert time.monotonic() - started < 1.0
    assert "aliases expanded" in error.message
    assert error.path is not None and error.path.endswith("file.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &x [1, *x]\n", "refers to a value that contains it"),
        ("a: &x {b: *x}\n", "refers to a value that contains it"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
        ("a: " + "{b: " * 3000 + "1" + "}" * 3000 + "\n", "nested more than"),
    ],
)
def test_recursion_and_depth_are_errors_not_tracebacks(
    tmp_path: Path, text: str, expected: str, parser: str
) -> None:
    error = refused(tmp_path, text)
    assert expected in error.message
    assert error.line == 1


def test_a_duplicate_key_names_its_line_and_the_first_one(tmp_path: Path, parser: str) -> None:
    error = refused(tmp_path, "sender:\n  name: A\n  email: a@b.es\n  name: B\n")
    assert (error.line, error.field) == (4, "sender.name")
    assert "first on line 2" in error.message


def test_an_impossible_date_names_file_line_and_key(tmp_path: Path, parser: str) -> None:
    error = refused(tmp_path, "kind: one_off\nsend_on: 2026-02-30\n")
    assert (error.line, error.field) == (2, "send_on")
    assert "not a real date" in error.message


def test_a_huge_integer_names_its_key(tmp_path: Path, parser: str) -> None:
    error = refused(tmp_path, "letters:\n  delivery_days: " + "9" * 5000 + "\n")
    assert (error.line, error.field) == (2, "letters.delivery_days")
    assert "too large" in error.message


def test_ordinary_aliases_merges_and_numbers_still_load(tmp_path: Path, parser: str) -> None:
    data, lines = load(
        tmp_path, "base: &b {x: 1}\nother:\n  <<: *b\n  y: 0x1F\nlist: [*b, *b]\nat: 10:30\n"
    )
    assert data == {
        "base": {"x": 1},
        "other": {"x": 1, "y": 31},
        "list": [{"x": 1}, {"x": 1}],
        "at": 630,
    }
    assert lines[("other", "y")] == 4


CAMPAIGN = """\
kind: one_off
channel: email
send_on: {send_on}
email:
  subject: Hola
  text: promo.txt.j2
"""


@pytest.mark.parametrize(
    ("config_extra", "campaign", "expected"),
    [
        ("", CAMPAIGN.format(send_on="2026-02-30"), "one.yaml:3: send_on: '2026-02-30'"),
        ("", CAMPAIGN.format(send_on="9999-12-31"), "one.yaml:3: send_on: must be a date"),
        ("", CAMPAIGN + "name: again\nname: twice\n", "one.yaml:8: name: the key is given twice"),
        ("", BOMB + CAMPAIGN.format(send_on="2026-11-24"), "one.yaml:1: invalid YAML"),
        ("letters:\n  delivery_days: 3000000\n", None, "config.yaml:17: letters.delivery_days"),
        ("cadence2: &c [*c]\n", None, "config.yaml:16: invalid YAML"),
        ("coupon2:\n  length: " + "7" * 5000 + "\n", None, "config.yaml:17: coupon2.length"),
        ("letters:\n  duplex: " + "[" * 5000 + "\n", None, "config.yaml:17: invalid YAML"),
    ],
)
def test_bad_yaml_files_exit_2_with_the_place(
    make_workspace: Callable[..., Workspace],
    config_extra: str,
    campaign: str | None,
    expected: str,
) -> None:
    campaigns = {"one.yaml": campaign or CAMPAIGN.format(send_on="2026-11-24")}
    ws = make_workspace(
        ["c1,Ana,,ana@example.com,,,,,,,,,"], config_extra=config_extra, campaigns=campaigns
    )
    for command in (["validate"], ["run", "--all", "--date", "2026-11-24"]):
        result = ws.run(*command, timeout=30)
        assert result.code == 2, result.out + result.err
        assert "Traceback" not in result.err
        assert expected in result.out + result.err


def test_campaign_error_type_for_campaign_files(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\na: 2\n", encoding="utf-8")
    with pytest.raises(CampaignError):
        load_yaml(path, error=CampaignError)
