"""`cronsup web`: serve the read-only web view (SPEC section 7), and make auth-file entries."""

from __future__ import annotations

import ipaddress
import socket
import sys

import click

from cronsup.cli import EXIT_USAGE, common_options, fail, state_dir

DEFAULT_LISTEN = "127.0.0.1:8467"


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:8467', '[::1]:8467', 'localhost:80' or ':8467' (all addresses) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise click.BadParameter(f"{text!r}: give ADDRESS:PORT, such as 127.0.0.1:8467")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
        if not 0 <= number < 65536:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{text!r}: the port must be a number from 1 to 65535 (0: any free port)") from None
    return host or "0.0.0.0", number


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback one (a name is resolved)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in found)


@click.command("web")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="ADDRESS:PORT",
              help="Where to serve. An address other than loopback needs --auth-file.")
@click.option("--auth-file", metavar="FILE", help="Users (scrypt-hashed passwords) and tokens who may see the view; "
              "every request then needs one.")
@click.option("--system", is_flag=True, help="The jobs file is in the system format (a user field per line).")
@click.option("--hash-password", "hash_user", metavar="USER",
              help="Print an auth-file line for USER with a password read from the terminal (or stdin), and exit.")
@click.option("--new-token", "token_name", metavar="NAME",
              help="Print a new token (on stderr) and the auth-file line that accepts it (on stdout), and exit.")
@common_options
def web(listen: str, auth_file: str | None, system: bool, hash_user: str | None, token_name: str | None,
        jobs_path: str, db: str) -> None:
    """Serve a read-only view of the run log in a browser: every job, each job's history and
    durations, each run's output (live while it runs), recent failures and the job graph,
    each page with a JSON twin under /api/. It never starts, stops or changes a job.

    \b
    Examples:
      cronsup web                                    # http://127.0.0.1:8467/
      cronsup web --hash-password alice >> /etc/cronsup/web-users
      cronsup web --listen 0.0.0.0:8467 --auth-file /etc/cronsup/web-users
    """
    from cronsup.web import auth

    if hash_user is not None:
        password = click.prompt(f"password for {hash_user}", hide_input=True,
                                confirmation_prompt=sys.stdin.isatty(), err=True)
        try:
            click.echo(auth.hash_password(hash_user, password))
        except ValueError as e:
            fail(str(e), EXIT_USAGE)
        return
    if token_name is not None:
        try:
            token, line = auth.new_token(token_name)
        except ValueError as e:
            fail(str(e), EXIT_USAGE)
        click.echo(f"token for {token_name} (send it as 'Authorization: Bearer TOKEN'; it is not stored): {token}",
                   err=True)
        click.echo(line)
        return
    try:
        host, port = parse_listen(listen)
    except click.BadParameter as e:
        fail(f"--listen {e.message}", EXIT_USAGE)
    if auth_file is None and not is_loopback(host):
        fail(f"--listen {listen}: refusing to serve the run log (every job's output) on an address other "
             "than loopback without --auth-file; make one with `cronsup web --hash-password USER > FILE`, "
             "or use --listen 127.0.0.1:PORT behind your own proxy", EXIT_USAGE)
    guard = None
    if auth_file is not None:
        try:
            guard = auth.AuthFile(auth_file)
        except auth.AuthFileError as e:
            fail(str(e))

    try:
        import uvicorn

        from cronsup.web.app import create_app
    except ImportError as e:
        fail(f"cronsup web needs the web extra ({e.name} is missing): pip install 'cronsup[web]'")
    from cronsup.web import data

    src = data.Source(db=db, jobs=jobs_path, state_dir=state_dir(), system=system)
    problem = data.check_readable(src)
    if problem:
        fail(problem)
    app = create_app(src, auth=guard)
    sock = _bind(host, port, listen)
    app.warm()  # before the URL: the first request then costs what a reload does
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    # The URL on stdout (for scripts and `make run`), the rest on stderr.
    click.echo(f"cronsup web: serving the run log {db} (jobs file {jobs_path}"
               f"{', auth file ' + auth_file if auth_file else ''}); Ctrl-C stops", err=True)
    click.echo(f"http://{shown}:{port}/")
    sys.stdout.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False,
                            proxy_headers=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host: str, port: int, listen: str) -> socket.socket:
    """The listening socket, bound here so a busy port is one clear line (and port 0 works)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as e:
        fail(f"--listen {listen}: {host}: {e.strerror or e}", EXIT_USAGE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        fail(f"--listen {listen}: cannot listen there: {e.strerror or e}")
    sock.set_inheritable(True)
    return sock
