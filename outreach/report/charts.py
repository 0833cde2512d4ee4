"""The report's charts: matplotlib figures saved as SVG text, ready to inline in the page.

matplotlib renders offline, without a browser or a font download, and its SVG backend with
`svg.fonttype: none` writes text as <text> (not glyph outlines), which keeps each chart small.
Every series is a group whose id names it (`series-email-birthday-past`), so a reader, a test
or a screen reader can tell the series apart without knowing the colours.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.container import BarContainer
    from matplotlib.figure import Figure

    from outreach.outcomes.results import CampaignResult
    from outreach.report.data import DayCount, HeldCount

# Colour-blind friendly (Okabe-Ito), one per campaign in order, then again.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
REASON_COLOURS = {
    "quiet_day": "#56B4E9",
    "min_gap": "#E69F00",
    "max_messages": "#D55E00",
    "window_closed": "#CC79A7",
    "letter_too_late": "#0072B2",
    "other": "#999999",
    "planned": "#BBBBBB",
}
_RC: Any = {
    "svg.fonttype": "none",
    "text.parse_math": False,  # a campaign named "promo $5" is text, not TeX
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#dddddd",
    "axes.axisbelow": True,
}
_ID = re.compile(r'\bid="([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")
_HREF = re.compile(r'href="#([^"]+)"')


def slug(value: str) -> str:
    """A name safe in an id: lower-case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "x"


def _figure(height: float, rows: int = 1) -> tuple[Figure, list[Axes]]:
    import matplotlib

    matplotlib.use("svg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.0, height), layout="constrained")
    from matplotlib.ticker import MaxNLocator

    grid = figure.subplots(rows, 1, sharex=True, squeeze=False)
    axes = [row[0] for row in grid]
    for ax in axes:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # messages come whole
    return figure, axes


def _svg(figure: Figure, *, name: str, title: str) -> str:
    """The figure as SVG markup with every id prefixed by `name` (several charts, one page)."""
    import matplotlib

    out = io.StringIO()
    salt: Any = {"svg.hashsalt": name}
    with matplotlib.rc_context(salt):
        figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    text = out.getvalue()
    text = text[text.index("<svg") :]
    prefix = f"{name}-"
    text = _ID.sub(lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = _URL.sub(lambda m: f"url(#{prefix}{m.group(1)})", text)
    text = _HREF.sub(lambda m: f'href="#{prefix}{m.group(1)}"', text)
    text = text.replace("<svg ", f'<svg role="img" aria-labelledby="{prefix}title" ', 1)
    end = text.index(">") + 1
    return f'{text[:end]}<title id="{prefix}title">{escape(title)}</title>{text[end:]}'


def _name_bars(bars: BarContainer, name: str, xs: Sequence[int]) -> None:
    """Give each bar of a series an id naming the series and its day (or x)."""
    for x, patch in zip(xs, bars.patches, strict=True):
        patch.set_gid(f"{name}-{x}")


def _drawn(
    heights: Sequence[float], bottoms: Sequence[float]
) -> tuple[list[int], list[float], list[float]]:
    """Only the bars that have a height: an empty day draws nothing (and costs no bytes)."""
    xs = [i for i, h in enumerate(heights) if h]
    return xs, [heights[i] for i in xs], [bottoms[i] for i in xs]


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


# How each kind of bar is drawn (alpha, hatch): sent solid, prepared paler, the plan hatched.
_KINDS: dict[str, tuple[float, str | None]] = {
    "sent": (1.0, None),
    "prepared": (0.7, ".."),
    "plan": (0.45, "//"),
}


def _kind(count: DayCount) -> str:
    """sent, prepared (the outbox, a letter's PDF) or plan."""
    if count.planned:
        return "plan"
    return "sent" if count.sent else "prepared"


def daily_chart(
    counts: Sequence[DayCount],
    *,
    campaigns: Sequence[str],
    start: date,
    end: date,
    split: date,
    labels: Mapping[str, str],
) -> str:
    """Messages per day, stacked by campaign: emails above, letters below; sent, prepared
    (not sent: the outbox, a letter's PDF) and the plan drawn apart.

    `labels`: title, email, letter, and sent, prepared, plan with a `{campaign}` placeholder.
    """
    import matplotlib

    days = _days(start, end)
    index = {day: i for i, day in enumerate(days)}
    with matplotlib.rc_context(_RC):
        figure, axes = _figure(4.6, rows=2)
        for ax, channel in zip(axes, ("email", "letter"), strict=True):
            bottoms = [0.0] * len(days)
            for n, campaign in enumerate(campaigns):
                colour = PALETTE[n % len(PALETTE)]
                for kind in _KINDS:
                    heights = [0.0] * len(days)
                    for c in counts:
                        if (
                            c.channel == channel
                            and c.campaign == campaign
                            and _kind(c) == kind
                            and c.day in index
                        ):
                            heights[index[c.day]] += c.count
                    if not any(heights):
                        continue
                    xs, tall, base = _drawn(heights, bottoms)
                    bars = ax.bar(
                        xs,
                        tall,
                        bottom=base,
                        color=colour,
                        alpha=_KINDS[kind][0],
                        hatch=_KINDS[kind][1],
                        edgecolor="white" if kind == "sent" else colour,
                        linewidth=0.4,
                        width=0.85,
                        # a label's words are the caller's: "{campaign} (sent)"
                        label=labels[kind].format(campaign=campaign),
                    )
                    _name_bars(bars, f"series-{channel}-{slug(campaign)}-{kind}", xs)
                    bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
            if split in index:
                line = ax.axvline(index[split] - 0.5, color="#444444", linewidth=1, linestyle="--")
                line.set_gid(f"today-{channel}")
            ax.set_ylabel(labels[channel])
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="upper left", fontsize=7, ncols=3, frameon=False)
        ticks = [i for i, day in enumerate(days) if day.weekday() == 0]
        axes[-1].set_xticks(ticks, [days[i].strftime("%d/%m") for i in ticks])
        axes[-1].set_xlim(-0.7, len(days) - 0.3)
        figure.suptitle(labels["title"], fontsize=10)
        return _svg(figure, name="chart-daily", title=labels["title"])


def pressure_chart(per_contact: Mapping[int, int], *, cap: int, labels: Mapping[str, str]) -> str:
    """How many contacts got 1, 2, 3… messages in the cadence window, and the cap."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        figure, (ax,) = _figure(2.8)
        most = max([cap + 1, *per_contact])
        xs = list(range(1, most + 1))
        heights = [per_contact.get(x, 0) for x in xs]
        colours = [PALETTE[0] if x <= cap else "#D55E00" for x in xs]
        bars = ax.bar(xs, heights, color=colours, width=0.7)
        _name_bars(bars, "series-contacts", xs)
        line = ax.axvline(
            cap + 0.5, color="#D55E00", linewidth=1.5, linestyle="--", label=labels["cap"]
        )
        line.set_gid("cap")
        ax.set_xticks(xs)
        ax.set_xlabel(labels["x"])
        ax.set_ylabel(labels["y"])
        ax.legend(loc="upper right", fontsize=7, frameon=False)
        figure.suptitle(labels["title"], fontsize=10)
        return _svg(figure, name="chart-pressure", title=labels["title"])


def held_chart(
    held: Sequence[HeldCount],
    *,
    start: date,
    end: date,
    split: date,
    labels: Mapping[str, str],
) -> str:
    """Deferred (above) and missed (below) messages per day, stacked by reason."""
    import matplotlib

    days = _days(start, end)
    index = {day: i for i, day in enumerate(days)}
    with matplotlib.rc_context(_RC):
        figure, axes = _figure(4.0, rows=2)
        for ax, status in zip(axes, ("deferred", "missed"), strict=True):
            bottoms = [0.0] * len(days)
            for code, colour in REASON_COLOURS.items():
                heights = [0.0] * len(days)
                for h in held:
                    if h.status == status and h.reason == code and h.day in index:
                        heights[index[h.day]] += h.count
                if not any(heights):
                    continue
                xs, tall, base = _drawn(heights, bottoms)
                bars = ax.bar(
                    xs,
                    tall,
                    bottom=base,
                    color=colour,
                    width=0.85,
                    hatch="//" if code == "planned" else None,
                    label=labels[f"reason_{code}"],
                )
                _name_bars(bars, f"series-{status}-{code}", xs)
                bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
            if split in index:
                ax.axvline(index[split] - 0.5, color="#444444", linewidth=1, linestyle="--")
            ax.set_ylabel(labels[status])
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="upper left", fontsize=7, ncols=3, frameon=False)
        ticks = [i for i, day in enumerate(days) if day.weekday() == 0]
        axes[-1].set_xticks(ticks, [days[i].strftime("%d/%m") for i in ticks])
        axes[-1].set_xlim(-0.7, len(days) - 0.3)
        figure.suptitle(labels["title"], fontsize=10)
        return _svg(figure, name="chart-held", title=labels["title"])


def comeback_chart(results: Sequence[CampaignResult], *, labels: Mapping[str, str]) -> str:
    """Per campaign, the visit rate of those who got it beside those held out, and the
    uplift's interval as a line from low to high (percentage points)."""
    import matplotlib

    measured = [r for r in results if r.uplift is not None]
    with matplotlib.rc_context(_RC):
        figure, (ax,) = _figure(1.2 + 0.55 * max(1, len(measured)))
        ys = list(range(len(measured)))
        treated = [100 * r.visits_treated / r.treated for r in measured]
        control = [100 * r.visits_control / r.control for r in measured]
        bars = ax.barh([y + 0.2 for y in ys], treated, height=0.38, color=PALETTE[0])
        bars.set_label(labels["treated"])
        _name_bars(bars, "series-treated", ys)
        bars = ax.barh([y - 0.2 for y in ys], control, height=0.38, color=PALETTE[1])
        bars.set_label(labels["control"])
        _name_bars(bars, "series-control", ys)
        for y, r in zip(ys, measured, strict=True):
            assert r.uplift is not None
            up = r.uplift
            text = labels["uplift"].format(
                uplift=f"{100 * up.estimate:+.1f}",
                low=f"{100 * up.low:+.1f}",
                high=f"{100 * up.high:+.1f}",
            )
            ax.annotate(
                text,
                (max(treated[y], control[y]), y),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
                gid=f"uplift-{slug(r.campaign)}",
            )
        ax.set_yticks(ys, [r.campaign for r in measured])
        ax.set_xlabel(labels["x"])
        ax.set_xlim(0, max([10.0, *treated, *control]) * 1.6)
        ax.legend(loc="lower right", fontsize=7, frameon=False)
        figure.suptitle(labels["title"], fontsize=10)
        return _svg(figure, name="chart-comeback", title=labels["title"])


def redeemed_chart(
    daily: Sequence[tuple[date, int]], *, start: date, end: date, labels: Mapping[str, str]
) -> str:
    """Coupons redeemed per day over the period."""
    import matplotlib

    days = _days(start, end)
    counts = dict(daily)
    with matplotlib.rc_context(_RC):
        figure, (ax,) = _figure(2.2)
        heights = [float(counts.get(day, 0)) for day in days]
        xs, tall, _ = _drawn(heights, [0.0] * len(days))
        bars = ax.bar(xs, tall, color=PALETTE[2], width=0.85)
        _name_bars(bars, "series-redeemed", xs)
        ticks = [i for i, day in enumerate(days) if day.weekday() == 0]
        ax.set_xticks(ticks, [days[i].strftime("%d/%m") for i in ticks])
        ax.set_xlim(-0.7, len(days) - 0.3)
        ax.set_ylabel(labels["y"])
        figure.suptitle(labels["title"], fontsize=10)
        return _svg(figure, name="chart-redeemed", title=labels["title"])
