"""The web view's Starlette application: routes, the HTML pages and their /api/ JSON twins, headers and auth.

Read-only: every route is GET (HEAD); the run store is opened read-only per request.
"""

from __future__ import annotations

import base64
import datetime as dt
import binascii
import hashlib
import importlib
import json
import logging
import os
from collections.abc import Callable
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cronsup import clock
from cronsup.store import RunLogError
from cronsup.web import data, rows, svg
from cronsup.web.auth import AuthFile, AuthFileError

log = logging.getLogger("cronsup.web")
HERE = os.path.dirname(os.path.abspath(__file__))



def _style() -> str:
    """The two stylesheets as each page carries them in its <style>: a first paint then waits
    for no request (a stylesheet blocks it, and a new visitor's browser has none cached)."""
    parts = []
    for name in ("style.css", "ansi.css"):
        with open(os.path.join(HERE, "static", name), encoding="utf-8") as f:
            parts.append(f.read())
    return "\n".join(parts)


STYLE = _style()
# No inline script anywhere, and no inline style but our own stylesheet, allowed by its hash
# (style attributes stay refused): a job's output or name that slipped past escaping still
# could not run nor restyle the page. Pictures are inline SVG, so img-src needs only 'self'.
CSP = ("default-src 'none'; script-src 'self'; "
       f"style-src 'self' 'sha256-{base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()}'; "
       "img-src 'self'; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals.update(chart=svg.chart, graph_svg=svg.graph, job_rows=rows.job_rows, style=Markup(STYLE))
    env.filters["when"] = lambda t: "-" if not t else data.shown(dt.datetime.fromisoformat(t).timestamp())
    env.filters["pct"] = lambda v: "-" if v is None else f"{v * 100:.0f}%"
    return env


def create_app(src: data.Source, *, auth: AuthFile | None = None,
               now: Callable[[], float] = clock.wall) -> Guard:
    env = _env()

    def page(template: str, request: Request, status_code: int = 200, **values) -> HTMLResponse:
        def url_with(**changes) -> str:
            params = dict(request.query_params)
            for key, value in changes.items():
                if value is None or value == "":
                    params.pop(key, None)
                else:
                    params[key] = str(value)
            return request.url.path + ("?" + urlencode(params) if params else "")

        api = "/api/overview" if request.url.path == "/" else "/api" + request.url.path
        api += "?" + request.url.query if request.url.query else ""
        html = env.get_template(template).render(request=request, url_with=url_with, api=api,
                                                 zone=data.zone_name(), **values)
        return HTMLResponse(html, status_code=status_code)

    def twin(build: Callable[..., dict], template: str) -> tuple[Callable, Callable]:
        """The HTML page and its JSON twin from one function (told which it builds)."""

        def html(request: Request) -> Response:
            try:
                return page(template, request, d=build(request, html=True))
            except data.NotFound as e:
                return page("error.html", request, 404, message=str(e), title="Not found")
            except data.BadRequest as e:
                return page("error.html", request, 400, message=str(e), title="Bad request")
            except RunLogError as e:
                return page("error.html", request, 503, message=e.message, title="Cannot read the run log")

        def api(request: Request) -> Response:
            try:
                return _json(build(request))
            except data.NotFound as e:
                return _json({"error": str(e)}, 404)
            except data.BadRequest as e:
                return _json({"error": str(e)}, 400)
            except RunLogError as e:
                return _json({"error": e.message}, 503)

        return html, api

    q = lambda request, key, default=None: request.query_params.get(key, default)  # noqa: E731

    def overview(request: Request, html: bool = False) -> dict:
        sort = q(request, "sort", "file")
        return data.overview(src, now(), query=q(request, "q", "") or "", sort=sort,
                             desc=q(request, "order") == "desc", html=html)

    def job(request: Request, html: bool = False) -> dict:
        return data.job(src, request.path_params["name"], now(), status=q(request, "status"),
                        since=q(request, "since"), until=q(request, "until"), before=q(request, "before"))

    def run(request: Request, html: bool = False) -> dict:
        offset = data.parse_id(q(request, "offset"), "offset") or 0
        return data.run(src, request.path_params["run_id"], now(), offset=max(offset, 0))

    def failures(request: Request, html: bool = False) -> dict:
        return data.failures(src, now(), since=q(request, "since"), until=q(request, "until"),
                             before=q(request, "before"))

    def graph(request: Request, html: bool = False) -> dict:
        return data.graph(src, now())

    def output(request: Request) -> Response:
        """A part of a run's output from ?offset= (the live view and "load more" ask this)."""
        try:
            offset = data.parse_id(q(request, "offset"), "offset") or 0
            size = min(max(data.parse_id(q(request, "size"), "size") or data.OUTPUT_MORE, 1), data.OUTPUT_MAX)
            runlog = src.open()
            if runlog is None:
                return _json({"error": "no run log yet"}, 404)
            try:
                found = runlog.run(request.path_params["run_id"])
                if found is None:
                    return _json({"error": f"no run {request.path_params['run_id']} in the run log"}, 404)
                part = data.output(runlog, found, max(offset, 0), size)
            finally:
                runlog.close()
        except data.BadRequest as e:
            return _json({"error": str(e)}, 400)
        except RunLogError as e:
            return _json({"error": e.message}, 503)
        part["status"] = str(found.status)
        return _json(part)

    def raw_output(request: Request) -> Response:
        """The whole output as text/plain (nosniff: a browser never takes it for HTML)."""
        runlog = src.open()
        if runlog is None:
            return PlainTextResponse("no run log yet\n", 404)
        try:
            found = runlog.output(request.path_params["run_id"])
        finally:
            runlog.close()
        if found is None:
            return PlainTextResponse("no output saved for this run\n", 404)
        return Response(found[0], media_type="text/plain; charset=utf-8")

    routes = []
    pages: dict[str, Callable] = {}
    for path, build, template in [("/", overview, "overview.html"), ("/jobs/{name:path}", job, "job.html"),
                                  ("/runs/{run_id:int}", run, "run.html"), ("/failures", failures, "failures.html"),
                                  ("/graph", graph, "graph.html")]:
        html, api = twin(build, template)
        pages[path], pages["/api/overview" if path == "/" else "/api" + path] = html, api
        routes.append(Route(path, html, methods=["GET", "HEAD"]))
        routes.append(Route("/api/overview" if path == "/" else "/api" + path, api, methods=["GET", "HEAD"]))
    routes += [
        Route("/api/runs/{run_id:int}/output", output, methods=["GET", "HEAD"]),
        Route("/runs/{run_id:int}/output.txt", raw_output, methods=["GET", "HEAD"]),
        Route("/api", lambda request: _json({"pages": API_INDEX}), methods=["GET", "HEAD"]),
        Route("/api/", lambda request: _json({"pages": API_INDEX}), methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]
    def warm() -> None:
        """A first request's one-time work, done before the server says it listens: the
        imports, the templates compiled, the jobs file parsed, and each page built once, so
        what the overview keeps of each job's runs is there for the first visitor."""
        from cronsup.web import ansi  # noqa: F401

        try:  # what Starlette's thread pool imports on first use (a private module: may move)
            importlib.import_module("anyio._backends._asyncio")
        except ImportError:
            pass

        for name in env.list_templates():
            env.get_template(name)
        first = "-"
        try:
            runlog = src.open()
            try:
                specs, _ = src.specs(runlog)
                first = specs[0].name if specs else first
            finally:
                if runlog is not None:
                    runlog.close()
        except RunLogError:
            pass
        for path, params in [("/", {}), ("/api/overview", {}), ("/jobs/{name:path}", {"name": first}),
                             ("/failures", {}), ("/graph", {})]:
            try:
                pages[path](Request({"type": "http", "method": "GET", "path": path.replace("{name:path}", first),
                                     "query_string": b"", "headers": [], "path_params": params,
                                     "scheme": "http", "server": ("127.0.0.1", 80), "root_path": ""}))
            except Exception:  # noqa: BLE001 (the request itself will show what is wrong)
                log.warning("warming %s", path, exc_info=True)

    # Guard outside Starlette's own error handling, so a 500 carries the headers too.
    guard = Guard(Starlette(routes=routes), auth=auth)
    guard.warm = warm
    return guard


API_INDEX = {
    "/api/overview": "every job (?q= name search, ?sort=file|name|next|last|status|rate|median, ?order=desc)",
    "/api/jobs/NAME": "one job (?status=failed,timeout|failures, ?since=, ?until=, ?before=RUN_ID)",
    "/api/runs/ID": "one run with a part of its output (?offset=BYTES)",
    "/api/runs/ID/output": "a part of a run's output (?offset=BYTES, ?size=BYTES up to 1 MiB, default 256 KiB)",
    "/api/failures": "final failures of every job (?since=24h, ?until=, ?before=RUN_ID)",
    "/api/graph": "the after chains: nodes and edges",
}


def _json(value: dict, status_code: int = 200) -> Response:
    # Compact: the overview of 1,000 jobs is megabytes indented (pipe it to `jq` to read it).
    return Response(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str),
                    status_code=status_code, media_type="application/json")


class Guard:
    """Every response gets the security headers; with an auth file, every request needs a
    user (HTTP Basic) or a token (Authorization: Bearer); else 401. Only GET and HEAD."""

    def __init__(self, app, auth: AuthFile | None):
        self.app, self.auth = app, auth
        self.warm: Callable[[], None] = lambda: None  # create_app sets it

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        began, began_cpu = clock.mono(), clock.cpu()

        static = scope["path"].startswith("/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                if static:  # the stylesheets and script: a page load need not ask for them again
                    message["headers"] = [*message.get("headers", []), (b"cache-control", b"max-age=3600")]
                # What bench/bench_web.py reads: wall time, and CPU time (the same on a quiet host).
                took, cpu = (clock.mono() - began) * 1000, (clock.cpu() - began_cpu) * 1000
                message["headers"] = [*message.get("headers", []), *HEADERS,
                                      (b"server-timing", f"app;dur={took:.1f}, cpu;dur={cpu:.1f}".encode())]
            await send(message)

        if scope["method"] not in ("GET", "HEAD"):
            return await _plain(send_with_headers, 405, "read-only: only GET and HEAD\n",
                                [(b"allow", b"GET, HEAD")])
        if self.auth is not None and not self._allowed(scope):
            return await _plain(send_with_headers, 401, "who are you? (a user of the --auth-file)\n",
                                [(b"www-authenticate", b'Basic realm="cronsup", charset="UTF-8"')])
        await self.app(scope, receive, send_with_headers)

    def _allowed(self, scope) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        try:
            self.auth.reload()
        except AuthFileError as e:
            log.warning("%s (the entries read before stay in use)", e)
        kind, _, value = header.partition(" ")
        if kind.lower() == "bearer" and value:
            return self.auth.check_token(value.strip())
        if kind.lower() == "basic" and value:
            try:
                user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return bool(sep) and self.auth.check_basic(user, password)
        return False


async def _plain(send, status: int, text: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})
