"""`outreach redeem`, `outreach visits` and `outreach results`: did it bring them back?"""

from __future__ import annotations

import json
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from outreach.cli.errors import handle_errors
from outreach.cli.options import DATE, clock, config_option, examples
from outreach.i18n import N_, _, ngettext

if TYPE_CHECKING:
    from outreach.ledger import Ledger
    from outreach.outcomes.redeem import Verdict
    from outreach.outcomes.results import CampaignResult


def _verdict_json(verdict: Verdict, name: str | None) -> dict[str, object]:
    issued, earlier = verdict.issued, verdict.earlier
    return {
        "outcome": verdict.outcome,
        "exit_code": verdict.exit_code,
        "code": verdict.code,
        "typed": verdict.typed,
        "campaign": issued.campaign if issued else None,
        "contact_id": issued.contact_id if issued else None,
        "name": name,
        "occurrence_key": issued.occurrence_key if issued else None,
        "expires": verdict.expires.isoformat() if verdict.expires else None,
        "redeemed_on": earlier.day.isoformat() if earlier else None,
        "redeemed_at": earlier.till if earlier else None,
        "problem": verdict.problem,
        "position": verdict.position,
        "suggestion": verdict.suggestion,
    }


def _verdict_text(verdict: Verdict, name: str | None) -> str:
    issued, earlier = verdict.issued, verdict.earlier
    if verdict.outcome == "mistyped":
        typed = verdict.code or verdict.typed.strip()
        if verdict.suggestion:
            return _("mistyped: {code}: {problem}; did you mean {suggestion}?").format(
                code=typed, problem=verdict.problem, suggestion=verdict.suggestion
            )
        return _("mistyped: {code}: {problem}").format(code=typed, problem=verdict.problem)
    if verdict.outcome == "unknown":
        return _("unknown: {code} is not a code this workspace gave out").format(code=verdict.code)
    assert issued is not None and verdict.expires is not None
    said = {"name": name, "campaign": issued.campaign, "until": verdict.expires}
    if verdict.outcome == "valid":
        # "válido" in both languages: the word a till's script looks for (issue 24).
        return _("válido: {name}, {campaign} (good until {until})").format(**said)
    if verdict.outcome == "expired":
        return _("expired: {name}, {campaign}: the code was good until {until}").format(**said)
    assert earlier is not None
    if earlier.till:
        return _("already redeemed: {name}, {campaign}: on {day} at {till}").format(
            **said, day=earlier.day, till=earlier.till
        )
    return _("already redeemed: {name}, {campaign}: on {day}").format(**said, day=earlier.day)


@click.command(
    epilog=examples(
        "outreach redeem CL-7KQ2-M9XD",
        "outreach redeem cl7kq2m9xd --amount 42,50 --till barra",
        "outreach redeem CL-7KQ2-M9XD --json   # for a till's script: exit 0 / 1 / 2",
    )
)
@click.argument("code")
@click.option(
    "--date", "day", type=DATE, default=None, help="The day it is redeemed (default: today)."
)
@click.option("--amount", default=None, help="What the bill came to, in euros (42,50 or 42.50).")
@click.option("--till", "till_name", default=None, help="Which till (or waiter) takes it.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@config_option
@handle_errors
def redeem(
    code: str,
    day: date | None,
    amount: str | None,
    till_name: str | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Check a coupon code at the till and record it: exit 0 good, 1 used or expired, 2 unknown."""
    from outreach.ledger.backend import open_ledger
    from outreach.ledger.outcomes import opened
    from outreach.model.config import find_config, load_basics
    from outreach.outcomes.money import parse_cents
    from outreach.outcomes.redeem import Till
    from outreach.outcomes.redeem import redeem as redeem_code
    from outreach.workspace import CampaignTerms

    try:
        cents = parse_cents(amount) if amount is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--amount") from exc
    # A till runs this often and waits for it: only what the code needs is read (config.yaml's
    # basics, the terms of the code's campaign, the contact's line) — benchmarks/startup.py.
    settings = load_basics(find_config(config_path))
    today, now = clock(settings, day=day, now=None)
    campaigns = CampaignTerms(settings)
    till = Till(day=today, now=now, amount_cents=cents, name=till_name)
    with open_ledger(settings) as ledger, opened(ledger, _("redeem the code")) as conn:
        verdict = redeem_code(conn, code, coupon=settings.coupon, campaigns=campaigns, till=till)
    name = None
    if verdict.issued is not None:
        from outreach.outcomes.names import contact_name

        name = contact_name(settings, verdict.issued.contact_id)
    if as_json:
        click.echo(json.dumps(_verdict_json(verdict, name), ensure_ascii=False, indent=2))
    else:
        click.echo(_verdict_text(verdict, name), err=verdict.exit_code == 2)
    sys.exit(verdict.exit_code)


@click.command(
    epilog=examples(
        "outreach visits --import caja-noviembre.csv",
        "outreach visits --import reservas.xlsx --json",
    )
)
@click.option(
    "--import",
    "source",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="The till's or booking system's export (CSV or workbook).",
)
@click.option("--date", "day", type=DATE, default=None, help="Stand-in for today (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts and problems as JSON.")
@config_option
@handle_errors
def visits(source: Path, day: date | None, as_json: bool, config_path: Path | None) -> None:
    """Add the visits of a till's export to the ledger (each once): exit 1 if lines were left out."""
    from outreach.contacts.presets import column_mapping
    from outreach.contacts.sheets import is_workbook
    from outreach.ledger.backend import open_ledger
    from outreach.ledger.outcomes import add_visits, opened
    from outreach.outcomes.redeem import code_owner
    from outreach.outcomes.visits import Directory, read_visits
    from outreach.workspace import load_workspace

    workspace = load_workspace(config_path)
    settings = workspace.settings
    _today, now = clock(settings, day=day, now=None)
    contacts = settings.contacts
    with open_ledger(settings) as ledger, opened(ledger, _("import the visits")) as conn:
        owner = code_owner(conn, coupon=settings.coupon)
        mapping = column_mapping(preset=contacts.preset, columns=contacts.columns)
        if is_workbook(settings.contacts_path):
            directory = Directory.of(workspace.stream_contacts(), code_owner=owner)
        else:
            directory = Directory.scan(settings.contacts_path, mapping=mapping, code_owner=owner)
        read = read_visits(
            source,
            directory=directory,
            mapping=mapping,
            date_format=contacts.date_format,
            sheet=contacts.sheet if source.suffix.lower() != ".csv" else None,
        )
        added = add_visits(conn, read.visits, source=source.name, now=now)
    known = len(read.visits) - added
    if as_json:
        problems = [str(p) for p in read.problems]
        counts = {"added": added, "known": known, "left_out": len(read.problems)}
        click.echo(json.dumps({**counts, "problems": problems}, ensure_ascii=False, indent=2))
    else:
        for problem in read.problems[:50]:
            click.echo(str(problem), err=True)
        if len(read.problems) > 50:
            more = len(read.problems) - 50
            click.echo(
                ngettext(
                    "… and {n} more line left out", "… and {n} more lines left out", more
                ).format(n=more),
                err=True,
            )
        click.echo(
            _("{added}, {known} already in the ledger, {left_out}").format(
                added=ngettext("{n} visit added", "{n} visits added", added).format(n=added),
                known=known,
                left_out=ngettext(
                    "{n} line left out", "{n} lines left out", len(read.problems)
                ).format(n=len(read.problems)),
            )
        )
    sys.exit(1 if read.problems else 0)


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _verdict_line(result: CampaignResult) -> str:
    up = result.uplift
    campaign = result.campaign
    if up is None:
        if not result.control:
            return _("{campaign}: no control group — add `{setting}` to measure it").format(
                campaign=campaign, setting="control_group: 20%"
            )
        return _("{campaign}: no one got it yet").format(campaign=campaign)
    interval = _("{estimate} points ({level} interval {low} to {high})").format(
        estimate=_points(up.estimate), level="95%", low=_points(up.low), high=_points(up.high)
    )
    if up.covers_zero:
        verdict = _("{campaign}: not enough data yet: {interval}")
    elif up.estimate > 0:
        verdict = _("{campaign}: brings people back: {interval}")
    else:
        verdict = _("{campaign}: fewer came back than in the control group: {interval}")
    return verdict.format(campaign=campaign, interval=interval)


@click.command(
    epilog=examples(
        "outreach results                              # the last 90 days",
        "outreach results --from 2026-01-01 --to 2026-06-30 --json",
    )
)
@click.option(
    "--from",
    "start",
    type=DATE,
    default=None,
    help="First day of messages counted (default: 89 days before --to).",
)
@click.option(
    "--to", "end", type=DATE, default=None, help="Last day of messages counted (default: today)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@config_option
@handle_errors
def results(start: date | None, end: date | None, as_json: bool, config_path: Path | None) -> None:
    """Per campaign: who came back after a message, against its control group, and the uplift."""
    from outreach.cli.views import print_table
    from outreach.ledger.backend import read_ledger
    from outreach.ledger.outcomes import opened
    from outreach.model.config import find_config, load_settings
    from outreach.outcomes.money import euros
    from outreach.outcomes.results import read_results

    settings = load_settings(find_config(config_path))
    today, _now = clock(settings, day=None, now=None)
    last = end or today
    first = start or last - timedelta(days=89)
    if first > last:
        raise click.UsageError(
            _("--from {first} is after --to {last}: give --from on or before it").format(
                first=first, last=last
            )
        )
    days = settings.results.attribution_days

    def read(ledger: Ledger) -> list[CampaignResult]:
        with opened(ledger, _("read the results")) as conn:
            return read_results(conn, start=first, end=last, attribution_days=days)

    found = read_ledger(settings, read)
    if as_json:
        body: dict[str, object] = {"from": first.isoformat(), "to": last.isoformat()}
        body["attribution_days"] = days
        body["campaigns"] = [r.as_dict() for r in found]
        click.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    if not found:
        click.echo(
            _("no messages or control decisions from {first} to {last}").format(
                first=first, last=last
            )
        )
        return
    click.echo(
        ngettext(
            "messages from {first} to {last}; a visit counts within {n} day",
            "messages from {first} to {last}; a visit counts within {n} days",
            days,
        ).format(first=first, last=last, n=days)
    )
    rows: list[tuple[object, ...]] = [
        (
            r.campaign,
            r.treated,
            f"{_rate(r.visits_treated, r.treated)}",
            r.control,
            f"{_rate(r.visits_control, r.control)}",
            r.redeemed,
            euros(r.revenue_treated_cents),
        )
        for r in found
    ]
    print_table(tuple(_(column) for column in RESULT_COLUMNS), rows)
    for r in found:
        click.echo(_verdict_line(r))


# The results' table: its columns' titles.
RESULT_COLUMNS = (
    N_("campaign"),
    N_("got it"),
    N_("came back"),
    N_("held out"),
    N_("came back"),
    N_("redeemed"),
    N_("euros"),
)


def _rate(part: int, whole: int) -> str:
    return f"{part} ({part / whole:.1%})" if whole else "-"
