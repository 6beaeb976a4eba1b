"""The run page's server, live: its JSON, its refusals, its safety; it changes no run."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from cadence.serve.app import STATIC
from cadence.track.store import RunStore
from tests.serve.server import get, get_json, record, serving

pytestmark = pytest.mark.slow

#: The vendored chart library: its version and checksum as recorded in static/VENDORED.json.
VENDORED = json.loads((STATIC / "VENDORED.json").read_text())


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    with RunStore(runs_dir) as store:
        a = record(store, "mnist", {"optimizer": {"lr": 0.1}, "epochs": 2}, tags=("sweep",))
        b = record(store, "mnist", {"optimizer": {"lr": 0.2}, "epochs": 2}, tags=("sweep",))
        long = store.create_run("long", {})
        steps = np.arange(1, 100_001)
        loss = np.exp(-steps / 30_000)
        loss[54_321] = 50.0
        store.add_values(long, {"train.loss": (steps, loss)})
        store.add_event(long, "resumed", "from step-10", 10)
        store.finish(long, "finished")
    (runs_dir / a / "samples").mkdir()
    (runs_dir / a / "samples" / "step-50.txt").write_text("To be, or not")
    (runs_dir / a / "source.diff").write_text("+<b>changed</b>\n")
    (runs_dir / "secret.txt").write_text("not a run's")
    os.symlink(runs_dir / "secret.txt", runs_dir / b / "source.diff")
    outside = tmp_path_factory.mktemp("outside") / "step-7.txt"
    outside.write_text("outside the runs folder")
    (runs_dir / b / "samples").mkdir()
    os.symlink(outside, runs_dir / b / "samples" / "step-7.txt")
    before = {p: p.stat().st_mtime_ns for p in runs_dir.rglob("*")}
    with serving(runs_dir) as (url, _):
        yield url, runs_dir, {"a": a, "b": b, "long": long}
    after = {p: p.stat().st_mtime_ns for p in runs_dir.rglob("*")
             if not p.name.startswith("runs.sqlite-")}  # SQLite's own shared-memory index of a reader
    assert after == {p: t for p, t in before.items() if not p.name.startswith("runs.sqlite-")}, "serve wrote a file"


def test_the_runs_are_listed_with_status_tags_and_final_metrics(site):
    url, runs_dir, ids = site
    listed = get_json(f"{url}/api/runs")
    assert listed["runs_dir"] == str(runs_dir.resolve())
    by_id = {run["id"]: run for run in listed["runs"]}
    assert set(by_id) == set(ids.values())
    assert by_id[ids["a"]]["status"] == "finished" and by_id[ids["a"]]["tags"] == ["sweep"]
    assert by_id[ids["a"]]["metrics"]["valid.accuracy"] == 1.0
    assert by_id[ids["a"]]["step"] == 200
    assert by_id[ids["a"]]["best"] == {"train.loss": [200, 1 / 200], "valid.accuracy": [200, 1.0]}


def test_a_run_has_its_config_provenance_events_samples_and_best_values(site):
    url, _, ids = site
    run = get_json(f"{url}/api/runs/{ids['a']}")
    assert run["config"] == {"optimizer": {"lr": 0.1}, "epochs": 2}
    assert run["provenance"] == {"command": "cadence train x"}
    assert run["samples"] == [50] and run["diff"] is True
    assert run["keys"]["train.loss"]["best"] == [200, 1 / 200]
    assert get_json(f"{url}/api/runs/{ids['long']}")["events"][0]["kind"] == "resumed"
    status, headers, body = get(f"{url}/api/runs/{ids['a']}/samples/50")
    assert (status, body) == (200, b"To be, or not") and headers["content-type"].startswith("text/plain")
    status, headers, body = get(f"{url}/api/runs/{ids['a']}/diff")
    assert body == b"+<b>changed</b>\n" and headers["content-type"].startswith("text/plain")
    assert headers["x-content-type-options"] == "nosniff"


def test_series_are_cut_to_about_2000_points_keeping_a_spike(site):
    url, _, ids = site
    series = get_json(f"{url}/api/runs/{ids['long']}/series")["series"]["train.loss"]
    assert 1000 <= len(series["steps"]) <= 2002
    assert 50.0 in series["values"] and 54_322 in series["steps"]
    smoothed = get_json(f"{url}/api/runs/{ids['a']}/series?smooth=10")["series"]["train.loss"]
    assert smoothed["label"] == "train.loss(avg10)"
    assert smoothed["values"][-1] == pytest.approx(np.mean(1.0 / np.arange(191, 201)))


def test_polling_an_unchanged_run_answers_unchanged(site):
    url, _, ids = site
    first = get_json(f"{url}/api/runs/{ids['a']}/series")
    assert get_json(f"{url}/api/runs/{ids['a']}/series?version={first['version']}") == {
        "unchanged": True, "version": first["version"]}
    assert "series" in get_json(f"{url}/api/runs/{ids['a']}/series?version=0.0.running")


def test_compare_by_ids_or_by_tag_gives_the_config_differences(site):
    url, _, ids = site
    by_ids = get_json(f"{url}/api/compare?runs={ids['a']},{ids['b']}")
    assert [r["id"] for r in by_ids["runs"]] == [ids["a"], ids["b"]]
    assert by_ids["differences"] == {"optimizer.lr": [0.1, 0.2]}
    assert get_json(f"{url}/api/compare?tag=sweep")["differences"] == by_ids["differences"]


def test_a_unique_prefix_redirects_to_the_runs_stable_address(site):
    url, _, ids = site
    status, headers, _ = get(f"{url}/runs/{ids['long'][:-1]}")
    assert status in (302, 307) and headers["location"].endswith(f"/runs/{ids['long']}")
    status, headers, body = get(f"{url}/runs/{ids['long']}")
    assert status == 200 and b"page.js" in body
    assert "script-src 'self'" in headers["content-security-policy"]


@pytest.mark.parametrize("path, code", [
    ("/runs/nope%3Cscript%3E", 400), ("/api/runs/..%2F..%2Fetc", 404), ("/api/runs/20990101-000000-0000", 404),
    ("/runs/20990101-000000-0000", 404), ("/api/runs/{a}/series?smooth=0", 400),
    ("/api/runs/{a}/series?points=lots", 400), ("/api/runs/{a}/series?smooth=1e9", 400),
    ("/api/compare", 400), ("/api/compare?runs={a}&tag=sweep", 400), ("/api/compare?runs=,", 400),
    ("/api/compare?tag=nothing", 404), ("/compare?runs=zz-not-there", 404), ("/api/runs/{a}/samples/999", 404),
    ("/api/runs/{a}/samples/abc", 404), ("/api/runs/{b}/diff", 404), ("/api/runs/{b}/samples/7", 404),
    ("/static/..%2F..%2Fapp.py", 404), ("/static/../app.py", 404), ("/nothing/here", 404),
])
def test_malformed_or_unknown_requests_get_a_4xx_with_a_message_never_a_traceback(site, path, code):
    url, _, ids = site
    status, _, body = get(url + path.format(**ids))
    assert status == code, body
    assert b"Traceback" not in body and b"not a run's" not in body and b"outside the runs folder" not in body
    if path.startswith("/api/"):
        assert json.loads(body)["error"]
    else:
        assert body.startswith(f"{code}: ".encode())


def test_the_vendored_chart_library_is_the_recorded_version(site):
    url, _, _ = site
    for name, digest in VENDORED["files"].items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
        status, _, body = get(f"{url}/static/{name}")
        assert status == 200 and hashlib.sha256(body).hexdigest() == digest
    assert VENDORED["package"] == "uplot" and VENDORED["version"]


def test_the_database_is_opened_read_only(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = record(store, "x", {})
    with RunStore(tmp_path, read_only=True) as reader:
        assert reader.get_run(run_id).status == "finished"
        with pytest.raises(Exception, match="readonly"):
            reader.finish(run_id, "failed")
    with RunStore(tmp_path) as store:
        assert store.get_run(run_id).status == "finished"


def test_a_trained_runs_page_has_where_each_phases_time_went(tmp_path):
    from tests.train.test_phase_clock import PARTS, data, trained
    _, _, run_id, _ = trained(tmp_path, valid=data(3, 1), epochs=2)
    keys = [f"{phase}.time.{part}" for phase in ("train", "valid") for part in PARTS] + ["train.samples_per_second"]
    with serving(tmp_path) as (url, _):
        shown = get_json(f"{url}/api/runs/{run_id}")["keys"]
        series = get_json(f"{url}/api/runs/{run_id}/series")["series"]
    for key in keys:  # the latest values' table and a curve each
        assert shown[key]["label"] == f"{key}(epoch)" and shown[key]["final"][0] == 24
        assert series[key]["steps"] == [12, 24] and all(0 <= v for v in series[key]["values"])
