"""Templates and `where` within limits: a message over them fails alone, placed; the run goes on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest
from conftest import Workspace
from jinja2 import Template

from outreach.rules.sandbox import LimitedSandbox, Limits, RenderLimitError, render_limited

DAY = "2026-11-24"
ROWS = [
    "c1,Ana,Núñez,ana@example.com,25/11/1980,,,,,email,es,customer,",
    "c2,Luis,Gil,luis@example.com,25/11/1981,,,,,email,es,customer,",
]
ONLY_C1 = "{{% if contact.id == 'c1' %}}{body}{{% endif %}}Hola {{{{ contact.first_name }}}}\n"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "longer than 0.5 s",
        ),
        ("{{ 9 ** (9 ** 9) }}", "too large a number"),
        ("{{ contact.first_name * 400000000 }}", "would be 1,200,000,000 characters"),
        ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "writes more than"),
        ("{{ contact.first_name | center(999999999) }}", "would be 999,999,999"),
        ("{{ '%999999999d' % 1 }}", "width in the format string"),
    ],
)
def test_a_template_over_its_limits_fails_that_message_only(
    make_workspace: Callable[..., Workspace], body: str, says: str
) -> None:
    # The time limit is short only where time is what the case is about: on a busy machine
    # a big output could otherwise run out of time before it runs out of room.
    seconds = 0.5 if "longer than" in says else 10
    ws = make_workspace(
        ROWS,
        config_extra=f"limits:\n  render_seconds: {seconds}\n  render_size: 1000000\n",
        templates={"birthday.txt.j2": "\n" + ONLY_C1.format(body=body)},
    )
    started = time.monotonic()
    result = ws.run("run", "--all", "--date", DAY, "--json")
    assert time.monotonic() - started < 20
    assert result.code == 1, result.out + result.err
    summary = json.loads(result.out)
    (campaign,) = summary["campaigns"]
    assert (campaign["emails"], campaign["failed"]) == (1, 1)
    (problem,) = campaign["problems"]
    assert problem["contact_id"] == "c1"
    assert problem["path"] == "birthday.txt.j2"
    assert problem["line"] == 2
    assert says in problem["message"]
    assert [p.name for p in ws.files("out")] == ["c2.eml"]


WHERE_CAMPAIGN = """\
kind: birthday
channel: email
days_before: 3
audience:
  where: "{where}"
email:
  subject: Hola
  text: birthday.txt.j2
"""


def test_a_where_over_its_limits_fails_for_that_contact(
    make_workspace: Callable[..., Workspace],
) -> None:
    where = "contact.id == 'c2' or (contact.first_name * 400000000) == 'x'"
    ws = make_workspace(ROWS, campaigns={"b.yaml": WHERE_CAMPAIGN.format(where=where)})
    result = ws.run("run", "--all", "--date", DAY, "--json")
    assert result.code == 1, result.out + result.err
    (campaign,) = json.loads(result.out)["campaigns"]
    (problem,) = campaign["problems"]
    assert (problem["contact_id"], problem["line"], problem["field"]) == (
        "c1",
        5,
        "audience.where",
    )
    assert campaign["failed"] == 1
    assert [p.name for p in ws.files("out")] == ["c2.eml"]


@pytest.mark.parametrize("where", ["contact.id.__class__", "contact.id | attr('__class__')"])
def test_a_refused_attribute_in_where_is_a_campaign_error(
    make_workspace: Callable[..., Workspace], where: str
) -> None:
    ws = make_workspace(ROWS, campaigns={"b.yaml": WHERE_CAMPAIGN.format(where=where)})
    for command in (["run", "--all", "--date", DAY], ["validate", "--date", DAY]):
        result = ws.run(*command)
        assert result.code == 2, result.out + result.err
        assert "b.yaml:5: audience.where" in result.out + result.err
    assert ws.files("out") == []


def test_outside_the_main_thread_loops_still_stop_at_the_deadline() -> None:
    env = LimitedSandbox()
    template = env.from_string(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    )
    caught: list[BaseException] = []

    def render(template: Template) -> None:
        try:
            render_limited(template, {}, Limits(seconds=0.3))
        except RenderLimitError as exc:
            caught.append(exc)

    worker = threading.Thread(target=render, args=(template,))
    started = time.monotonic()
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert time.monotonic() - started < 5
    assert len(caught) == 1


def test_real_templates_are_well_within_the_defaults() -> None:
    env = LimitedSandbox()
    template = env.from_string(
        "{% for line in lines %}{{ loop.index }}. {{ line | center(40) }}\n{% endfor %}"
        "{{ '%05d' % 42 }} {{ '{:>8}'.format('x') }} {{ 2 ** 10 }} {{ 'ab' * 3 }}"
    )
    text = render_limited(template, {"lines": ["uno", "dos"]}, Limits())
    assert text.endswith("00042        x 1024 ababab")


REMINDER = """\
kind: reminder
channel: email
date_field: next_appointment
offsets: [-1]
email:
  subject: Recordatorio
  text: promo.txt.j2
"""


def test_a_bad_reminder_date_is_failed_in_the_table_and_the_exit_code(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace([], campaigns={"reminder.yaml": REMINDER})
    ws.write(
        "contacts.csv",
        "id,first_name,email,next_appointment\n"
        "c1,Ana,ana@example.com,2026-11-25\n"
        "c2,Luis,luis@example.com,2026-02-30\n",
    )
    result = ws.run("run", "--all", "--date", DAY, "--json")
    assert result.code == 1, result.out + result.err
    summary = json.loads(result.out)
    (campaign,) = summary["campaigns"]
    (problem,) = campaign["problems"]
    assert campaign["failed"] == len(campaign["problems"]) == 1
    assert (problem["path"], problem["line"], problem["contact_id"], problem["field"]) == (
        "contacts.csv",
        3,
        "c2",
        "next_appointment",
    )
    assert summary["exit_code"] == 1
    table = ws.run("run", "--all", "--date", DAY)
    assert table.code == 1
    assert "1 message could not be made" in table.out
    assert "contacts.csv:3: next_appointment" in table.out
