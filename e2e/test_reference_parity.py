"""The same flow run against Prefect's own server and ours records the same.

Prefect's server (`prefect server start`, with its services, SQLite) runs once
per session beside ours; one flow with a retried task and a second task runs
against each, and what the API answers about the flow run, its states and its
task runs must match, apart from generated names and measured durations.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from test_orchestration import poll, run_script

PARITY_FLOW = """
    import json, sys
    from pathlib import Path
    from prefect import flow, task

    counter = Path(sys.argv[1])

    @task(retries=1, retry_delay_seconds=0)
    def flaky(x):
        n = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(n + 1))
        if n == 0:
            raise RuntimeError("fails once")
        return x * 2

    @task
    def add(a, b):
        return a + b

    @flow(name="parity-flow")
    def parity():
        return add(flaky(2), 3)

    state = parity(return_state=True)
    print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id), "type": state.type.value}))
"""


@pytest.fixture(scope="session")
def reference_api(tmp_path_factory):
    """Prefect's own server, with services, on a free port."""
    home = tmp_path_factory.mktemp("reference-home")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [os.path.join(venv_bin, "prefect"), "server", "start", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(api + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"reference server did not start:\n{(home / 'server.log').read_text()[-3000:]}")
        time.sleep(0.3)
    yield api
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


class _Server:
    def __init__(self, api_url):
        self.api_url = api_url

    def log_tail(self):
        return ""


def recorded(api: str, flow_run_id: str) -> dict:
    """What the API says about a finished flow run, without generated values."""
    c = httpx.Client(base_url=api + "/", timeout=30)

    def settled():
        trs = c.post("task_runs/filter", json={"task_runs": {"flow_run_id": {"any_": [flow_run_id]}}}).json()
        if len(trs) == 2 and all(t["state_type"] == "COMPLETED" for t in trs):
            return trs
        return None

    trs = poll("both task runs completed", settled)
    fr = c.get(f"flow_runs/{flow_run_id}").json()
    flow_states = c.get("flow_run_states/", params={"flow_run_id": flow_run_id}).json()
    out = {
        "flow_run_fields": sorted(fr),
        "flow_run": {k: fr[k] for k in ("run_count", "state_type", "state_name", "flow_version", "tags", "parameters")},
        "flow_run_has_times": [fr[k] is not None for k in ("start_time", "end_time", "expected_start_time")],
        "flow_states": [(s["type"], s["name"]) for s in flow_states],
        "task_runs": [],
    }
    for t in sorted(trs, key=lambda t: t["task_key"]):
        states = c.get("task_run_states/", params={"task_run_id": t["id"]}).json()
        out["task_runs"].append({
            "fields": sorted(t),
            "task_key": t["task_key"].split("-")[0],
            "run_count": t["run_count"],
            "state": (t["state_type"], t["state_name"]),
            "states": [(s["type"], s["name"]) for s in states],
            "has_times": [t[k] is not None for k in ("start_time", "end_time", "expected_start_time")],
            "tags": t["tags"],
            "has_dynamic_key": bool(t["dynamic_key"]),
        })
    return out


@pytest.mark.flow_runs
def test_same_records_as_prefects_server(prefect_server, reference_api, tmp_path):
    ours_dir, ref_dir = tmp_path / "ours", tmp_path / "reference"
    ours_dir.mkdir()
    ref_dir.mkdir()
    ours = run_script(prefect_server, ours_dir, PARITY_FLOW, str(ours_dir / "counter"))
    ref = run_script(_Server(reference_api), ref_dir, PARITY_FLOW, str(ref_dir / "counter"))
    assert ours["type"] == ref["type"] == "COMPLETED"
    mine = json.dumps(recorded(prefect_server.api_url, ours["flow_run_id"]), indent=1, sort_keys=True)
    theirs = json.dumps(recorded(reference_api, ref["flow_run_id"]), indent=1, sort_keys=True)
    assert mine.splitlines() == theirs.splitlines()
