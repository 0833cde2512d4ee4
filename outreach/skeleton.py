"""`outreach init`: a new workspace, written from the skeleton packaged with outreach.

The skeleton (outreach/skeleton/) holds a config, a few contacts, the three sample campaigns and
their templates. A few values are filled in at init: the coupon secret (new for every
workspace), the promotion's dates (about the coming month, so the first run has something to
do on any day of the year) and one contact's appointment (tomorrow, so the reminder shows too).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import date, timedelta
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from outreach.i18n import _
from outreach.model.errors import OutreachError

SKELETON_PACKAGE = "outreach"
SKELETON_FOLDER = "skeleton"
PROMOTION_DAYS = 30


def _walk(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.startswith((".", "__")):
            continue  # __pycache__ and editor leftovers are not part of the skeleton
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            yield from _walk(entry, f"{name}/")
        else:
            yield name, entry


def skeleton_files() -> list[str]:
    """The skeleton's files, as paths relative to a workspace (with `/`)."""
    return [name for name, _ in _walk(files(SKELETON_PACKAGE) / SKELETON_FOLDER)]


def existing_files(target: Path) -> list[Path]:
    """The skeleton files that already exist in `target` (what init would overwrite)."""
    return [target / name for name in skeleton_files() if (target / name).exists()]


def placeholders(*, today: date, coupon_secret: str) -> dict[str, str]:
    """The values filled into the skeleton at init."""
    return {
        "@COUPON_SECRET@": coupon_secret,
        # A day early: the first run finds the promotion open whatever the machine's time zone.
        "@START@": (today - timedelta(days=1)).isoformat(),
        "@END@": (today + timedelta(days=PROMOTION_DAYS)).isoformat(),
        "@APPOINTMENT@": (today + timedelta(days=1)).isoformat(),
    }


def create_workspace(
    target: Path, *, today: date, force: bool = False, coupon_secret: str | None = None
) -> list[Path]:
    """Write the skeleton into `target` (created if missing); return the files written.

    Raises OutreachError, writing nothing, when some of the files exist and `force` is not set.
    Files that are not part of the skeleton (out/, state/, anything else) are never touched.
    """
    if target.exists() and not target.is_dir():
        raise OutreachError(
            _("exists and is not a folder"), path=target, hint=_("name a new or existing folder")
        )
    clashes = existing_files(target)
    if clashes and not force:
        listed = "\n".join(f"  {path}" for path in clashes)
        raise OutreachError(
            _("these files already exist:\n{listed}\n").format(listed=listed),
            path=target,
            hint=_(
                "choose another folder, or add --force to overwrite them (other files, "
                "out/ and state/ are left alone)"
            ),
        )
    values = placeholders(today=today, coupon_secret=coupon_secret or secrets.token_hex(16))
    written = []
    try:
        for name, source in _walk(files(SKELETON_PACKAGE) / SKELETON_FOLDER):
            text = source.read_bytes().decode("utf-8")
            for token, value in values.items():
                text = text.replace(token, value)
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
            written.append(path)
    except OSError as exc:
        raise OutreachError(
            _("cannot write the workspace: {strerror}").format(strerror=exc.strerror),
            path=exc.filename or target,
            hint=_("check that the folder is writable"),
        ) from None
    return written
