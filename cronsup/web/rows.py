"""The overview's table rows as HTML, written in Python: 1,000 jobs through Jinja took most of the page's time.

Everything from a job (name, description, schedule, zone) goes through escape(); the rest is ours.
"""

from __future__ import annotations

from markupsafe import Markup, escape


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


# Each job's row as last written, with what it was written from: a reload of 1,000 settled
# jobs then writes none (what the row shows comes from objects the view keeps, so comparing
# is mostly comparing identities).
_ROWS: dict[str, tuple[tuple, str]] = {}


def _source(j: dict) -> tuple:
    return (j["url"], j["description"], j["schedule"], j["zone"], j["next_run"], j["shown_next"], j["last"],
            j["success_rate"], j["shown_median"], j["strip_svg"], bool(j["running"]), j["paused"], j["enabled"])


def job_rows(d: dict) -> Markup:
    out = []
    if len(_ROWS) > 100_000:
        _ROWS.clear()
    for j in d["jobs"]:
        source = _source(j)
        kept = _ROWS.get(j["name"])
        if kept is not None and kept[0] == source:
            out.append(kept[1])
            continue
        out.append(_row(j))
        _ROWS[j["name"]] = (source, out[-1])
    if not out:
        what = f"No job matches “{escape(d['query'])}”." if d["query"] else "No jobs."
        out.append(f'<tr><td colspan="8" class="empty">{what}</td></tr>')
    return Markup("".join(out))


def _row(j: dict) -> str:
    last = j["last"]
    name = escape(j["name"])
    tags = "".join((
        '<span class="tag s-running">running</span>' if j["running"] else "",
        '<span class="tag">paused</span>' if j["paused"] else "",
        "" if j["enabled"] else '<span class="tag">disabled</span>',
    ))
    desc = f'<div class="desc">{escape(j["description"])}</div>' if j["description"] else ""
    zone = f'<div class="zone">{escape(j["zone"])}</div>' if j["zone"] else ""
    nxt = (f'<time datetime="{escape(j["next_run"])}">{escape(j["shown_next"])}</time>' if j["next_run"]
           else escape(j["shown_next"]))
    if last:
        status = escape(last["status"])
        code = f" ({int(last['exit_code'])})" if last["exit_code"] not in (None, 0) else ""
        result = f'<a class="status s-{status}" href="{escape(last["url"])}">{status}{code}</a>'
        when = f'{escape(last["shown_start"])}<div class="took">{escape(last["shown_took"])}</div>'
    else:
        status, result, when = "", '<span class="empty">never ran</span>', ""
    return (
        f'<tr class="job" data-job="{name}" data-status="{status}">'
        f'<td><a class="name" href="{escape(j["url"])}">{name}</a>{tags}{desc}</td>'
        f"<td><code>{escape(j['schedule'])}</code>{zone}</td><td>{nxt}</td><td>{result}</td><td>{when}</td>"
        f'<td class="num">{_pct(j["success_rate"])}</td><td class="num">{escape(j["shown_median"])}</td>'
        f"<td>{j['strip_svg']}</td></tr>\n")
