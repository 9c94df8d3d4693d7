"""A latency history as a small server-rendered SVG: no script, no CDN."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 320, 80, 4


def latency_svg(probes: list) -> SafeString:
    """Points for each probe with a latency, oldest left; failed probes are red dots on the floor."""
    if not probes:
        return mark_safe('<p class="muted">No probes yet.</p>')
    latencies = [p.latency_ms or 0 for p in probes]
    top = max(max(latencies), 1)
    step = (WIDTH - 2 * PAD) / max(len(probes) - 1, 1)

    def point(i: int, value: int) -> tuple[float, float]:
        return round(PAD + i * step, 1), round(HEIGHT - PAD - (value / top) * (HEIGHT - 2 * PAD), 1)

    ok_points = [point(i, p.latency_ms) for i, p in enumerate(probes) if p.verdict == "ok" and p.latency_ms]
    failed = [point(i, 0) for i, p in enumerate(probes) if p.verdict != "ok"]
    line = " ".join(f"{x},{y}" for x, y in ok_points)
    dots = format_html_join("", '<circle cx="{}" cy="{}" r="3" class="fail"/>', failed)
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="Latency of the last {} probes, up to {} ms">'
        '<polyline points="{}" class="line"/>{}<text x="{}" y="12" class="axis">{} ms</text></svg>',
        WIDTH,
        HEIGHT,
        len(probes),
        top,
        line,
        dots,
        PAD,
        top,
    )
