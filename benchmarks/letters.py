"""Letters benchmark: N one-page letters through the batch printer, and a naive loop beside it.

    .venv/bin/python benchmarks/letters.py [--n 2000] [--naive 100] [--workers 2]

Prints letters per second and the peak resident memory of all processes together (this one
and its workers, sampled from /proc). The naive loop makes one WeasyPrint document per letter
(parsing the stylesheet each time, as a straightforward script would) on `--naive` letters and
extrapolates to N. Target on a 2-core machine: >= 35 letters/s, peak RSS <= 1 GB.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.campaigns import Campaign, LetterSpec, Occurrence  # noqa: E402
from outreach.config import load_settings  # noqa: E402
from outreach.contacts import Contact  # noqa: E402
from outreach.deliver.printing import harfbuzz_subset_available, write_batch  # noqa: E402
from outreach.render.letter import LetterRenderer  # noqa: E402

CONFIG = """\
sender:
  name: "Casa Lucía"
  email: hola@casalucia.example
  address:
    street: Calle de la Cava Baja, 12
    postal_code: "28005"
    city: Madrid
    country: ES
  phone: "+34 913 000 000"
  website: https://casalucia.example
  signature: Lucía Fernández
  signature_image: signature.png
locale: es
letters:
  envelope: din5008-b
"""
FIRST = ["María", "José", "Lucía", "Carmen", "Javier", "Ana", "Pablo", "Elena", "Íñigo", "Nuria"]
LAST = ["López García", "Martín", "Sánchez Ruiz", "Fernández", "Gómez de la Vega", "Díaz"]
STREETS = ["Calle de Alcalá", "Calle Mayor", "Paseo de la Castellana", "Calle de Toledo"]


def _page_kib() -> int:
    return os.sysconf("SC_PAGE_SIZE") // 1024


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def _tree_rss_kib(root: int) -> int:
    tree = _children()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(tree.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * _page_kib()
        except OSError:
            continue
    return total


class PeakMemory:
    """Samples the resident memory of this process and all its descendants."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _tree_rss_kib(os.getpid()))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_workspace(folder: Path) -> Path:
    """A workspace with the sample birthday letter and signature."""
    (folder / "templates").mkdir(parents=True)
    for name in ("birthday_letter.html.j2", "signature.png"):
        shutil.copy(ROOT / "templates" / name, folder / "templates" / name)
    (folder / "config.yaml").write_text(CONFIG, encoding="utf-8")
    return folder / "config.yaml"


def make_contacts(count: int) -> list[Contact]:
    """Contacts with plausible Spanish addresses, in no particular postal order."""
    return [
        Contact(
            id=f"c{i:06d}",
            line=i + 2,
            first_name=FIRST[i % len(FIRST)],
            last_name=LAST[i % len(LAST)],
            street=f"{STREETS[i % len(STREETS)]}, {i % 200 + 1}",
            postal_code=f"{28001 + (i * 7919) % 80:05d}",
            city="Madrid",
            country="ES",
            locale="es",
        )
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="letters in the batch")
    parser.add_argument("--naive", type=int, default=100, help="letters for the naive loop")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(make_workspace(Path(tmp) / "ws"))
        campaign = Campaign(
            name="birthday",
            kind="birthday",
            path=Path(tmp) / "ws" / "campaigns" / "birthday.yaml",
            channel="letter",
            letter=LetterSpec(template="birthday_letter.html.j2", subject="Feliz cumpleaños"),
        )
        today = date(2026, 11, 24)
        occurrence = Occurrence(
            campaign="birthday",
            key="birthday:2026",
            date=date(2026, 11, 26),
            earliest=date(2026, 11, 23),
            latest=date(2026, 11, 26),
            age=40,
        )
        print(f"HarfBuzz subsetter: {'yes' if harfbuzz_subset_available() else 'MISSING'}")
        with PeakMemory() as memory:
            start = time.perf_counter()
            renderer = LetterRenderer(
                settings=settings, campaign=campaign, today=today, now=datetime(2026, 11, 24, 9)
            )
            letters = [renderer.render(c, occurrence) for c in make_contacts(args.n)]
            rendered = time.perf_counter()
            result = write_batch(
                letters=letters,
                out_dir=Path(tmp) / "ws" / "out",
                run_date=today,
                campaign="birthday",
                duplex=False,
                sort_by_postal_code=True,
                split=False,
                workers=args.workers,
            )
            elapsed = time.perf_counter() - start
        assert not result.failures, result.failures[:3]
        assert result.pages == args.n, (result.pages, args.n)
        size = result.pdf_path.stat().st_size if result.pdf_path else 0
        print(
            f"batch: {args.n} letters in {elapsed:.1f} s = {args.n / elapsed:.1f} letters/s "
            f"(templates {rendered - start:.1f} s), {result.pages} pages, "
            f"{size / 2**20:.1f} MiB PDF"
        )
        print(f"peak RSS, all processes together: {memory.peak_kib / 1024:.0f} MiB")
        self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(
            f"  (getrusage: this process {self_kib / 1024:.0f} MiB; its largest waited-for "
            f"child {child_kib / 1024:.0f} MiB, the forkserver, which reaps the workers itself)"
        )

        if args.naive:
            naive_letters = letters[: args.naive]
            from weasyprint import CSS, HTML

            folder = Path(tmp) / "naive"
            folder.mkdir()
            start = time.perf_counter()
            for letter in naive_letters:
                layout = letter.layout
                HTML(string=letter.html, base_url=layout.base_dir.as_uri() + "/").write_pdf(
                    folder / f"{letter.contact_id}.pdf",
                    stylesheets=[CSS(string=text) for text in layout.stylesheets],
                )
            naive = time.perf_counter() - start
            rate = len(naive_letters) / naive
            print(
                f"naive loop (one document per letter, one process): {rate:.1f} letters/s on "
                f"{len(naive_letters)} letters, so about {args.n / rate:.0f} s for {args.n}"
            )


if __name__ == "__main__":
    main()
