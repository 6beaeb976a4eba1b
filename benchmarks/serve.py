"""The run page's load times: the index of 200 runs, and a run of 5 keys x 100,000 steps, in headless Chromium.

    python benchmarks/serve.py [--repeats 5] [--runs 200] [--steps 100000] [--chromium PATH]

A temporary runs folder gets ``--runs`` finished runs (4 keys of 1,000 steps each, tags, a
config) and one run of 5 keys x ``--steps`` steps; ``cadence serve`` serves it from a
subprocess. Each page is loaded in a fresh browser page, from the request to the page drawn
(``body[data-ready]``: the table's rows, or every chart), median of ``--repeats`` after one
warm-up. The peer of the run page is the same page drawing every point
(``/runs/<id>?points=<steps>``), as a chart without server-side downsampling would. The
server's own time for each page's JSON is given beside. Target: each page in <= 1 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args  # noqa: E402

from cadence.track.store import RunStore  # noqa: E402


def fill(runs_dir: Path, runs: int, steps: int) -> str:
    """``runs`` small finished runs and one of 5 keys x ``steps`` steps; the big one's id."""
    rng = np.random.default_rng(0)
    with RunStore(runs_dir) as store:
        for i in range(runs):
            run_id = store.create_run("mnist", {"optimizer": {"name": "adam", "lr": 10 ** -rng.uniform(2, 4)},
                                                "batch_size": 64, "seed": i}, tags=[f"sweep-{i // 20}"],
                                      provenance={"command": "cadence train mnist"})
            at = np.arange(1, 1001)
            store.add_values(run_id, {"train.loss": (at, rng.random(1000)), "train.lr": (at, np.full(1000, 1e-3)),
                                      "valid.loss": (at[::100], rng.random(10)),
                                      "valid.accuracy": (at[::100], rng.random(10))})
            store.finish(run_id, "finished")
        big = store.create_run("long", {}, provenance={"command": "cadence train long"})
        at = np.arange(1, steps + 1)
        for start in range(0, steps, 10_000):  # as a tracker writes: a chunk per key per hand-over
            part = at[start:start + 10_000]
            store.add_values(big, {f"train.k{k}": (part, np.exp(-part / steps) + 0.1 * rng.random(len(part)))
                                   for k in range(5)})
        store.finish(big, "finished")
    return big


def seconds(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()
    return time.perf_counter() - start


def main() -> None:
    def options(parser) -> None:
        parser.add_argument("--runs", type=int, default=200)
        parser.add_argument("--steps", type=int, default=100_000)
        parser.add_argument("--chromium", default=os.environ.get("CADENCE_CHROMIUM") or shutil.which("chromium"),
                            help="the browser (default: chromium on PATH)")

    args = parse_args(__doc__, repeats=5, add_arguments=options)
    if not args.chromium:
        sys.exit("benchmarks/serve.py: no chromium on PATH (apt-get install chromium, or --chromium PATH)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        big = fill(Path(folder), args.runs, args.steps)
        server = subprocess.Popen([sys.executable, "-m", "cadence", "serve", "--runs-dir", folder, "--port", "0"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            url = re.search(r"http://\S+:\d+", server.stdout.readline())[0]
            pages = {"index of runs": ("/", "/api/runs"),
                     "run page": (f"/runs/{big}", f"/api/runs/{big}/series"),
                     "run page, every point (peer)": (f"/runs/{big}?points={args.steps}",
                                                      f"/api/runs/{big}/series?points={args.steps}")}
            times: dict[str, list[float]] = {name: [] for name in pages}
            api: dict[str, list[float]] = {name: [] for name in pages}
            points = {name: sum(len(s["steps"]) for s in json.loads(urllib.request.urlopen(url + path).read())
                                .get("series", {}).values()) for name, (_, path) in pages.items()}
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium)
                for repeat in range(args.repeats + 1):
                    for name, (page_path, api_path) in pages.items():
                        page = browser.new_page(viewport={"width": 1280, "height": 900})
                        start = time.perf_counter()
                        page.goto(url + page_path)
                        page.wait_for_selector("body[data-ready]", timeout=120_000)
                        took = time.perf_counter() - start
                        page.close()
                        if repeat:  # the first round warms the server, the browser and the disk cache
                            times[name].append(took)
                            api[name].append(seconds(url + api_path))
                browser.close()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
    median = {name: statistics.median(values) for name, values in times.items()}
    table = Table(title=f"cadence serve: {args.runs} runs, and a run of 5 keys x {args.steps:,} steps, in headless "
                        f"Chromium; median of {args.repeats}")
    for column in ("page", "loaded (s)", "its JSON (s)", "points drawn", "ratio"):
        table.add_column(column)
    peer = median["run page, every point (peer)"]
    for name in pages:
        ratio = f"{median[name] / peer:.2f}x the peer" if name == "run page" else ""
        table.add_row(name, f"{median[name]:.3f}", f"{statistics.median(api[name]):.3f}",
                      f"{points[name]:,}" if points[name] else "", ratio)
    Console().print(table)


if __name__ == "__main__":
    main()
