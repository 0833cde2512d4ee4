"""`outreach doctor`: what a receiving server will conclude about the sender's domain.

It looks up, with a real resolver (dnspython), the SPF record of the return path's domain
(the envelope sender, which SPF checks), the DKIM key at `selector._domainkey.domain`, and
the DMARC record of the From domain, and says whether DMARC passes: a DKIM signature or an
SPF pass whose domain is aligned with From's (the same organizational domain under relaxed
alignment, the very same domain under strict). For what is missing it gives the TXT record
to publish. Offline it says it could not look; it never guesses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import dns.exception
import dns.resolver

from outreach.deliver.alignment import aligned, domain_of, organizational_domain
from outreach.deliver.dkim import DkimKey
from outreach.i18n import N_, _
from outreach.model.config import Settings

# Ask this server ("ADDRESS" or "ADDRESS:PORT", an IPv4 address) instead of the system's.
DNS_SERVER_ENV: Final = "OUTREACH_DNS_SERVER"
LIFETIME_S: Final = 5.0
# A finding's status as `describe` says it (the --json status stays the code).
STATUS_WORDS: Final = {
    "ok": N_("ok"),
    "missing": N_("missing"),
    "wrong": N_("wrong"),
    "unknown": N_("unknown"),
}


class DnsUnavailableError(Exception):
    """No DNS server answered (offline, no resolver configured)."""


def make_resolver(environ: Mapping[str, str]) -> dns.resolver.Resolver:
    """The system's resolver, or the server named in OUTREACH_DNS_SERVER; short timeouts."""
    server = environ.get(DNS_SERVER_ENV, "").strip()
    if server:
        host, _colon, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = int(port) if port else 53
    else:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            resolver = dns.resolver.Resolver(configure=False)  # no servers: "could not look"
    resolver.lifetime = LIFETIME_S
    resolver.timeout = LIFETIME_S / 2
    return resolver


def txt_records(resolver: dns.resolver.Resolver, name: str) -> tuple[str, ...]:
    """The TXT records at `name` (each one's strings joined); () when there are none."""
    if not resolver.nameservers:
        raise DnsUnavailableError(_("no DNS server is configured"))
    try:
        answer = resolver.resolve(name, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return ()
    except (dns.resolver.NoNameservers, dns.exception.Timeout, OSError) as exc:
        raise DnsUnavailableError(str(exc) or type(exc).__name__) from None
    return tuple(b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer)


def tags(record: str) -> dict[str, str]:
    """A DKIM or DMARC record's tags (`v=DMARC1; p=none` → {'v': 'DMARC1', 'p': 'none'})."""
    found: dict[str, str] = {}
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            found[name.strip().lower()] = "".join(value.split())
    return found


def published_key(resolver: dns.resolver.Resolver, key: DkimKey) -> str | None:
    """The p= of the DKIM record at the key's selector ('' revoked), None if there is none."""
    for record in txt_records(resolver, key.record_name):
        values = tags(record)
        if "p" in values and values.get("v", "DKIM1") == "DKIM1":
            return values["p"]
    return None


@dataclass(frozen=True, slots=True)
class Finding:
    """One check in words: ok, missing or wrong; and the record to publish, if any."""

    check: str  # spf | dkim | dmarc
    domain: str
    status: str  # ok | missing | wrong | unknown
    message: str
    add_name: str | None = None  # the TXT record to publish: its name and its text
    add_text: str | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "check": self.check,
            "domain": self.domain,
            "status": self.status,
            "message": self.message,
            "add": None if self.add_name is None else {"name": self.add_name, "txt": self.add_text},
        }


@dataclass(frozen=True, slots=True)
class DoctorReport:
    """Every finding, and what a receiver concludes (DMARC pass or fail, or not known)."""

    from_domain: str
    return_path_domain: str
    looked: bool  # False: no DNS server answered
    findings: tuple[Finding, ...] = ()
    dmarc_pass: bool | None = None
    conclusion: str = ""
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "from_domain": self.from_domain,
            "return_path_domain": self.return_path_domain,
            "looked": self.looked,
            "dmarc_pass": self.dmarc_pass,
            "conclusion": self.conclusion,
            "findings": [f.as_dict() for f in self.findings],
            "notes": list(self.notes),
        }


def return_path_domain(settings: Settings) -> str:
    """The envelope sender's domain: the VERP return path's, else From's."""
    verp = settings.bounces.return_path
    return domain_of(verp) if verp else domain_of(settings.sender.email)


def examine(
    settings: Settings, *, resolver: dns.resolver.Resolver, key: DkimKey | None
) -> DoctorReport:
    """Look the sender's records up and say what a receiver will conclude."""
    from_domain = domain_of(settings.sender.email)
    envelope = return_path_domain(settings)
    try:
        dmarc, policy = _dmarc(resolver, from_domain)
        spf = _spf(resolver, envelope, host=settings.delivery.host)
        dkim = _dkim(resolver, settings, key)
    except DnsUnavailableError as exc:
        return DoctorReport(
            from_domain,
            envelope,
            looked=False,
            conclusion=_(
                "could not look up the DNS records ({error}): no DNS server answered — "
                "run `outreach doctor` on a machine that is online"
            ).format(error=exc),
        )
    strict_spf, strict_dkim = policy.get("aspf") == "s", policy.get("adkim") == "s"
    spf_aligned = aligned(envelope, from_domain, strict=strict_spf)
    dkim_aligned = settings.dkim is not None and aligned(
        settings.dkim.domain, from_domain, strict=strict_dkim
    )
    dkim_passes = dkim.status == "ok" and dkim_aligned
    spf_passes = spf.status == "ok" and spf_aligned
    notes = [
        _alignment_note("SPF", envelope, from_domain, ok=spf_aligned, strict=strict_spf),
    ]
    if settings.dkim is not None:
        notes.append(
            _alignment_note(
                "DKIM", settings.dkim.domain, from_domain, ok=dkim_aligned, strict=strict_dkim
            )
        )
    passes = dkim_passes or spf_passes
    conclusion = _conclusion(
        from_domain, dkim_passes=dkim_passes, passes=passes, dmarc=dmarc, policy=policy
    )
    return DoctorReport(
        from_domain,
        envelope,
        looked=True,
        findings=(spf, dkim, dmarc),
        dmarc_pass=passes,
        conclusion=conclusion,
        notes=tuple(notes),
    )


def _conclusion(
    from_domain: str, *, dkim_passes: bool, passes: bool, dmarc: Finding, policy: dict[str, str]
) -> str:
    """What a receiver concludes, in words."""
    if passes:
        if dkim_passes:
            conclusion = _("DMARC passes for {domain} through the DKIM signature")
        else:
            conclusion = _(
                "DMARC passes for {domain} only through SPF, if its record names the "
                "server you send through (outreach cannot see which servers your provider "
                "sends from); Gmail and Yahoo also ask for a DKIM signature: see the DKIM line"
            )
        if dmarc.status != "ok":
            return _(
                "{conclusion}; publish the DMARC record above so receivers can apply it"
            ).format(conclusion=conclusion.format(domain=from_domain))
        return conclusion.format(domain=from_domain)
    effect = {
        "reject": N_("with policy reject, receivers refuse these emails"),
        "quarantine": N_("with policy quarantine, receivers put these emails in spam"),
    }.get(policy.get("p", ""), N_("Gmail and Yahoo send such emails to spam or refuse them"))
    return _(
        "DMARC fails for {domain}: no DKIM signature or SPF pass is aligned with "
        "From — {effect}; see the lines above for what to publish or change"
    ).format(domain=from_domain, effect=_(effect))


def _alignment_note(what: str, domain: str, from_domain: str, *, ok: bool, strict: bool) -> str:
    if ok:
        aligned_note = (
            _("{what} domain {domain} is aligned with From ({from_domain}, strict alignment)")
            if strict
            else _("{what} domain {domain} is aligned with From ({from_domain}, relaxed alignment)")
        )
        return aligned_note.format(what=what, domain=domain, from_domain=from_domain)
    if strict:
        return _(
            "{what} domain {domain} is not aligned with From ({from_domain}, strict alignment): "
            "for DMARC, {what} must be on {from_domain}"
        ).format(what=what, domain=domain, from_domain=from_domain)
    return _(
        "{what} domain {domain} is not aligned with From ({from_domain}, relaxed alignment): "
        "for DMARC, {what} must be on {from_domain} or another name under {organization}"
    ).format(
        what=what,
        domain=domain,
        from_domain=from_domain,
        organization=organizational_domain(from_domain),
    )


def _spf(resolver: dns.resolver.Resolver, domain: str, *, host: str | None) -> Finding:
    records = [r for r in txt_records(resolver, domain) if r.lower().startswith("v=spf1")]
    suggested = f"v=spf1 a:{host} ~all" if host else "v=spf1 mx ~all"
    if not records:
        return Finding(
            "spf",
            domain,
            "missing",
            _(
                "no SPF record at {domain}: receivers cannot tell which servers may send its mail"
            ).format(domain=domain),
            add_name=domain,
            add_text=suggested,
        )
    if len(records) > 1:
        return Finding(
            "spf",
            domain,
            "wrong",
            _(
                "{n} SPF records at {domain}: receivers treat that as an error "
                "(permerror) — merge them into one"
            ).format(n=len(records), domain=domain),
        )
    record = records[0]
    if record.split()[-1].lower() in {"+all", "all"}:
        message = _("found: {record} — '+all' lets any server on the internet send")
        return Finding("spf", domain, "wrong", message.format(record=record))
    found = (
        _("found: {record}; check it names the server you send through ({host})")
        if host
        else _("found: {record}")
    )
    return Finding("spf", domain, "ok", found.format(record=record, host=host))


def _dkim(resolver: dns.resolver.Resolver, settings: Settings, key: DkimKey | None) -> Finding:
    dkim = settings.dkim
    from_domain = domain_of(settings.sender.email)
    if dkim is None:
        return Finding(
            "dkim",
            from_domain,
            "missing",
            _(
                "outreach does not sign (no dkim: in config.yaml): unless your SMTP server signs "
                "for {domain}, receivers see no DKIM signature — see the README, "
                '"Signing with DKIM"'
            ).format(domain=from_domain),
        )
    name = f"{dkim.selector}._domainkey.{dkim.domain}"
    if key is None:
        message = _("the key could not be read, so {name} was not checked")
        return Finding("dkim", dkim.domain, "unknown", message.format(name=name))
    published = published_key(resolver, key)
    if published is None:
        return Finding(
            "dkim",
            dkim.domain,
            "missing",
            _("no DKIM key at {name}: receivers cannot check the signatures").format(name=name),
            add_name=name,
            add_text=key.record,
        )
    if published == "":
        return Finding(
            "dkim",
            dkim.domain,
            "wrong",
            _("the key at {name} is revoked (empty p=)").format(name=name),
            name,
            key.record,
        )
    if published != key.public_key:
        return Finding(
            "dkim",
            dkim.domain,
            "wrong",
            _("the key at {name} is not the public half of {key}: every signature fails").format(
                name=name, key=key.source
            ),
            add_name=name,
            add_text=key.record,
        )
    matches = _("the key at {name} matches {key}").format(name=name, key=key.source)
    return Finding("dkim", dkim.domain, "ok", matches)


def _dmarc(resolver: dns.resolver.Resolver, domain: str) -> tuple[Finding, dict[str, str]]:
    """The DMARC finding and the record's tags (none when there is no record)."""
    organization = organizational_domain(domain)
    names = [f"_dmarc.{domain}"]
    if organization != domain:
        names.append(f"_dmarc.{organization}")  # RFC 7489 6.6.3: the policy is inherited
    for name in names:
        records = [r for r in txt_records(resolver, name) if r.upper().startswith("V=DMARC1")]
        if records:
            policy = tags(records[0])
            message = _("policy {policy} at {name}, found: {record}").format(
                policy=policy.get("p", "none"), name=name, record=records[0]
            )
            return Finding("dmarc", domain, "ok", message), policy
    missing = Finding(
        "dmarc",
        domain,
        "missing",
        _("no DMARC record at _dmarc.{domain}: Gmail and Yahoo ask bulk senders for one").format(
            domain=domain
        ),
        add_name=f"_dmarc.{domain}",
        add_text=f"v=DMARC1; p=none; rua=mailto:postmaster@{domain}",
    )
    return missing, {}


def split_txt(text: str) -> str:
    """The TXT value in zone-file form: quoted strings of at most 255 characters each."""
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


def describe(findings: Sequence[Finding]) -> list[str]:
    """One line per finding, and the record to add under it."""
    lines = []
    words = {status: _(word) for status, word in STATUS_WORDS.items()}
    width = max(len(word) for word in words.values())
    add = _("add:")
    for finding in findings:
        status = words.get(finding.status, finding.status)
        lines.append(f"{finding.check.upper():<5} {status:<{width}} {finding.message}")
        if finding.add_name is not None and finding.add_text is not None:
            # The record itself is DNS syntax, the same in every language.
            record = f"{finding.add_name}. IN TXT {split_txt(finding.add_text)}"
            lines.append(f"      {add:<5} {record}")
    return lines
