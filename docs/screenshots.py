"""The README's pictures of the run page: its three views of a runs folder, taken in headless Chromium.

    python docs/screenshots.py RUNS_DIR TAG [--chromium PATH] [-o docs]

Serves ``RUNS_DIR`` with ``cadence serve`` and writes ``run-page-index.png`` (the runs),
``run-page-run.png`` (the newest run tagged ``TAG``) and ``run-page-compare.png`` (the runs
tagged ``TAG``, compared). The README's were taken of a sweep:
``cadence train mnist -m optimizer.lr=3e-4,1e-3,3e-3 epochs=2 inner_iterations=5``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir")
    parser.add_argument("tag")
    parser.add_argument("--chromium", default=os.environ.get("CADENCE_CHROMIUM") or shutil.which("chromium"))
    parser.add_argument("-o", "--output", default=str(Path(__file__).resolve().parent))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    server = subprocess.Popen([sys.executable, "-m", "cadence", "serve", "--runs-dir", args.runs_dir, "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://\S+:\d+", server.stdout.readline())[0]
        runs = json.loads(urllib.request.urlopen(f"{url}/api/runs", timeout=60).read())["runs"]
        newest = next(run["id"] for run in runs if args.tag in run["tags"])
        views = {"index": "/", "run": f"/runs/{newest}", "compare": f"/compare?tag={args.tag}"}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium)
            page = browser.new_page(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
            for name, path in views.items():
                page.goto(url + path)
                page.wait_for_selector("body[data-ready]", timeout=60_000)
                page.screenshot(path=str(Path(args.output) / f"run-page-{name}.png"), full_page=name == "index")
            browser.close()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
