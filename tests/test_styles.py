"""CSS inlined once per shape of a template's output: byte for byte what css-inline writes."""

from __future__ import annotations

from pathlib import Path

import css_inline
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import Template

from outreach.render import styles
from outreach.render.styles import StyleInliner, placeholders
from outreach.render.templates import build_environment
from outreach.rules.sandbox import DEFAULT_LIMITS, render_limited_parts

SAMPLE_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STYLESHEET = (
    "<style>p { color: red; } .c { margin: 0; } a { color: blue; } td { padding: 1px; } "
    "div p { font-size: 2px; } td:empty { width: 3px; } @media (max-width: 600px) "
    "{ .c { padding: 0 !important; } }</style>"
)
# Pieces of template text: markup that moves text (tables foster-parent it, <head> hands it to
# <body>, <pre> drops a first newline, formatting tags are cloned), references complete and
# open, and places for the printed values `a` and `b` in text, attributes, comments, classes.
PIECES = [
    "<p>",
    "</p>",
    "<table><tr>",
    "<td>",
    "</td>",
    "</tr></table>",
    "<pre>",
    "</pre>",
    "<b>",
    "</b>",
    '<div class="c">',
    "</div>",
    "<br>",
    "\n",
    "  ",
    "Hola, ",
    ":",
    "&amp;",
    "&copy",
    "&not",
    " & ",
    "{{ a }}",
    "{{ b }}",
    "{{ a }}{{ b }}",
    '<a href="https://x.example/?id={{ a }}&amp;t=1">',
    '<a href="{{ a }}&not">',
    "</a>",
    '<span title="{{ b }}">',
    "</span>",
    '<img alt="{{ a }}" src="i.png">',
    "<!-- {{ a }} -->",
    '<td class="{{ b }}">',
    "{{ a|safe }}",
]
HEAD_PIECES = ["<title>{{ a }}</title>", "\n", "{{ b }}", '<meta charset="utf-8">']
# Values with what matters to HTML: white space at the edges, `&`, `<`, quotes, NBSP, `;`.
VALUES = st.text(
    alphabet=st.sampled_from(
        ["a", "Ñ", " ", "\n", "\t", "&", "<", ">", '"', "'", "\xa0", ";", "#"]
    ),
    max_size=6,
) | st.sampled_from(["Ana", "José María", "&copy;", "x&y", "O'Brien", "a<b>", "c001"])

INLINER = css_inline.CSSInliner(
    load_remote_stylesheets=False, keep_style_tags=False, keep_at_rules=True
)


def template(source: str) -> Template:
    return build_environment(templates_dir=Path("."), html=True).from_string(source)


def render(compiled: Template, **values: str) -> tuple[list[str], str]:
    parts = render_limited_parts(compiled, values, DEFAULT_LIMITS)
    return parts, "".join(parts)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(HEAD_PIECES), max_size=3),
    st.lists(st.sampled_from(PIECES), max_size=16),
    st.lists(st.tuples(VALUES, VALUES), min_size=1, max_size=4),
)
def test_inlined_once_per_shape_is_byte_for_byte_css_inline(
    head: list[str], body: list[str], contexts: list[tuple[str, str]]
) -> None:
    source = f"<!DOCTYPE html><html><head>{''.join(head)}{STYLESHEET}</head><body>"
    compiled = template(source + "".join(body) + "</body></html>")
    inliner = StyleInliner(INLINER)
    # The same contexts again: the second time every shape is known (cached or refused).
    for a, b in contexts + contexts:
        parts, document = render(compiled, a=a, b=b)
        assert inliner.inline(parts, document) == INLINER.inline(document)
    assert inliner.hits + inliner.misses == 2 * len(contexts)


def test_the_sample_birthday_email_is_inlined_once_per_language() -> None:
    env = build_environment(templates_dir=SAMPLE_TEMPLATES, html=True)
    inliner = StyleInliner(INLINER)
    sender = {
        "name": "Casa Lucía",
        "signature": "Lucía",
        "website": "https://c.example",
        "phone": "1",
    }
    sender |= {"address": {"street": "Cava Baja, 12", "city": "Madrid", "postal_code": "28005"}}
    for number, name in enumerate(["Ana", "José", "Zoë O'Brien", "Ñandú & Co", "Ana"] * 2):
        for file in ("birthday.html.j2", "birthday.en.html.j2"):
            context = {
                "contact": {"first_name": name, "id": f"c{number}"},
                "sender": sender,
                "coupon": f"CL-{number:04d}",
                "unsubscribe_url": f"https://c.example/baja?id=c{number}&token=ab{number}",
                "_locale": "es",
            }
            parts, document = render(env.get_template(file), **context)
            assert inliner.inline(parts, document) == INLINER.inline(document)
    assert (inliner.misses, inliner.hits) == (2, 18)  # matched once for each template


@given(st.sampled_from(['<p class="{{ a }}">x</p>', "<style>p { color: {{ a }}; }</style>"]))
def test_a_value_that_can_change_the_selectors_keeps_its_shape_out_of_the_cache(
    body: str,
) -> None:
    compiled = template(f"<html><head>{STYLESHEET}</head><body>{body}</body></html>")
    inliner = StyleInliner(INLINER)
    for value in ("c", "d", "c"):
        parts, document = render(compiled, a=value)
        assert inliner.inline(parts, document) == INLINER.inline(document)
    assert inliner.hits == 0


def test_an_attribute_selector_keeps_links_out_of_the_cache() -> None:
    sheet = '<style>a[href^="https://b"] { color: red; }</style>'
    compiled = template(
        f'<html><head>{sheet}</head><body><a href="{{{{ a }}}}">x</a></body></html>'
    )
    inliner = StyleInliner(INLINER)
    for value in ("https://a.example", "https://b.example"):
        parts, document = render(compiled, a=value)
        assert inliner.inline(parts, document) == INLINER.inline(document)
        assert ("red" in inliner.inline(parts, document)) is value.startswith("https://b")
    assert inliner.hits == 0


def test_placeholders_are_found_in_text_and_in_quoted_link_values_only() -> None:
    p0, p1 = "\ue0000\ue001", "\ue0001\ue001"
    assert placeholders(f'<p>{p0}</p><a href="x?{p1}">y</a>') == {0: False, 1: True}
    assert placeholders(f"<title>{p0}</title>") == {0: False}
    for refused in (
        f'<p class="{p0}">',  # a class decides which rules match
        f"<a href={p0}>",  # unquoted: white space in the value would end it
        f"<!-- {p0} -->",
        f"<{p0}>",
        f"<style>{p0}</style>",
        f"<script>{p0}</script>",
        f"<p>&copy{p0}</p>",  # an open reference would read on into the value
        f"<p>a < {p0}</p>",  # markup the strict reading does not know
    ):
        assert placeholders(refused) is None, refused


def test_a_template_whose_shape_keeps_changing_is_inlined_directly() -> None:
    compiled = template(f"<html><head>{STYLESHEET}</head><body><p>{{{{ a }}}}</p>")
    inliner = StyleInliner(INLINER)
    for number in range(styles._TRIAL + 10):
        # White space at the edge keeps a value in the shape: a new shape every time.
        parts, document = render(compiled, a=f" c{number}")
        assert inliner.inline(parts, document) == INLINER.inline(document)
    # Past the trial nothing more is learnt: the shapes stop at the trial's.
    assert len(inliner._shapes) == styles._TRIAL + 1
    assert inliner.hits == 0
