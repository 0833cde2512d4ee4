"""The bounce benchmark: 10,000 bounce messages in a Maildir read by `outreach bounces`.

    .venv/bin/python benchmarks/bounces.py [--messages 10000] [--work DIR] [--seed 1]

It writes a workspace of as many contacts as messages, a ledger that has emailed every one of
them (through `Ledger.record`, with the Message-IDs outreach gives them), and a Maildir of
bounces made from the real-world samples in tests/data/bounces: per contact one of Postfix
(40 %), Exim, qmail, Exchange, Yahoo (10 % each), a delay warning (10 %), a vacation
auto-reply (5 %) and an abuse report (5 %), each delivered to the contact's VERP return path. Then it
times the real CLI as a subprocess, `outreach bounces --json` (target: 500 messages/s), and a
second reading of the same mail moved back into new/ (every message already read: the
ledger must not change). Peak resident memory comes from wait4(2) on that child alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.ledger import Ledger, MessageRecord  # noqa: E402
from outreach.render.email import message_id_for  # noqa: E402

SAMPLES = ROOT / "tests" / "data" / "bounces"
SECRET = "bench-secret"
RUN_DATE = date(2026, 11, 23)
# sample file → (its contact's address and Message-ID digest in the file), share of messages
MIX = [
    ("postfix-hard.eml", "ana@example.com", "0574cd0930cc35256512d8e8f3a5a3ec", 40),
    ("exim-hard.eml", "bruno@example.net", "b302da8fb7290ffa3c2a11d6d2d76f8c", 10),
    ("qmail-hard.eml", "carla@example.org", "3ecaaa57b5f06619fc606c5ae347990d", 10),
    ("exchange-hard.eml", "dario@contoso.example", "633945e6ed272804216697fa918e1ec7", 10),
    ("yahoo-hard.eml", "elena@yahoo.com", "fa1a47fcb19f785bf402a9da14aa9fc0", 10),
    ("postfix-delayed.eml", "hugo@example.org", "9fd92fecb2fac6544c9fd19890acc0b1", 10),
    ("vacation.eml", "fede@example.com", "78f249b6463222ab9c609d219d372261", 5),
    ("arf-complaint.eml", "gema@example.com", "591408c4159e58b28c86edb6008bdd2e", 5),
]
CONFIG = f"""\
sender: {{name: "Casa Lucía", email: hola@casalucia.example}}
coupon: {{secret: {SECRET}}}
bounces:
  maildir: Maildir
  return_path: "rebotes+{{token}}@casalucia.example"
"""


def write_workspace(root: Path, n: int, seed: int) -> None:
    """Config, contacts, a ledger that emailed each of them, and a Maildir of n bounces."""
    from outreach.feedback.verp import verp_token

    (root / "campaigns").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "config.yaml").write_text(CONFIG, encoding="utf-8")
    lines = ["id,first_name,email"]
    records = []
    stamp = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    ids = []
    for i in range(n):
        contact = f"c{i:06d}"
        address = f"user{i:06d}@example.com"
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
    maildir = root / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    samples = [(SAMPLES / f).read_bytes() for f, _, _, _ in MIX]
    weights = [w for _, _, _, w in MIX]
    rng = random.Random(seed)
    for i, (_, address, mid) in enumerate(ids):
        which = rng.choices(range(len(MIX)), weights=weights)[0]
        name, old_address, old_digest, _ = MIX[which]
        data = samples[which].replace(old_address.encode(), address.encode())
        data = data.replace(old_digest.encode(), mid.partition("@")[0].encode())
        # Each bounce has its own Message-ID, as real ones do.
        data = data.replace(b"Message-Id: <2026", f"Message-Id: <{i}.2026".encode())
        data = data.replace(b"Message-ID: <", f"Message-ID: <{i}.".encode(), 1)
        # With VERP configured only the token counts: every report comes back through it
        # (Postfix's in X-Original-To, the others' in a Delivered-To line of their own).
        token = verp_token(secret=SECRET, message_id=mid)
        if name == "postfix-hard.eml":
            data = data.replace(
                b"X-Original-To: hola@casalucia.example",
                f"X-Original-To: rebotes+{token}@casalucia.example".encode(),
            )
        else:
            data = f"Delivered-To: rebotes+{token}@casalucia.example\n".encode() + data
        (maildir / "new" / f"1795511703.M{i}P1.bench").write_bytes(data)


def measure(command: list[str], cwd: Path) -> tuple[float, float, str, int]:
    """Wall seconds, peak RSS (MB) of that child alone, its stdout, its exit code."""
    out = cwd / ".bench-stdout"
    with open(out, "wb") as handle:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, stdout=handle, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    text = out.read_text(encoding="utf-8", errors="replace")
    out.unlink()
    return seconds, usage.ru_maxrss / 1024, text, os.waitstatus_to_exitcode(status)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="outreach-bounces-"))
    ws = work / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    started = time.perf_counter()
    write_workspace(ws, args.messages, args.seed)
    print(
        f"workspace: {args.messages} contacts, ledger and Maildir in {time.perf_counter() - started:.1f} s"
    )
    command = [sys.executable, "-m", "outreach", "bounces", "--json", "--date", "2026-11-24"]
    seconds, peak, text, code = measure(command, ws)
    report = json.loads(text)
    kinds: dict[str, int] = {}
    for message in report["messages"]:
        kinds[message["kind"]] = kinds.get(message["kind"], 0) + 1
    n = len(report["messages"])
    print(
        f"first reading: {n} messages in {seconds:.2f} s = {n / seconds:,.0f} messages/s, "
        f"peak RSS {peak:.0f} MB, exit {code}"
    )
    print(f"  kinds: {dict(sorted(kinds.items()))}; blocked: {len(report['blocked'])}")
    processed = ws / "Maildir" / ".outreach-processed" / "cur"
    for path in processed.iterdir():
        path.rename(ws / "Maildir" / "new" / path.name.removesuffix(":2,S"))
    seconds, peak, text, code = measure(command, ws)
    again = json.loads(text)
    same = all(m["action"] == "already read" for m in again["messages"])
    print(
        f"second reading (all already read: {same}): {len(again['messages'])} messages in "
        f"{seconds:.2f} s = {len(again['messages']) / seconds:,.0f} messages/s, peak RSS {peak:.0f} MB"
    )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
