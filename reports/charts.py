"""Pictures as inline SVG (no script, no external assets)."""

from __future__ import annotations

from html import escape

from results import Verdict

COLOURS = {Verdict.PASS: "#2e7d32", Verdict.NON_STRICT: "#f9a825", Verdict.INFO: "#1e88e5",
           Verdict.UNSUPPORTED: "#9e9e9e", Verdict.FAIL: "#c62828", Verdict.ERROR: "#6a1b9a"}


def verdict_bar(counts: dict[str, int], width: int = 360, height: int = 16) -> str:
    """A stacked bar of verdict counts, one colour per verdict."""
    total = sum(counts.values()) or 1
    x = 0.0
    parts = []
    for verdict in Verdict:
        count = counts.get(verdict.value, 0)
        if not count:
            continue
        w = width * count / total
        parts.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" '
                     f'fill="{COLOURS[verdict]}"><title>{verdict.value}: {count}</title></rect>')
        x += w
    return (f'<svg class="bar" width="{width}" height="{height}" role="img" '
            f'aria-label="verdicts">{"".join(parts)}</svg>')


def grouped_bars(title: str, unit: str, series: dict[str, dict[str, float]],
                 width: int = 520, bar: int = 18) -> str:
    """Horizontal bars: for each group (a target), one bar per series member (a mode)."""
    groups = list(series)
    members = sorted({m for values in series.values() for m in values})
    top = max((v for values in series.values() for v in values.values()), default=1) or 1
    palette = ["#3949ab", "#00897b", "#8e24aa", "#f4511e"]
    label_w, row_h = 90, bar * len(members) + 10
    height = 30 + row_h * len(groups) + 20
    out = [f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
           f'<text x="0" y="16" class="chart-title">{escape(title)}</text>']
    for g, group in enumerate(groups):
        y0 = 30 + g * row_h
        out.append(f'<text x="0" y="{y0 + row_h / 2:.0f}" class="chart-label">'
                   f'{escape(group)}</text>')
        for m, member in enumerate(members):
            value = series[group].get(member)
            if value is None:
                continue
            w = (width - label_w - 110) * value / top
            y = y0 + m * bar
            out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar - 3}" '
                       f'fill="{palette[m % len(palette)]}"><title>{escape(group)} {member}: '
                       f'{value:,.1f} {unit}</title></rect>')
            out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar - 6}" class="chart-value">'
                       f'{member} {value:,.1f} {escape(unit)}</text>')
    out.append("</svg>")
    return "".join(out)


def bench_charts(bench: dict) -> str:  # type: ignore[type-arg]
    """Jobs/s and server CPU per job for each target, from ``gearspec bench --json``."""
    rate = {t["target"]: {m: f["jobs_per_second"] for m, f in t["modes"].items()}
            for t in bench["targets"]}
    cpu = {t["target"]: {m: f["cpu_us_per_job"] for m, f in t["modes"].items()
                         if f.get("cpu_us_per_job") is not None} for t in bench["targets"]}
    return grouped_bars("Throughput", "jobs/s", rate) + grouped_bars(
        "Server CPU per job (less is better)", "µs", cpu)
