"""Audience filters: which contacts a campaign may reach (tags and a sandboxed `where`)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

from jinja2 import ChainableUndefined, Template, nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.parser import Parser
from jinja2.runtime import Undefined

from outreach.contacts import Contact
from outreach.i18n import N_, _
from outreach.model.errors import CampaignError, OutreachError
from outreach.rules.sandbox import DEFAULT_LIMITS, LimitedSandbox, Limits, limits_of, render_guard

if TYPE_CHECKING:  # campaigns.py imports this module to check `where` as it loads
    from outreach.model.campaigns import Audience, Campaign
    from outreach.model.config import Settings

WHERE_FIELD = "audience.where"
SANDBOX_HINT = N_("`where` may read the contact's fields, not Python internals")
WHERE_HINT = N_(
    "fix `audience.where` (CSV columns are text: compare numbers as `contact.visits | int > 3`)"
)


class AudienceError(OutreachError):
    """`audience.where` failed for one contact; the run reports it as that contact's problem."""

    def __init__(self, message: str, *, contact_id: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.contact_id = contact_id


class WhereRefusedError(CampaignError):
    """`audience.where` uses something the sandbox refuses: the campaign is wrong, whoever
    the contact, so the run stops (exit 2) rather than quietly matching nobody."""


class _Lenient(ChainableUndefined):
    """A missing field: falsy, equal to nothing, neither less nor greater than anything.

    Jinja's default Undefined raises on `<`, `>`, `| int` and `.month`; a contact without
    the column should simply not match `contact.visits | int > 3` or
    `contact.birthday.month == 11`, rather than be reported as an error. `| int` gives 0,
    as it does for any text that is not a number. Calling it still raises, and so does
    using an attribute the sandbox refused.
    """

    __slots__ = ()

    def _false(self, other: object) -> bool:
        return False

    # Jinja types these as never returning; returning False is the point.
    __lt__ = __le__ = __gt__ = __ge__ = _false  # type: ignore[assignment]

    def __getattr__(self, name: str) -> _Lenient:
        # What the sandbox refused (`contact.__class__`) stays loud when used further,
        # so an escape attempt is reported rather than quietly not matching.
        if issubclass(self._undefined_exception, SecurityError):
            self._fail_with_undefined_error()
        return super().__getattr__(name)  # type: ignore[return-value]

    def __getitem__(self, name: str) -> _Lenient:  # type: ignore[override]
        if issubclass(self._undefined_exception, SecurityError):
            self._fail_with_undefined_error()
        return self

    def __int__(self) -> int:  # type: ignore[override]
        return 0

    def __float__(self) -> float:  # type: ignore[override]
        return 0.0


# One environment for every `where`: building one costs milliseconds, and it holds no state
# that differs between campaigns.
class _WhereSandbox(LimitedSandbox):
    """The limited sandbox; a refused attribute is an error at once, not a falsy blank."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(
            _("access to attribute {attribute} of {type} object is unsafe").format(
                attribute=repr(attribute), type=repr(type(obj).__name__)
            )
        )


_ENV = _WhereSandbox(undefined=_Lenient)
# Contact attributes that `Contact.template_fields` exposes under their own name (None → absent);
# tags and opt_out are exposed as sorted lists. tests/test_audience.py checks this still agrees
# with template_fields, field by field.
_ATTRIBUTES = frozenset(Contact.__dataclass_fields__) - {"line", "extra", "held_back"}
_LISTS = frozenset({"tags", "opt_out"})


def _field(contact: Contact, name: str) -> object:
    """What `contact.template_fields().get(name)` gives, without building the whole dict."""
    if name in _LISTS:
        return sorted(getattr(contact, name))
    if name in _ATTRIBUTES:
        value = getattr(contact, name)
        if value is not None:
            return value
        return contact.extra.get(name)
    value = contact.extra.get(name)
    if value is None:
        # Not a column of this row: ask the record itself, in case it derives the field.
        return contact.template_fields().get(name)
    return value


def _contact_names(expression: nodes.Expr) -> tuple[str, ...] | None:
    """The fields read as `contact.NAME` / `contact['NAME']`; None if `contact` is used whole."""
    names: list[str] = []
    direct = 0
    for node in expression.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "contact"):
            continue
        if isinstance(node, nodes.Getattr):
            if hasattr(dict, node.attr):  # contact.get('x'), contact.items(): needs every field
                return None
            names.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            names.append(node.arg.value)
        else:
            return None
        direct += 1
    uses = sum(1 for name in expression.find_all(nodes.Name) if name.name == "contact")
    return tuple(dict.fromkeys(names)) if uses == direct else None


@dataclass(frozen=True, slots=True)
class AudienceFilter:
    """A campaign's audience, compiled once; `matches(contact)` is the per-contact test."""

    tags_any: frozenset[str]
    tags_none: frozenset[str]
    where: str | None
    path: Path
    line: int | None
    _template: Template | None = None
    # The only fields `where` reads, so a contact's dict holds just those (None: all fields).
    _names: tuple[str, ...] | None = None
    _globals: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    limits: Limits = DEFAULT_LIMITS

    def matches(self, contact: Contact) -> bool:
        """Whether the contact is in the audience; AudienceError if `where` fails for it."""
        tags = contact.tags
        if self.tags_any and self.tags_any.isdisjoint(tags):
            return False
        if self.tags_none and not self.tags_none.isdisjoint(tags):
            return False
        if self._template is None:
            return True
        if self._names is None:
            fields = contact.template_fields()
        else:
            fields = {}
            for name in self._names:
                value = _field(contact, name)
                if value is not None:
                    fields[name] = value
        try:
            # What TemplateExpression.__call__ does, minus copying the environment's globals
            # into a new dict for every call (most of its cost at 100k contacts).
            template = self._template
            # An expression has no loops: the checks on its operators and calls bound it.
            with render_guard(self.limits, timer=False):
                context = template.new_context({**self._globals, "contact": fields}, shared=True)
                for _ in template.root_render_func(context):
                    pass
                return bool(context.vars["result"])
        except Exception as exc:  # user code: TypeError, SecurityError, UndefinedError, ...
            self._fail(contact, exc)

    __call__ = matches

    def _fail(self, contact: Contact, exc: Exception) -> NoReturn:
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if isinstance(exc, SecurityError):
            raise WhereRefusedError(
                _(
                    "`where` uses what the sandbox refuses: {detail} (found with contact {id})"
                ).format(detail=detail, id=contact.id),
                path=self.path,
                line=self.line,
                field=WHERE_FIELD,
                hint=_(SANDBOX_HINT),
            ) from exc
        raise AudienceError(
            _("`where` failed for contact {id}: {detail}").format(id=contact.id, detail=detail),
            contact_id=contact.id,
            path=self.path,
            line=self.line,
            field=WHERE_FIELD,
            hint=_(SANDBOX_HINT if isinstance(exc, SecurityError) else WHERE_HINT),
        ) from exc


def _compile_where(source: str, *, path: Path, line: int | None) -> tuple[Template, nodes.Expr]:
    # Environment.compile_expression, kept apart so the parsed expression can be inspected.
    parser = Parser(_ENV, source, state="variable")
    try:
        expression = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError(
                _("unexpected text after the expression"), parser.stream.current.lineno
            )
        expression.set_environment(_ENV)
        body = [nodes.Assign(nodes.Name("result", "store"), expression, lineno=1)]
        template = _ENV.from_string(nodes.Template(body, lineno=1))
    except TemplateSyntaxError as exc:
        raise CampaignError(
            _("not a valid expression: {message}").format(message=exc.message),
            path=path,
            line=line,
            field=WHERE_FIELD,
            hint=_("write a Jinja2 expression such as contact.city == 'Madrid'"),
        ) from None
    _check_refused(expression, path=path, line=line)
    return template, expression


def _refused_name(expression: nodes.Expr) -> str | None:
    """An attribute the sandbox refuses, written out in the expression (`x.__class__`,
    `x['_y']`, `x | attr('__class__')`), or None."""
    found = expression.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter))
    for node in itertools.chain([expression], found):  # find_all skips the node itself
        name: object = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            first = node.args[0]
            name = first.value if isinstance(first, nodes.Const) else None
        if isinstance(name, str) and name.startswith("_"):
            return name
    return None


def _check_refused(expression: nodes.Expr, *, path: Path, line: int | None) -> None:
    name = _refused_name(expression)
    if name is not None:
        raise CampaignError(
            _("`where` reads {name}, which the sandbox refuses: it would match nobody").format(
                name=repr(name)
            ),
            path=path,
            line=line,
            field=WHERE_FIELD,
            hint=_(SANDBOX_HINT),
        )


def compile_audience(
    audience: Audience, *, path: Path, line: int | None = None, limits: Limits = DEFAULT_LIMITS
) -> AudienceFilter:
    """Compile a campaign's audience once; CampaignError if `where` is not a valid expression
    or reads what the sandbox refuses."""
    template = names = None
    if audience.where is not None and audience.where.strip():
        template, expression = _compile_where(audience.where, path=path, line=line)
        names = _contact_names(expression)
    return AudienceFilter(
        # Contact tags are stored lower-case; the model normalises these the same way.
        tags_any=frozenset(tag.lower() for tag in audience.tags_any),
        tags_none=frozenset(tag.lower() for tag in audience.tags_none),
        where=audience.where,
        path=path,
        line=line,
        _template=template,
        _names=names,
        _globals=MappingProxyType(dict(template.globals) if template else {}),
        limits=limits,
    )


def campaign_audience(campaign: Campaign, settings: Settings) -> AudienceFilter:
    """The campaign's audience compiled as every run compiles it: with the workspace's own
    expression limits (`where` is the campaign's, located in its file)."""
    return compile_audience(
        campaign.audience, path=campaign.path, line=campaign.where_line, limits=limits_of(settings)
    )
