"""``cadence serve``: the runs of a runs folder as web pages, live (:mod:`cadence.serve`)."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import socket

from rich.console import Console

from cadence.cli.common import RUNS_DIR_HELP, guarded
from cadence.track import RunStore, resolve_runs_dir

#: The port ``cadence serve`` listens on unless told.
PORT = 8765


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``cadence serve``."""
    serve = commands.add_parser("serve", help="the run page: every run, live, in a browser",
                                description="Serve the runs of a runs folder as web pages: the runs, one run's "
                                            "curves, config, provenance, samples, checkpoints and events, and runs "
                                            "compared. Read-only; Ctrl+C ends it. On a remote machine: ssh -L "
                                            f"{PORT}:localhost:{PORT} HOST, then open http://localhost:{PORT}/ "
                                            f"here.")
    serve.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    serve.add_argument("--port", type=int, default=PORT, help=f"the port (default {PORT}; 0: any free port)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="the address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 exposes every "
                            "run to whoever reaches this machine)")
    serve.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence serve``: listen, print the address, serve until Ctrl+C (or SIGTERM), exit 0."""
    import uvicorn

    from cadence.serve import make_app

    def work() -> int:
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port {args.port} is not a port; expected 0 to 65535")
        runs_dir = resolve_runs_dir(args.runs_dir)
        if not runs_dir.is_dir():
            raise FileNotFoundError(f"no runs folder {runs_dir} (`cadence train` records runs there; --runs-dir or "
                                    f"CADENCE_RUNS chooses another)")
        if (runs_dir / "runs.sqlite").is_file():
            RunStore(runs_dir, read_only=True).close()  # a database of another schema is refused now, not per page
        try:
            listener = socket.create_server((args.host, args.port))
        except OSError as e:
            raise OSError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e} (--port chooses another "
                          f"port, --host another address)") from None
        if not _loopback(args.host):
            err.print(f"cadence serve: warning: listening on {args.host}: anyone who can reach this machine's port "
                      f"{listener.getsockname()[1]} can read every run of {runs_dir} (the default, 127.0.0.1, "
                      f"keeps them to this machine; ssh -L reaches it from another)", markup=False, highlight=False)
        host, port = listener.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        out.print(f"cadence serve: the runs of {runs_dir.resolve()} at http://{shown}:{port}/ (Ctrl+C ends it)",
                  markup=False, highlight=False, soft_wrap=True)
        server = uvicorn.Server(uvicorn.Config(make_app(runs_dir), log_level="warning", access_log=False,
                                               timeout_graceful_shutdown=2, lifespan="on"))
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises the Ctrl+C again once it has shut down
            server.run(sockets=[listener])
        out.print("cadence serve: stopped", markup=False, highlight=False)
        return 0

    return guarded("serve", err, work)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
