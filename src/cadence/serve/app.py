"""The run page's web app: three views of a runs folder, and the JSON they are drawn from.

Every view is one static page (``static/page.html`` and ``static/page.js``) that fetches JSON and
draws it, with uPlot for the curves. Its addresses are stable, to bookmark and share:

* ``/``: the runs (``?name=``, ``?tag=``, ``?status=`` and ``?sort=`` filter and sort them);
* ``/runs/<run id>``: one run (a unique prefix of an id redirects to the whole id);
* ``/compare?runs=<id>,<id>`` or ``/compare?tag=<tag>``: runs side by side.

The JSON: ``/api/runs``, ``/api/runs/<id>`` (config, provenance, events, checkpoints,
samples, each key's final and best value), ``/api/runs/<id>/series`` (every key's values,
smoothed as asked and cut down to about 2,000 points each, :mod:`cadence.serve.downsample`),
``/api/runs/<id>/diff``, ``/api/runs/<id>/samples/<step>`` and ``/api/compare``. A page polls
``series`` with the ``version`` it last drew: the answer is ``{"unchanged": true}`` until the run
records something, so that a running run's curves follow it within a second or two.

**Read-only.** The database is opened read-only (:class:`RunStore` ``read_only``) and no view
writes a file.

**Safety.** Every string from a run (names, tags, config values, sample text, diffs) reaches
the page as JSON or ``text/plain`` and is put in the page as text (``textContent``), never as
markup; the pages forbid inline scripts (``Content-Security-Policy``). A run's files are read
only from inside its folder (a path that resolves outside it, through a link say, is refused).
A malformed id or parameter is a 400, an unknown run a 404, each with a one-line message; an
unexpected error is a 500 without a traceback.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from cadence.serve.downsample import POINTS, min_max
from cadence.track.checkpoints import CheckpointError, list_checkpoints, read_meta
from cadence.track.history import MISSING, History, config_differences, histories
from cadence.track.records import RunSummary
from cadence.track.store import RunStore

STATIC = Path(__file__).parent / "static"

#: What a run id may look like (``20261124-101010-abcd``, or a prefix of one): anything else is a 400.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: The pages' security policy: scripts and styles from this server only (uPlot sets element styles from script).
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
          "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

#: The keys the runs' table shows the final and best values of, besides every ``valid.`` key's.
SHOWN = ("train.loss",)

#: The largest smoothing window and points per series a request may ask for.
MAX_SMOOTH, MAX_POINTS = 100_000, 100_000


class Runs:
    """A runs folder, read-only: its database is opened when it first exists (``cadence serve`` may start
    before the first run)."""

    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir).resolve()
        self._store: RunStore | None = None
        self._lock = threading.Lock()

    def store(self) -> RunStore | None:
        """The run store, or ``None`` while the folder has no database."""
        with self._lock:
            if self._store is None and (self.runs_dir / "runs.sqlite").is_file():
                self._store = RunStore(self.runs_dir, read_only=True)
            return self._store

    def run(self, run_id: str) -> tuple[RunStore, RunSummary]:
        """The store and run ``run_id`` names exactly; a malformed id is a 400, an unknown one a 404."""
        store = self.store()
        if not RUN_ID.fullmatch(run_id):
            raise HTTPException(400, f"{run_id!r} is not a run id (expected such as 20261124-101010-abcd)")
        if store is None:
            raise HTTPException(404, f"no run {run_id!r}: {self.runs_dir} has no runs yet")
        try:
            return store, store.get_run(run_id)
        except KeyError as e:
            raise HTTPException(404, e.args[0]) from None

    def file(self, run_id: str, *parts: str) -> Path:
        """A file of run ``run_id``'s folder; one missing, or resolving outside that folder, is a 404."""
        folder = (self.runs_dir / run_id).resolve()
        path = folder.joinpath(*parts).resolve()
        if not folder.is_relative_to(self.runs_dir) or not path.is_relative_to(folder) or not path.is_file():
            raise HTTPException(404, f"run {run_id} has no {'/'.join(parts)}")
        return path

    def close(self) -> None:
        """Close the database."""
        if self._store is not None:
            self._store.close()


def make_app(runs_dir: str | Path) -> Starlette:
    """The ASGI app serving the runs of ``runs_dir`` (``cadence serve`` runs it with uvicorn)."""
    runs = Runs(runs_dir)

    def page(request: Request) -> Response:
        if request.url.path == "/compare":
            _compared(runs, request.query_params)  # a malformed or unknown run is refused here as by the JSON
        return FileResponse(STATIC / "page.html")

    def run_page(request: Request) -> Response:
        asked = request.path_params["run_id"]
        _, run = runs.run(asked)
        return RedirectResponse(f"/runs/{run.id}") if run.id != asked else FileResponse(STATIC / "page.html")

    def api_runs(request: Request) -> Response:
        store = runs.store()
        now = time.time()
        listed = []
        for run in store.list_runs() if store else []:
            shown = [key for key in run.last_metrics
                     if key in SHOWN or key.startswith("valid.") and ".time." not in key]
            best = {key: history.best() for key, history in histories(store, run.id, shown).items()}
            listed.append({**_summary(run, now), "best": {key: [b[0], _finite_one(b[1])] for key, b in best.items()
                                                          if b is not None}})
        return _json({"runs_dir": str(runs.runs_dir), "now": now, "runs": listed})

    def api_run(request: Request) -> Response:
        store, run = runs.run(request.path_params["run_id"])
        found = histories(store, run.id)
        folder = runs.runs_dir / run.id
        return _json({**_summary(run, time.time()), "config": run.config, "provenance": run.provenance,
                      "error": run.error, "events": [vars(event) for event in store.events(run.id)],
                      "checkpoints": _checkpoints(folder), "samples": _samples(folder),
                      "diff": (folder / "source.diff").is_file(),
                      "keys": {key: _key(history) for key, history in found.items()}})

    def api_series(request: Request) -> Response:
        store, run = runs.run(request.path_params["run_id"])
        query = request.query_params
        smooth = _integer(query, "smooth", None, 1, MAX_SMOOTH)
        points = _integer(query, "points", POINTS, 2, MAX_POINTS)
        version = ".".join(map(str, (*store.version(run.id), run.status)))
        if query.get("version") == version:
            return _json({"unchanged": True, "version": version})
        series = {}
        for key, history in histories(store, run.id).items():
            values, label = history.shown(smooth)
            steps, values = min_max(history.steps, values, points)
            series[key] = {"label": label, "kind": history.series.kind, "steps": steps.tolist(),
                           "values": _finite(values)}
        return _json({"version": version, "status": run.status, "step": run.step, "series": series})

    def api_diff(request: Request) -> Response:
        _, run = runs.run(request.path_params["run_id"])
        return _text(runs.file(run.id, "source.diff"))

    def api_sample(request: Request) -> Response:
        _, run = runs.run(request.path_params["run_id"])
        return _text(runs.file(run.id, "samples", f"step-{request.path_params['step']}.txt"))

    def api_compare(request: Request) -> Response:
        store, compared = _compared(runs, request.query_params)
        now = time.time()
        differences = config_differences([run.config for run in compared])
        return _json({"runs": [_summary(run, now) for run in compared],
                      "differences": {key: [None if v is MISSING else v for v in values]
                                      for key, values in differences.items()}})

    routes = [Route("/", page), Route("/compare", page), Route("/runs/{run_id}", run_page),
              Route("/api/runs", api_runs), Route("/api/runs/{run_id}", api_run),
              Route("/api/runs/{run_id}/series", api_series), Route("/api/runs/{run_id}/diff", api_diff),
              Route("/api/runs/{run_id}/samples/{step:int}", api_sample), Route("/api/compare", api_compare),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)],
                    exception_handlers={HTTPException: _refused, Exception: _failed},
                    lifespan=_closing(runs))
    app.state.runs = runs
    return app


def _closing(runs: Runs) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the database is closed when the server stops."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            runs.close()

    return lifespan


class SecurityHeaders:
    """Adds the pages' security policy, and ``nosniff`` (a run's text is never read as anything but text)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).extend([
                    (b"content-security-policy", POLICY.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer")])
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


def _compared(runs: Runs, query: Mapping[str, str]) -> tuple[RunStore, list[RunSummary]]:
    """The runs ``?runs=<id>,<id>`` or ``?tag=<tag>`` names, in that order (a tag's: oldest first)."""
    if ("runs" in query) == ("tag" in query):
        raise HTTPException(400, "compare takes runs=<id>,<id>... or tag=<tag>, one of the two")
    store = runs.store()
    if "tag" in query:
        tagged = [run for run in (store.list_runs() if store else []) if query["tag"] in run.tags][::-1]
        if not tagged:
            raise HTTPException(404, f"no run is tagged {query['tag']!r}")
        return store, tagged
    ids = [i for i in query["runs"].split(",") if i]
    if not ids:
        raise HTTPException(400, "runs= names no run (expected runs=<id>,<id>...)")
    found = [runs.run(i) for i in ids]
    return found[0][0], [run for _, run in found]


def _summary(run: RunSummary, now: float) -> dict[str, Any]:
    return {"id": run.id, "name": run.name, "status": run.status, "tags": list(run.tags), "start": run.start_time,
            "end": run.end_time, "duration": (run.end_time or now) - run.start_time, "time_left": run.time_left(now),
            "step": run.step, "planned_steps": run.planned_steps, "heartbeat": run.heartbeat,
            "metrics": {key: _finite_one(value) for key, value in run.last_metrics.items()},
            "labels": {key: series.label(key) for key, series in run.series.items()}}


def _key(history: History) -> dict[str, Any]:
    final, best = history.final(), history.best()
    return {"label": history.shown()[1], "kind": history.series.kind,
            "final": None if final is None else [final[0], _finite_one(final[1])],
            "best": None if best is None else [best[0], _finite_one(best[1])]}


def _checkpoints(folder: Path) -> list[dict[str, Any]]:
    found = []
    for path in list_checkpoints(folder):
        try:
            meta = read_meta(path)
        except CheckpointError as e:
            meta = {"error": str(e)}
        found.append({"name": path.name, "step": meta.get("step"), "epoch": meta.get("epoch"),
                      "metrics": meta.get("metrics") or {}, "error": meta.get("error"),
                      "weights": (path / "model.safetensors").is_file()})
    return found


def _samples(folder: Path) -> list[int]:
    steps = (re.fullmatch(r"step-(\d+)\.txt", p.name) for p in (folder / "samples").glob("step-*.txt"))
    return sorted(int(m[1]) for m in steps if m)


def _integer(query: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    if name not in query:
        return default
    try:
        value = int(query[name])
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise HTTPException(400, f"{name}={query[name]!r} is not a whole number from {low} to {high}")
    return value


def _finite(values: np.ndarray) -> list[float | None]:
    """The values as JSON can hold them: NaN and infinities become ``null`` (a gap in the chart)."""
    return [_finite_one(v) for v in values.tolist()]


def _finite_one(value: float) -> float | None:
    """A value as JSON can hold it: NaN and infinities become ``null``."""
    return value if math.isfinite(value) else None


def _json(content: Any) -> Response:
    return Response(json.dumps(content, allow_nan=False, default=str), media_type="application/json")


def _text(path: Path) -> Response:
    return PlainTextResponse(path.read_text(errors="replace"))


def _refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": error.detail}, status_code=error.status_code)
    return PlainTextResponse(f"{error.status_code}: {error.detail}\n", status_code=error.status_code)


def _failed(request: Request, error: Exception) -> Response:
    return PlainTextResponse(f"500: the server failed on {request.url.path}: {type(error).__name__} "
                             f"(the server's log has the details)\n", status_code=500)

