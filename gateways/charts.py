"""A latency history as a small server-rendered SVG with axes and times: no script, no CDN."""

from __future__ import annotations

from django.utils import dateformat, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 520, 150
LEFT, RIGHT, TOP = 52, 12, 12
PLOT_BOTTOM = 96  # the 0 ms line
FAIL_ROW = 114  # failed probes have no latency: they get their own row under the axis, never a 0 ms point
TIME_ROW = 140
TIME_FORMAT = "m-d H:i"


def _when(moment) -> str:
    return dateformat.format(timezone.localtime(moment), TIME_FORMAT)


def latency_svg(probes: list) -> SafeString:
    """Latency in ms over time, oldest left; failed probes are red marks in a row of their own."""
    if not probes:
        return mark_safe('<p class="muted">No probes yet.</p>')
    start, end = probes[0].created_at, probes[-1].created_at
    span = (end - start).total_seconds()
    latencies = [p.latency_ms for p in probes if p.verdict == "ok" and p.latency_ms]
    top = max(latencies, default=0) or 1

    def x(probe) -> float:
        if span <= 0:
            return round((LEFT + WIDTH - RIGHT) / 2, 1)
        return round(LEFT + (probe.created_at - start).total_seconds() / span * (WIDTH - LEFT - RIGHT), 1)

    def y(latency: int) -> float:
        return round(PLOT_BOTTOM - latency / top * (PLOT_BOTTOM - TOP), 1)

    # Lines join consecutive successful probes only: a failure breaks the line instead of dropping it to 0.
    runs: list[list[tuple[float, float]]] = [[]]
    for probe in probes:
        if probe.verdict == "ok" and probe.latency_ms:
            runs[-1].append((x(probe), y(probe.latency_ms)))
        elif runs[-1]:
            runs.append([])
    lines = format_html_join(
        "",
        '<polyline points="{}" class="line"/>',
        ((" ".join(f"{px},{py}" for px, py in run),) for run in runs if len(run) > 1),
    )
    dots = format_html_join(
        "", '<circle cx="{}" cy="{}" r="2.5" class="dot"/>', (point for run in runs for point in run)
    )
    fails = [x(p) for p in probes if p.verdict != "ok"]
    crosses = format_html_join(
        "",
        '<path d="M{} {}l6 6M{} {}l-6 6" class="fail"/>',
        ((fx - 3, FAIL_ROW - 3, fx + 3, FAIL_ROW - 3) for fx in fails),
    )
    zone = timezone.localtime(end).tzname() or ""
    label = (
        f"Latency of the last {len(probes)} probes, {_when(start)} to {_when(end)} {zone}: "
        + (f"fastest {min(latencies)} ms, slowest {max(latencies)} ms" if latencies else "none succeeded")
        + (f"; {len(fails)} failed" if fails else "")
        + "."
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{label}">'
        '<line x1="{left}" y1="{top}" x2="{right}" y2="{top}" class="gridline"/>'
        '<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="gridline"/>'
        '<text x="{ylabel}" y="{top_text}" class="axis" text-anchor="end">{top_ms} ms</text>'
        '<text x="{ylabel}" y="{bottom_text}" class="axis" text-anchor="end">0 ms</text>'
        "{lines}{dots}"
        '<text x="{ylabel}" y="{fail_text}" class="axis" text-anchor="end">failed</text>{crosses}'
        '<text x="{left}" y="{time}" class="axis">{start}</text>'
        '<text x="{right}" y="{time}" class="axis" text-anchor="end">{end} {zone}</text>'
        "</svg>",
        w=WIDTH,
        h=HEIGHT,
        label=label,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=PLOT_BOTTOM,
        ylabel=LEFT - 6,
        top_text=TOP + 4,
        bottom_text=PLOT_BOTTOM + 4,
        top_ms=top if latencies else "-",
        lines=lines,
        dots=dots,
        fail_text=FAIL_ROW + 4,
        crosses=crosses,
        time=TIME_ROW,
        start=_when(start),
        end=_when(end),
        zone=zone,
    )
