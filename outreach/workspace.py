"""A workspace loaded once: settings, contacts and campaigns, ready for a run."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from outreach.i18n import _
from outreach.model.config import Basics, Settings, find_config, load_settings
from outreach.model.errors import CampaignError

# The contacts reader and the campaign models are imported where they are used: `redeem`
# (a till, every few minutes) loads this module and needs neither for most codes.
if TYPE_CHECKING:
    from outreach.contacts import ContactList, ContactStream
    from outreach.model.campaigns import Campaign


def display_path(path: Path) -> Path:
    """A path as the user would type it: relative to the current folder when inside it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


class Workspace:
    """Everything a command needs from the workspace's files.

    The contacts are read when first needed: a run streams them (`stream_contacts`) and so
    never holds them all; commands that look contacts up use the whole list (`contacts`).
    """

    __slots__ = ("_contacts", "campaigns", "settings")

    def __init__(
        self,
        settings: Settings,
        contacts: ContactList | None = None,
        campaigns: tuple[Campaign, ...] = (),
    ) -> None:
        self.settings = settings
        self.campaigns = campaigns
        self._contacts = contacts

    def __repr__(self) -> str:
        return f"Workspace(settings={self.settings!r}, campaigns={self.campaigns!r})"

    @property
    def contacts(self) -> ContactList:
        """Every contact and problem of the contacts file (read once, on first use)."""
        if self._contacts is None:
            from outreach.contacts import load_contacts

            self._contacts = load_contacts(
                display_path(self.settings.contacts_path),
                settings=self.settings.contacts,
                default_locale=self.settings.default_locale,
            )
        return self._contacts

    def stream_contacts(self) -> ContactStream:
        """The contacts one at a time as the file is read (from the list, if read already)."""
        from outreach.contacts import ContactStream, iter_contacts

        if self._contacts is not None:
            return ContactStream.of(self._contacts)
        return iter_contacts(
            display_path(self.settings.contacts_path),
            settings=self.settings.contacts,
            default_locale=self.settings.default_locale,
        )


def campaign_files(settings: Basics) -> list[Path]:
    """Every campaign file in the campaigns folder, in name order."""
    folder = settings.campaigns_dir
    if not folder.is_dir():
        raise CampaignError(
            _("campaigns folder not found"),
            path=folder,
            hint=_("create it, or set paths.campaigns in config.yaml"),
        )
    return sorted(display_path(p) for p in [*folder.glob("*.yaml"), *folder.glob("*.yml")])


def resolve_campaign_args(settings: Settings, names: list[str]) -> list[Path]:
    """Campaign arguments as paths: a file path, or a name in the campaigns folder."""
    paths = []
    for name in names:
        given = Path(name)
        candidates = [given, settings.campaigns_dir / name, settings.campaigns_dir / f"{name}.yaml"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            known = ", ".join(p.stem for p in campaign_files(settings)) or "none"
            raise CampaignError(
                _("no campaign {name}").format(name=repr(name)),
                path=settings.campaigns_dir,
                hint=_("campaigns here: {known}").format(known=known),
            )
        paths.append(found)
    return paths


def load_workspace(config: Path | None, *, campaigns: list[str] | None = None) -> Workspace:
    """Load config and the chosen campaigns (all when `campaigns` is None or empty); the
    contacts are read when first needed."""
    from outreach.model.campaigns import load_campaigns

    settings = load_settings(find_config(config))
    paths = resolve_campaign_args(settings, campaigns) if campaigns else campaign_files(settings)
    loaded = load_campaigns(paths, templates_dir=settings.templates_dir)
    return Workspace(settings=settings, campaigns=tuple(loaded))


class CampaignTerms(Mapping[str, "Campaign"]):
    """The workspace's campaigns by name, read when first asked for and for their terms only
    (keys, kind, dates: `load_campaigns(terms_only=True)`): `redeem` needs the kind and end of
    the one campaign of the code it checks, not the whole folder validated with its templates.

    A campaign is looked for in its own file (`<name>.yaml`) first; one whose `name:` differs
    from its file's is found by reading every campaign file (names must be unique).
    """

    __slots__ = ("_every", "_found", "_settings")

    def __init__(self, settings: Basics) -> None:
        self._settings = settings
        self._found: dict[str, Campaign] = {}
        self._every: dict[str, Campaign] | None = None

    def _all(self) -> dict[str, Campaign]:
        from outreach.model.campaigns import load_campaigns

        if self._every is None:
            paths = campaign_files(self._settings)
            loaded = load_campaigns(
                paths, templates_dir=self._settings.templates_dir, terms_only=True
            )
            self._every = {c.name: c for c in loaded}
        return self._every

    def __getitem__(self, name: str) -> Campaign:
        from outreach.model.campaigns import load_campaigns

        if name in self._found:
            return self._found[name]
        folder = self._settings.campaigns_dir
        for path in (folder / f"{name}.yaml", folder / f"{name}.yml"):
            if self._every is None and path.is_file():
                (campaign,) = load_campaigns(
                    [display_path(path)],
                    templates_dir=self._settings.templates_dir,
                    terms_only=True,
                )
                if campaign.name == name:
                    self._found[name] = campaign
                    return campaign
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())
