"""config.yaml as the model reads it: unknown keys named with the closest known one."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BASE_CONFIG

from outreach.model.config import load_settings
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
