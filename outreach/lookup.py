"""Contacts by id, as `explain` and `plan` look them up, and how a contact is named to people."""

from __future__ import annotations

from outreach.contacts import Contact
from outreach.i18n import _, ngettext
from outreach.model.errors import ContactsError, Problem
from outreach.workspace import Workspace


def find_contact(workspace: Workspace, contact_id: str) -> Contact | None:
    """The usable contact with this id (case ignored, as the reader does), or None."""
    contacts = workspace.contacts.contacts
    found = next((c for c in contacts if c.id == contact_id), None)
    if found is None:
        folded = contact_id.casefold()
        found = next((c for c in contacts if c.id.casefold() == folded), None)
    return found


def row_problems(workspace: Workspace, contact_id: str) -> tuple[Problem, ...]:
    """The contacts file's problems that name this contact id."""
    folded = contact_id.casefold()
    return tuple(
        p
        for p in workspace.contacts.problems
        if p.contact_id is not None and p.contact_id.casefold() == folded
    )


def unknown_contact(workspace: Workspace, contact_id: str, *, known_messages: int) -> ContactsError:
    """The error for an id that is not a contact in the file (and not a held-back row)."""
    path = workspace.contacts.path
    if known_messages:
        hint = ngettext(
            "the ledger has {n} message for that id, so it was a contact once: see "
            "`outreach history --contact {contact_id}`",
            "the ledger has {n} messages for that id, so it was a contact once: see "
            "`outreach history --contact {contact_id}`",
            known_messages,
        ).format(n=known_messages, contact_id=contact_id)
    else:
        sample = ", ".join(c.id for c in workspace.contacts.contacts[:3])
        hint = (
            _("check the id (ids in the file look like {sample})").format(sample=sample)
            if sample
            else _("check the id")
        )
    return ContactsError(
        _("no contact {contact_id} in the contacts file").format(contact_id=repr(contact_id)),
        path=path,
        hint=hint,
    )


def contact_label(contact: Contact, path: object) -> str:
    """`c1 Ana García <ana@example.com> (contacts.csv line 2)`."""
    name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
    parts = [contact.id]
    if name:
        parts.append(name)
    parts.append(f"<{contact.email}>" if contact.email else _("(no email)"))
    return _("{contact} ({path} line {line})").format(
        contact=" ".join(parts), path=path, line=contact.line
    )


def not_a_contact(workspace: Workspace, contact_id: str) -> ContactsError:
    held = row_problems(workspace, contact_id)
    if held:
        return ContactsError(
            _("contact {contact_id} is held back: {held}").format(
                contact_id=repr(contact_id), held=held[0]
            ),
            path=workspace.contacts.path,
            hint=_("fix that row in the contacts file; see `outreach validate`"),
        )
    return unknown_contact(workspace, contact_id, known_messages=0)
