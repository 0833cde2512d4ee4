"""config.yaml as the model reads it: unknown keys named with the closest known one."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BASE_CONFIG

from outreach.model.config import load_basics, load_settings
from outreach.model.errors import ConfigError


def _load(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "config_ods.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value


def test_an_unknown_config_key_is_told_the_key_it_is_closest_to(tmp_path: Path) -> None:
    error = _load(tmp_path, BASE_CONFIG.replace("  min_gap_days: 0", "  min_gapdays: 0"))
    assert error.field == "cadence.min_gapdays"
    assert error.line == BASE_CONFIG.splitlines().index("  min_gap_days: 0") + 1
    assert error.message == "unknown key"
    assert error.hint == "did you mean `min_gap_days`?"
    assert str(error).endswith("cadence.min_gapdays: unknown key — did you mean `min_gap_days`?")


def test_every_unknown_key_says_its_own_suggestion(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("timezone:", "timezon:") + "cadense: {}\nzzzz: 1\n"
    error = _load(tmp_path, text)
    lines = str(error).splitlines()
    assert lines[0].endswith("timezon: unknown key — did you mean `timezone`?")
    assert lines[1].endswith("cadense: unknown key — did you mean `cadence`?")
    # Nothing close: no guess, the general way forward.
    assert "zzzz: unknown key — fix the key" in lines[2]


def test_the_basics_are_judged_alone_with_the_same_rules(tmp_path: Path) -> None:
    """`load_basics` (for `outreach redeem`) validates the sections a till needs with the
    models `load_settings` uses, and leaves the rest of the file to the commands that read it."""
    path = tmp_path / "config.yaml"
    given = 'coupon: {secret: test-secret, prefix: "CL-"}'
    assert given in BASE_CONFIG
    elsewhere = BASE_CONFIG + "delivery: {method: smtp}\nletters: {envelope: custom}\n"
    path.write_text(elsewhere.replace(given, "coupon: {prefix: CL-, length: 12}"), encoding="utf-8")
    basics = load_basics(path)
    assert (basics.coupon.prefix, basics.coupon.length, basics.root) == ("CL-", 12, tmp_path)
    assert basics.ledger_path == tmp_path / "state" / "ledger.sqlite"
    with pytest.raises(ConfigError) as whole:
        load_settings(path)
    assert "delivery.method smtp needs delivery.host" in str(whole.value)
    assert "letters.envelope custom needs letters.custom" in str(whole.value)
    # An unknown key is a typo of some key, maybe one the till reads: refused all the same.
    path.write_text(elsewhere.replace("coupon:", "cupon:"), encoding="utf-8")
    with pytest.raises(ConfigError) as typo:
        load_basics(path)
    assert str(typo.value).endswith("cupon: unknown key — did you mean `coupon`?")
    # A section the till reads is judged as load_settings judges it: the key and its line.
    broken = elsewhere.replace(given, "coupon: {length: 2}") + "timezone: Mars/Olympus\n"
    path.write_text(broken.replace("timezone: Europe/Madrid\n", ""), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_basics(path)
    error = caught.value
    assert (error.field, error.line) == ("timezone", len(broken.splitlines()) - 1)
    assert error.message.startswith("'Mars/Olympus' is not a known time zone")
    assert "coupon.length: should be greater than or equal to 4 (got 2)" in error.message
