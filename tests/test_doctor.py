"""`outreach doctor`: SPF, DKIM and DMARC looked up on a real DNS server (dnsmasq on
127.0.0.1) whose zones hold one case per domain; the conclusion checked in words."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Workspace
from cryptography.hazmat.primitives.asymmetric import rsa
from dns_server import dns_resolver, running_dns_server

from outreach.deliver.alignment import aligned, organizational_domain
from outreach.deliver.dkim import DkimKey
from outreach.deliver.doctor import DoctorReport, examine, split_txt
from outreach.model.config import Settings


@functools.cache
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A key made once per test process, when a test first needs it (not at collection)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _key(domain: str, selector: str = "s1") -> DkimKey:
    return DkimKey(domain, selector, rsa_key(), "/etc/outreach/dkim.key")


def zones() -> dict[str, list[str]]:
    """One case per domain."""
    return {
        # Everything in place: SPF, the key, DMARC.
        "good.example": ["v=spf1 a:smtp.good.example ~all", "google-site-verification=abc"],
        "s1._domainkey.good.example": [_key("good.example").record],
        "_dmarc.good.example": ["v=DMARC1; p=reject; rua=mailto:dmarc@good.example"],
        # VERP return path on another organization's domain; no DKIM in config.
        "mailer.example": ["v=spf1 include:_spf.mailer.example -all"],
        "_dmarc.shop.example": ["v=DMARC1; p=quarantine; aspf=r"],
        # DKIM signed by a subdomain while DMARC asks for strict alignment; two SPF records.
        "strict.example": ["v=spf1 mx -all", "v=spf1 a -all"],
        "s1._domainkey.mail.strict.example": [_key("mail.strict.example").record],
        "_dmarc.strict.example": ["v=DMARC1; p=reject; adkim=s"],
        # Another key published at the selector.
        "s1._domainkey.stale.example": [DkimKey("stale.example", "s1", rsa_key(1024), "x").record],
        "stale.example": ["v=spf1 a:smtp.stale.example -all"],
        "_dmarc.stale.example": ["v=DMARC1; p=none"],
    }


@pytest.fixture(scope="module")
def dns_server() -> Iterator[str]:
    with running_dns_server(zones()) as server:
        yield server


def _settings(sender: str, **sections: Any) -> Settings:
    return Settings.model_validate(
        {
            "root": Path("/nonexistent"),
            "sender": {"name": "Casa", "email": sender},
            "delivery": {"method": "smtp", "host": "smtp.example.net"},
            **sections,
        }
    )


def _examine(server: str, settings: Settings, key: DkimKey | None) -> DoctorReport:
    return examine(settings, resolver=dns_resolver(server), key=key)


def _by_check(report: DoctorReport) -> dict[str, tuple[str, str, str | None, str | None]]:
    return {f.check: (f.status, f.message, f.add_name, f.add_text) for f in report.findings}


def test_everything_in_place_passes_dmarc_through_dkim(dns_server: str) -> None:
    settings = _settings(
        "hola@good.example", dkim={"domain": "good.example", "selector": "s1", "key_env": "K"}
    )
    report = _examine(dns_server, settings, _key("good.example"))
    assert report.looked and report.dmarc_pass is True
    found = _by_check(report)
    assert found["spf"][0] == "ok" and "v=spf1 a:smtp.good.example ~all" in found["spf"][1]
    assert "smtp.example.net" in found["spf"][1]  # check it names the server you send through
    assert found["dkim"] == (
        "ok",
        "the key at s1._domainkey.good.example matches /etc/outreach/dkim.key",
        None,
        None,
    )
    assert found["dmarc"][0] == "ok" and "policy reject" in found["dmarc"][1]
    assert report.conclusion == "DMARC passes for good.example through the DKIM signature"


def test_nothing_published_says_what_to_add_with_the_exact_records(dns_server: str) -> None:
    settings = _settings(
        "hola@bare.example", dkim={"domain": "bare.example", "selector": "s2", "key_env": "K"}
    )
    key = _key("bare.example", "s2")
    report = _examine(dns_server, settings, key)
    assert report.looked and report.dmarc_pass is False
    found = _by_check(report)
    assert found["spf"] == (
        "missing",
        "no SPF record at bare.example: receivers cannot tell which servers may send its mail",
        "bare.example",
        "v=spf1 a:smtp.example.net ~all",
    )
    status, _, name, text = found["dkim"]
    assert (status, name) == ("missing", "s2._domainkey.bare.example")
    assert text == key.record and text.startswith("v=DKIM1; k=rsa; p=MIIBIjAN")
    assert found["dmarc"][2:] == (
        "_dmarc.bare.example",
        "v=DMARC1; p=none; rua=mailto:postmaster@bare.example",
    )
    assert report.conclusion.startswith("DMARC fails for bare.example")
    # The record as a zone file writes it: the 392-character key in strings of 255 at most.
    zone = split_txt(key.record)
    assert zone.count('"') == 4 and zone.replace('" "', "").strip('"') == key.record


def test_a_verp_return_path_on_another_domain_is_not_aligned(dns_server: str) -> None:
    settings = _settings(
        "hola@news.shop.example", bounces={"return_path": "rebotes+{token}@mailer.example"}
    )
    report = _examine(dns_server, settings, None)
    assert report.return_path_domain == "mailer.example"
    found = _by_check(report)
    assert found["spf"][0] == "ok"  # SPF itself passes, for mailer.example
    assert found["dkim"][0] == "missing" and "no dkim: in config.yaml" in found["dkim"][1]
    # No _dmarc.news.shop.example: the organization's record applies (RFC 7489 6.6.3).
    assert "at _dmarc.shop.example" in found["dmarc"][1]
    assert report.dmarc_pass is False
    assert "with policy quarantine, receivers put these emails in spam" in report.conclusion
    assert (
        "SPF domain mailer.example is not aligned with From (news.shop.example, relaxed "
        "alignment): for DMARC, SPF must be on news.shop.example or another name under "
        "shop.example" in report.notes
    )


def test_strict_alignment_and_two_spf_records(dns_server: str) -> None:
    settings = _settings(
        "hola@strict.example",
        dkim={"domain": "mail.strict.example", "selector": "s1", "key_env": "K"},
    )
    report = _examine(dns_server, settings, _key("mail.strict.example"))
    found = _by_check(report)
    assert found["dkim"][0] == "ok"  # the key matches, but the domain is a subdomain
    assert found["spf"][0] == "wrong" and "2 SPF records" in found["spf"][1]
    assert report.dmarc_pass is False
    assert "with policy reject, receivers refuse these emails" in report.conclusion
    assert any("not aligned" in n and "strict alignment" in n for n in report.notes)
    assert aligned("mail.strict.example", "strict.example")  # relaxed would have passed


def test_another_key_at_the_selector_is_wrong(dns_server: str) -> None:
    settings = _settings(
        "hola@stale.example", dkim={"domain": "stale.example", "selector": "s1", "key_env": "K"}
    )
    key = _key("stale.example")
    report = _examine(dns_server, settings, key)
    status, message, name, text = _by_check(report)["dkim"]
    assert status == "wrong" and "not the public half of /etc/outreach/dkim.key" in message
    assert (name, text) == ("s1._domainkey.stale.example", key.record)
    # SPF is aligned and present: DMARC passes through it, and the line says DKIM is wanted.
    assert report.dmarc_pass is True and "through SPF" in report.conclusion


# Sending to port 0 fails at once in the kernel, as it does on a machine with no network
# ("Network is unreachable"). A closed port would not do: an unconnected UDP socket never hears
# of the ICMP reply, so the resolver waits its whole lifetime (5 s) first.
OFFLINE = "127.0.0.1:0"


def test_offline_says_it_could_not_look() -> None:
    settings = _settings("hola@good.example")
    report = examine(settings, resolver=dns_resolver(OFFLINE), key=None)
    assert not report.looked and report.findings == () and report.dmarc_pass is None
    assert report.conclusion.startswith("could not look up the DNS records")


@pytest.mark.parametrize(
    ("domain", "organization"),
    [
        ("casalucia.example", "casalucia.example"),
        ("news.casalucia.es", "casalucia.es"),
        ("mail.shop.co.uk", "shop.co.uk"),
        ("shop.com.es", "shop.com.es"),
    ],
)
def test_organizational_domain(domain: str, organization: str) -> None:
    assert organizational_domain(domain) == organization


def test_cli_doctor_in_words_and_as_json(
    make_workspace: Any, dns_server: str, tmp_path: Path
) -> None:
    ws: Workspace = make_workspace([])
    ws.write(
        "config.yaml",
        "sender: {name: Casa, email: hola@bare.example}\n"
        "delivery: {method: smtp, host: smtp.example.net}\n"
        "dkim: {domain: bare.example, selector: s1, key_env: OUTREACH_TEST_NO_KEY}\n",
    )
    result = ws.run(
        "doctor", env={"OUTREACH_DNS_SERVER": dns_server}, unset=("OUTREACH_TEST_NO_KEY",)
    )
    assert result.code == 1, result.err
    # The key cannot be read: said once, and the other records are still checked.
    assert "dkim.key_env: the environment variable OUTREACH_TEST_NO_KEY" in result.err
    lines = result.out.splitlines()
    assert lines[0] == "From: bare.example   return path (SPF): bare.example"
    assert lines[3].startswith("DKIM  unknown the key could not be read")
    assert 'add:  bare.example. IN TXT "v=spf1 a:smtp.example.net ~all"' in result.out
    assert '_dmarc.bare.example. IN TXT "v=DMARC1; p=none;' in result.out
    assert lines[-1].startswith("DMARC fails for bare.example")

    offline = ws.run("doctor", "--json", env={"OUTREACH_DNS_SERVER": OFFLINE})
    assert offline.code == 2
    answer = json.loads(offline.out)
    assert answer["looked"] is False and answer["exit_code"] == 2
    assert answer["conclusion"].startswith("could not look up the DNS records")


def test_cli_doctor_speaks_the_owners_spanish_and_keeps_the_records_as_dns_writes_them(
    make_workspace: Any, dns_server: str
) -> None:
    """With `language: es` the verdicts, what is missing and what to add are Spanish; the TXT
    records to publish and the --json codes are the same in every language."""
    ws: Workspace = make_workspace([])
    ws.write(
        "config.yaml",
        "language: es\n"
        "sender: {name: Casa, email: hola@bare.example}\n"
        "delivery: {method: smtp, host: smtp.example.net}\n",
    )
    result = ws.run("doctor", env={"OUTREACH_DNS_SERVER": dns_server})
    assert result.code == 1, result.err
    lines = result.out.splitlines()
    spf, dkim, spf_add = lines[1], lines[3], lines[2]
    assert spf.startswith("SPF   falta ") and spf.endswith(
        "no hay registro SPF en bare.example: los destinatarios no pueden saber qué servidores "
        "pueden enviar su correo"
    )
    assert spf_add == '      añada: bare.example. IN TXT "v=spf1 a:smtp.example.net ~all"'
    assert (
        dkim.startswith("DKIM  falta ")
        and "outreach no firma (no hay dkim: en config.yaml)" in dkim
    )
    assert (
        "  el dominio SPF bare.example está alineado con From (bare.example, alineación relajada)"
        in lines
    )
    assert lines[-1].startswith(
        "DMARC falla para bare.example: ninguna firma DKIM ni aprobación SPF está alineada con "
        "From; Gmail y Yahoo mandan esos emails a spam o los rechazan."
    )
    for english in (
        "missing",
        "add:",
        "no SPF record",
        "is aligned with",
        "DMARC fails",
        "Gmail and",
    ):
        assert english not in result.out, english

    answer = json.loads(ws.run("doctor", "--json", env={"OUTREACH_DNS_SERVER": dns_server}).out)
    assert [f["status"] for f in answer["findings"]] == ["missing", "missing", "missing"]
    assert answer["findings"][0]["add"]["txt"] == "v=spf1 a:smtp.example.net ~all"
    assert answer["conclusion"].startswith("DMARC falla para bare.example")
