"""`outreach doctor`: SPF, DKIM and DMARC of the sender's domain, in words."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from outreach.cli.errors import EXIT_FAILED, EXIT_NOTHING_DONE, EXIT_OK, fail, handle_errors
from outreach.cli.options import config_option, examples
from outreach.i18n import _
from outreach.model.errors import OutreachError


@click.command(
    epilog=examples(
        "outreach doctor                    # what a receiver will conclude, in words",
        "outreach doctor --json             # OUTREACH_DNS_SERVER=IP[:PORT] picks the resolver",
    )
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@config_option
@handle_errors
def doctor(as_json: bool, config_path: Path | None) -> None:
    """Look up SPF, DKIM and DMARC of the sender's domain: what a receiver will conclude."""
    from outreach.deliver.dkim import load_dkim_key
    from outreach.deliver.doctor import describe, examine, make_resolver
    from outreach.model.config import find_config, load_settings

    settings = load_settings(find_config(config_path))
    key, key_problem = None, None
    try:
        key = load_dkim_key(settings, environ=os.environ)
    except OutreachError as exc:
        key_problem = str(exc)  # the other records are still worth checking
    report = examine(settings, resolver=make_resolver(os.environ), key=key)
    if not report.looked:
        code = EXIT_NOTHING_DONE
    elif report.dmarc_pass and key_problem is None:
        code = EXIT_OK if all(f.status == "ok" for f in report.findings) else EXIT_FAILED
    else:
        code = EXIT_FAILED
    if as_json:
        click.echo(
            json.dumps(
                {**report.as_dict(), "key_problem": key_problem, "exit_code": code},
                ensure_ascii=False,
                indent=2,
            )
        )
        sys.exit(code)
    click.echo(
        _("From: {domain}   return path (SPF): {return_path}").format(
            domain=report.from_domain, return_path=report.return_path_domain
        )
    )
    if key_problem is not None:
        fail(key_problem)
    for line in describe(report.findings):
        click.echo(line)
    for note in report.notes:
        click.echo(f"  {note}")
    click.echo(report.conclusion)
    sys.exit(code)
