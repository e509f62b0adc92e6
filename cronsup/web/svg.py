"""The web view's pictures, drawn on the server as SVG: a strip of runs, a chart of durations, the job graph.

Every text in them goes through markupsafe.escape; colours are CSS classes (s-success,
s-failed...), so the pictures follow the stylesheet and need no inline style.
"""

from __future__ import annotations

import math

from markupsafe import Markup, escape

from cronsup.model import RunStatus
from cronsup.store import RunMark
from cronsup.web.source import Stamps, duration, mark_took


_STATUSES = frozenset(str(status) for status in RunStatus)


def strip_svg(found: list[RunMark], now: float, stamps: Stamps, slots: int,
              cells: dict[RunMark, tuple[str, str]] | None = None) -> Markup:
    """A strip's runs as SVG for the page: each cell links to its run and names it on hover.
    Built in one pass, as 1,000 jobs make 30,000 cells. Nothing in a cell comes from a job:
    ids are numbers, statuses one of RunStatus, times and zone names ours (escaped once).
    `cells` keeps an ended run's cell (all but its place) between calls: when each job of
    the overview has a new run, only the new cells are drawn."""
    x = (slots - len(found)) * 10
    shown = stamps.shown
    out = []
    for m in reversed(found):
        cell = cells.get(m) if cells is not None else None
        if cell is None:
            run_id, status, started, finished, scheduled = m
            run_id = int(run_id)
            if status not in _STATUSES:
                status = "unknown"
            took = mark_took(m, now)
            when = shown(started if started is not None else scheduled)
            cell = (f'<a href="/runs/{run_id}"><rect class="s-{status}" x="',
                    f'"><title>run {run_id} · {status} · {when} · {duration(took)}'
                    f"{' so far' if status == 'running' else ''}</title></rect></a>")
            if cells is not None and status != "running":  # a running cell's time grows
                cells[m] = cell
        out.append(f"{cell[0]}{x}{cell[1]}")
        x += 10
    width = slots * 10 - 2
    return Markup(f'<svg class="strip" width="{width}" height="16" viewBox="0 0 {width} 16" role="img" '
                  f'aria-label="last {len(found)} runs">{"".join(out)}</svg>')


def _cls(status: str | None) -> str:
    return f"s-{status}" if status else "s-none"


def _tip(run: dict) -> str:  # a chart point's hover text
    took = run.get("shown_took") or "-"
    return f"run {run['id']} · {run['status']} · {run['shown_start']} · {took}"


def chart(runs: list[dict], width: int = 900, height: int = 260) -> Markup:
    """Durations over time: one point a run (x: start, y: duration), coloured by status;
    hovering a point shows the run (its <title>), clicking opens it."""
    import datetime as dt

    from cronsup import schedule

    zone = schedule.load_zone(None)
    points = [dict(r, _t=dt.datetime.fromisoformat(r["started_at"]).timestamp(), _d=r["duration_s"])
              for r in runs if r.get("started_at") and r.get("duration_s") is not None]
    if not points:
        return Markup('<p class="empty">No runs with a duration in this range.</p>')
    left, right, top, bottom = 64, 16, 12, 36
    ts = [r["_t"] for r in points]
    ds = [r["_d"] for r in points]
    t0, t1 = min(ts), max(ts)
    if t1 == t0:
        t0, t1 = t0 - 60, t1 + 60
    dmax = _nice(max(ds) or 1.0)
    pw, ph = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * pw

    def y(d: float) -> float:
        return top + ph - d / dmax * ph

    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             'role="img" aria-label="duration of each run over time">']
    for i in range(5):
        d = dmax * i / 4
        yy = y(d)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}"/>'
                     f'<text class="axis" x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{escape(_secs(d))}</text>')
    for i in range(5):
        t = t0 + (t1 - t0) * i / 4
        xx = x(t)
        label = dt.datetime.fromtimestamp(t, zone).strftime("%m-%d %H:%M" if t1 - t0 > 86400 else "%H:%M:%S")
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text class="axis" x="{xx:.1f}" y="{height - 12}" text-anchor="{anchor}">{escape(label)}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(r['_t']):.1f},{y(r['_d']):.1f}" for i, r in enumerate(points))
    parts.append(f'<path class="trend" d="{path}"/>')
    for r in points:
        shape = "circle" if r["status"] == "success" else "rect"
        cx, cy = x(r["_t"]), y(r["_d"])
        cls = f'point {_cls(r["status"])}'
        if shape == "circle":
            mark = f'<circle class="{cls}" cx="{cx:.1f}" cy="{cy:.1f}" r="4" data-status="{escape(r["status"])}">'
            end = "</circle>"
        else:  # a failure is a square: told apart without colour too
            mark = (f'<rect class="{cls}" x="{cx - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8" '
                    f'data-status="{escape(r["status"])}">')
            end = "</rect>"
        parts.append(f'<a href="{escape(r["url"])}">{mark}<title>{escape(_tip(r))}</title>{end}</a>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice(v: float) -> float:
    """A round axis maximum at or above v."""
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _secs(d: float) -> str:
    if d >= 3600:
        return f"{d / 3600:.1f}h"
    if d >= 60:
        return f"{d / 60:.1f}m"
    return f"{d:.3g}s"


def graph(nodes: list[dict], edges: list[dict]) -> Markup:
    """The after chains: columns by depth (upstream left), arrows to downstream jobs."""
    if not nodes:
        return Markup('<p class="empty">No job has an <code>after</code> list: there are no chains.</p>')
    bw, bh, gx, gy, pad = 180, 44, 70, 18, 16
    columns: dict[int, list[dict]] = {}
    for node in nodes:
        columns.setdefault(node["depth"], []).append(node)
    where: dict[str, tuple[float, float]] = {}
    for d, col in columns.items():
        for i, node in enumerate(col):
            where[node["name"]] = (pad + d * (bw + gx), pad + i * (bh + gy))
    width = pad * 2 + (max(columns) + 1) * (bw + gx) - gx
    height = pad * 2 + max(len(c) for c in columns.values()) * (bh + gy) - gy
    parts = [f'<svg class="graph" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             'role="img" aria-label="jobs and the jobs they run after">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
             'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/>'
             "</marker></defs>"]
    for e in edges:
        (x1, y1), (x2, y2) = where[e["from"]], where[e["to"]]
        sx, sy, ex, ey = x1 + bw, y1 + bh / 2, x2, y2 + bh / 2
        mid = (sx + ex) / 2
        parts.append(f'<path class="edge" d="M{sx:.0f},{sy:.0f} C{mid:.0f},{sy:.0f} {mid:.0f},{ey:.0f} '
                     f'{ex:.0f},{ey:.0f}" marker-end="url(#arrow)" data-from="{escape(e["from"])}" '
                     f'data-to="{escape(e["to"])}"/>')
    for node in nodes:
        x0, y0 = where[node["name"]]
        name = node["name"] if len(node["name"]) <= 22 else node["name"][:21] + "…"
        status = node["status"] or "never ran"
        tip = f"{node['name']} · {node['schedule']} · last: {status}"
        parts.append(f'<a href="{escape(node["url"])}"><g class="node {_cls(node["status"])}" '
                     f'data-job="{escape(node["name"])}" data-status="{escape(node["status"] or "")}">'
                     f'<rect x="{x0}" y="{y0}" width="{bw}" height="{bh}" rx="6"/>'
                     f'<text class="name" x="{x0 + 10}" y="{y0 + 19}">{escape(name)}</text>'
                     f'<text class="sub" x="{x0 + 10}" y="{y0 + 35}">{escape(status)}</text>'
                     f"<title>{escape(tip)}</title></g></a>")
    parts.append("</svg>")
    return Markup("".join(parts))
