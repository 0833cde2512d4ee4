"""No password of a connection string is ever printed or logged (outreach.ledger.redact).

The rule itself in-process over every shape a password takes; config.yaml refusing each shape
without quoting it; then the real CLI's every output channel (terminal, --json, the run's and
the daemon's log files) on every failure path, grepped for the secret.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Workspace

from outreach.ledger import Ledger
from outreach.ledger.postgres import AdvisoryLock, check_url, connect
from outreach.ledger.redact import has_password, redact_text, redact_url, url_problem
from outreach.model.config import load_settings
from outreach.model.errors import ConfigError, LedgerError

SECRET = "Zq9-sEcReT"
ROW = "c001,Ana,A,ana@example.com,25/11/1980,,,,,email,es,customer,"


def _free_port() -> int:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PORT = _free_port()

# Every shape a password takes, each with a host nothing answers on.
SHAPES = {
    "userinfo": f"postgresql://outreach:{SECRET}@127.0.0.1:{PORT}/shop",
    "userinfo with delimiters": f"postgresql://outreach:a/{SECRET}@b@127.0.0.1:{PORT}/shop",
    "percent-encoded": f"postgresql://outreach:{SECRET}%21@127.0.0.1:{PORT}/shop",
    "query": f"postgresql://outreach@127.0.0.1:{PORT}/shop?password={SECRET}",
    "query among others": f"postgres://outreach@127.0.0.1:{PORT}/shop?sslmode=disable&password={SECRET}&x=1",
    "query with a stray &": f"postgresql://outreach@127.0.0.1:{PORT}/shop?password=ab&{SECRET}",
    "key=value": f"host=127.0.0.1 port={PORT} dbname=shop password={SECRET}",
    "key=value quoted": f"host=127.0.0.1 password = '{SECRET} \\' x' dbname=shop",
    "another scheme": f"mysql://outreach:{SECRET}@127.0.0.1/shop",
    "malformed port": f"postgresql://outreach:{SECRET}@127.0.0.1:port/shop",
    "unclosed [": f"postgresql://outreach:{SECRET}@[::1/shop",
    "unclosed [ in the query": f"postgresql://outreach@[::1/shop?password={SECRET}",
}


@pytest.mark.parametrize("url", SHAPES.values(), ids=SHAPES.keys())
def test_the_rule_masks_every_shape_and_never_raises(url: str) -> None:
    shown = redact_url(url)
    assert SECRET not in shown and "***" in shown
    assert has_password(url)
    assert SECRET not in redact_text(f"could not parse {url!r} here", source=url)
    # What is not a password stays, so the message still says where it went.
    assert "127.0.0.1" in shown or "::1" in shown
    url_problem(url)  # a verdict, never an exception


def test_what_holds_no_password_is_left_as_it_is() -> None:
    for url in (
        "postgresql://outreach@db.example:5432/shop?sslmode=require",
        "postgresql://db.example/shop",
        "host=db dbname=shop user=outreach",
        "postgresql://outreach@db.example/shop?options=a@b",
    ):
        assert redact_url(url) == url and not has_password(url)
    assert url_problem("postgresql://outreach@db.example:5432/shop") is None
    assert url_problem("postgresql://outreach@db.example:99999/shop") is not None


def test_a_library_that_quotes_a_piece_of_the_password_back_is_masked_too() -> None:
    url = f"postgresql://u@h/db?password=ab&{SECRET}"
    # libpq takes "ab" as the password and complains about the rest, quoting it.
    libpq = f'missing key/value separator "=" in URI query parameter: "{SECRET}"'
    assert SECRET not in redact_text(libpq, source=url)


@pytest.mark.parametrize("url", SHAPES.values(), ids=SHAPES.keys())
def test_config_refuses_a_password_in_every_shape_without_quoting_it(
    url: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    quoted = url.replace("'", "''")
    config.write_text(f"state:\n  url: '{quoted}'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    text = str(caught.value)
    assert SECRET not in text
    assert "config.yaml:2: state.url" in text
    assert "PGPASSWORD" in text


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://outreach@127.0.0.1:port/shop",
        "postgresql://outreach@[::1/shop",
        "mysql://outreach@127.0.0.1/shop",
    ],
)
def test_config_refuses_a_url_it_cannot_parse_with_a_sentence(url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"state:\n  url: '{url}'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="write postgresql://user@host/database"):
        load_settings(config)


@pytest.mark.parametrize("url", SHAPES.values(), ids=SHAPES.keys())
def test_every_way_in_to_the_server_keeps_the_password_out_of_its_errors(url: str) -> None:
    """The environment's URL as each entry point meets it: checked, connected, locked."""
    from datetime import UTC, datetime

    try:
        check_url(url, source="OUTREACH_LEDGER_URL")
    except ConfigError as exc:
        assert SECRET not in str(exc)
        assert "OUTREACH_LEDGER_URL" in str(exc)
        return
    for attempt in (
        lambda: connect(url),
        lambda: Ledger.connect(url),
        lambda: AdvisoryLock(url, scope="").acquire(now=datetime.now(UTC)),
    ):
        with pytest.raises(LedgerError) as caught:
            attempt()
        assert SECRET not in str(caught.value) and "cannot" in str(caught.value)


# -- the CLI's every channel ---------------------------------------------------------------

# One of each failure path: the server unreachable, a string refused, a URL that cannot be parsed.
CLI_SHAPES = ["query", "key=value", "unclosed ["]


def _outputs(ws: Workspace, *args: str, env: dict[str, str]) -> tuple[int, str]:
    """Exit code, and everything the command wrote anywhere: stdout, stderr, its log file."""
    log = ws.root / "cli.log"
    log.unlink(missing_ok=True)
    result = ws.run(*args, "--log-file", str(log), env=env)
    written = log.read_text(encoding="utf-8") if log.exists() else ""
    return result.code, result.out + result.err + written


@pytest.mark.parametrize("shape", CLI_SHAPES)
def test_no_output_channel_of_a_failing_command_shows_the_password(
    shape: str, make_workspace: Callable[..., Workspace]
) -> None:
    ws = make_workspace([ROW], config_extra='schedule:\n  - {campaigns: all, at: "00:00"}\n')
    env = {"OUTREACH_LEDGER_URL": SHAPES[shape]}
    for args in (("run", "--all", "--json"), ("daemon", "--once")):
        code, everything = _outputs(ws, *args, env=env)
        assert code == 2, everything
        assert SECRET not in everything, everything
        assert "Traceback" not in everything and "***" in everything, everything
    history = ws.run("history", "--json", env=env)
    assert history.code == 2 and SECRET not in history.out + history.err
    copy = ws.run("ledger", "copy", "--to", SHAPES[shape])
    assert copy.code == 2 and SECRET not in copy.out + copy.err, copy.out + copy.err
    assert "Traceback" not in copy.err


def test_a_password_in_config_is_refused_on_every_channel(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace([ROW], config_extra=f"state:\n  url: '{SHAPES['query among others']}'\n")
    code, everything = _outputs(ws, "run", "--all", "--json", env={})
    assert code == 2 and SECRET not in everything and "PGPASSWORD" in everything, everything
