"""Every email the sample workspace makes scores below 1.0 under Debian's SpamAssassin.

One sample run, then one `spamassassin -L --mbox` over all its emails (local tests only: no
network, no Bayes, no user preferences): one process reads the rules once, which costs about
4 s of CPU against 1.6 s per message for a process each. The hidden preheader written with a
1px font in the background's colour scored 1.7 (HTML_FONT_LOW_CONTRAST, FONT_INVIS_MSGID).
"""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import Workspace

SAMPLE_DATE = "2026-11-24"
LIMIT = 1.0
_STATUS = re.compile(r"^X-Spam-Status: \w+, score=(-?[\d.]+) [^\n]*(?:\n\s[^\n]*)*", re.M)


def _mbox(ws: Workspace) -> tuple[bytes, list[str]]:
    """The outbox's emails as one mbox (LF lines, `From ` lines quoted) and their names."""
    names, parts = [], []
    for path in ws.files("out/outbox"):
        data = path.read_bytes().replace(b"\r\n", b"\n")
        data = re.sub(rb"^(>*From )", rb">\1", data, flags=re.M)
        parts.append(b"From outreach@localhost Tue Nov 24 10:00:00 2026\n" + data + b"\n")
        names.append(str(path.relative_to(ws.root)))
    return b"".join(parts), names


@pytest.mark.slow
def test_every_sample_email_scores_below_one(sample_workspace: Workspace) -> None:
    result = sample_workspace.run("run", "--all", "--date", SAMPLE_DATE, "--quiet")
    assert result.code == 0, result.err
    mbox, names = _mbox(sample_workspace)
    assert len(names) >= 10  # birthdays, the promotion and the reminders of that day
    assert any(b"text/html" in part for part in mbox.split(b"\nFrom outreach@"))
    checked = subprocess.run(
        [
            "spamassassin",
            "-L",  # local tests only
            "-x",  # no user preferences file
            "--cf=use_bayes 0",
            "--cf=bayes_auto_learn 0",
            "--mbox",
        ],
        input=mbox,
        capture_output=True,
        check=True,
        timeout=600,
    )
    # In the order of the mbox: one X-Spam-Status per email, its score first.
    statuses = list(_STATUS.finditer(checked.stdout.decode("utf-8", "replace")))
    assert len(statuses) == len(names), checked.stderr.decode()
    too_high = [
        f"{name}: {status.group(0)}"
        for name, status in zip(names, statuses, strict=True)
        if float(status.group(1)) >= LIMIT
    ]
    assert not too_high, "\n".join(too_high)
