"""The replies benchmark: 10,000 mixed messages (bounces and people's replies) read by
`outreach bounces` from a bounce Maildir and a read-only replies Maildir.

    .venv/bin/python benchmarks/replies.py [--messages 10000] [--work DIR] [--seed 1]

It writes a workspace of as many contacts as messages and a ledger that has emailed every one
of them (through `Ledger.record`, with the Message-IDs outreach gives them). Each contact then
answers once: half of them with a bounce from the real-world samples of tests/data/bounces
(back through its VERP return path) into the bounce Maildir, half with a reply from the
corpus of tests/data/replies (In-Reply-To its Message-ID, from its address) into the replies
Maildir, which is the owner's inbox: read, never changed. It times the real CLI as a
subprocess, `outreach bounces --json` (target: 500 messages/s), and a second reading (every
message already read). Peak resident memory comes from wait4(2) on that child alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.feedback.verp import verp_token  # noqa: E402
from outreach.ledger import Ledger, MessageRecord  # noqa: E402
from outreach.render.email import message_id_for  # noqa: E402

BOUNCES = ROOT / "tests" / "data" / "bounces"
REPLIES = ROOT / "tests" / "data" / "replies"
SECRET = "bench-secret"
RUN_DATE = date(2026, 11, 23)
# sample → (the address and Message-ID digest it holds)
SAMPLES = [
    ("postfix-hard.eml", "ana@example.com", "0574cd0930cc35256512d8e8f3a5a3ec"),
    ("exim-hard.eml", "bruno@example.net", "b302da8fb7290ffa3c2a11d6d2d76f8c"),
    ("qmail-hard.eml", "carla@example.org", "3ecaaa57b5f06619fc606c5ae347990d"),
    ("exchange-hard.eml", "dario@contoso.example", "633945e6ed272804216697fa918e1ec7"),
    ("yahoo-hard.eml", "elena@yahoo.com", "fa1a47fcb19f785bf402a9da14aa9fc0"),
    ("postfix-delayed.eml", "hugo@example.org", "9fd92fecb2fac6544c9fd19890acc0b1"),
    ("vacation.eml", "fede@example.com", "78f249b6463222ab9c609d219d372261"),
    ("arf-complaint.eml", "gema@example.com", "591408c4159e58b28c86edb6008bdd2e"),
]
CONFIG = f"""\
sender: {{name: "Casa Lucía", email: hola@casalucia.example}}
coupon: {{secret: {SECRET}}}
unsubscribe: {{mailto: baja@casalucia.example}}
bounces:
  maildir: Maildir
  return_path: "rebotes+{{token}}@casalucia.example"
replies:
  maildir: Inbox
"""
_FROM = re.compile(rb"^From: [^\n]*$", re.M)
_IDS = re.compile(rb"^(In-Reply-To|References|Message-ID): [^\n]*$", re.M)


def _ledger(root: Path, n: int) -> list[tuple[str, str, str]]:
    """Contacts file and a ledger that emailed each of them; (id, address, Message-ID) each."""
    lines = ["id,first_name,email"]
    records, ids = [], []
    stamp = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    for i in range(n):
        contact, address = f"c{i:06d}", f"user{i:06d}@example.com"
        lines.append(f"{contact},User,{address}")
        mid = message_id_for(
            contact_id=contact,
            campaign="promo",
            occurrence_key="promotion",
            domain="casalucia.example",
        )
        ids.append((contact, address, mid))
        records.append(
            MessageRecord(
                contact_id=contact,
                campaign="promo",
                occurrence_key="promotion",
                channel="email",
                status="sent",
                run_date=RUN_DATE,
                message_id=mid,
                updated_at=stamp,
            )
        )
    (root / "contacts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with Ledger.open(root / "state" / "ledger.sqlite") as ledger:
        ledger.record(records)
    return ids


def write_workspace(root: Path, n: int, seed: int) -> None:
    """Config, contacts, the ledger, a bounce Maildir and a replies Maildir: n messages."""
    (root / "campaigns").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "config.yaml").write_text(CONFIG, encoding="utf-8")
    ids = _ledger(root, n)
    for box in ("Maildir", "Inbox"):
        for sub in ("new", "cur", "tmp"):
            (root / box / sub).mkdir(parents=True)
    bounces = [(BOUNCES / f).read_bytes() for f, _, _ in SAMPLES]
    replies = [p.read_bytes() for p in sorted(REPLIES.glob("*.eml"))]
    rng = random.Random(seed)
    for i, (_, address, mid) in enumerate(ids):
        if i % 2 == 0:
            which = rng.randrange(len(SAMPLES))
            _, old_address, old_digest = SAMPLES[which]
            data = bounces[which].replace(old_address.encode(), address.encode())
            data = data.replace(old_digest.encode(), mid.partition("@")[0].encode())
            data = data.replace(b"Message-ID: <", f"Message-ID: <{i}.".encode(), 1)
            token = verp_token(secret=SECRET, message_id=mid)
            data = f"Delivered-To: rebotes+{token}@casalucia.example\n".encode() + data
            (root / "Maildir" / "new" / f"1795511703.M{i}P1.bench").write_bytes(data)
        else:
            data = _FROM.sub(f"From: User <{address}>".encode(), rng.choice(replies), count=1)
            data = _IDS.sub(b"", data)
            data = f"Message-ID: <r{i}@mail.example>\nIn-Reply-To: <{mid}>\n".encode() + data
            (root / "Inbox" / "new" / f"1795511703.M{i}P1.bench").write_bytes(data)


def measure(command: list[str], cwd: Path) -> tuple[float, float, float, str, int]:
    """Wall seconds, CPU seconds and peak RSS (MB) of that child alone, its stdout, its exit
    code (CPU time says what wall time cannot on a busy machine)."""
    out = cwd / ".bench-stdout"
    with open(out, "wb") as handle:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, stdout=handle, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    text = out.read_text(encoding="utf-8", errors="replace")
    out.unlink()
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, usage.ru_maxrss / 1024, text, os.waitstatus_to_exitcode(status)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="outreach-replies-"))
    ws = work / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    started = time.perf_counter()
    write_workspace(ws, args.messages, args.seed)
    print(
        f"workspace: {args.messages} contacts and messages in {time.perf_counter() - started:.1f} s"
    )
    command = [sys.executable, "-m", "outreach", "bounces", "--json", "--date", "2026-11-24"]
    n = args.messages
    seconds, cpu, peak, text, code = measure(command, ws)
    report = json.loads(text)
    kinds: dict[str, int] = {}
    for message in report["messages"]:
        kinds[message["kind"]] = kinds.get(message["kind"], 0) + 1
    print(
        f"first reading: {n} messages in {seconds:.2f} s = {n / seconds:,.0f} messages/s, "
        f"{cpu:.2f} s of CPU ({n / cpu:,.0f} messages per CPU second), peak RSS {peak:.0f} MB, "
        f"exit {code}, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"  kinds: {dict(sorted(kinds.items()))}; blocked {len(report['blocked'])}, "
        f"suppressed {len(report['suppressed'])}, not ours {report['not_ours']}"
    )
    seconds, cpu, peak, text, code = measure(command, ws)
    again = json.loads(text)
    print(
        f"second reading: {n // 2} replies read again ({len(again['messages'])} reported) in "
        f"{seconds:.2f} s = {(n // 2) / seconds:,.0f} messages/s, {cpu:.2f} s of CPU, "
        f"peak RSS {peak:.0f} MB, exit {code}"
    )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
