"""Real flows and tasks, run by the Prefect 3.9.1 engine against the server.

Each scenario runs in a child interpreter (the engine keeps process-wide
state), then the test asserts through the API what Prefect records. Task
runs reach the server only as events over /api/events/in, so their checks
poll with a deadline until the task run recorder has written them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.sorting import LogSort
from prefect.states import Cancelling

pytestmark = pytest.mark.flow_runs

RUN_TIMEOUT_S = 120
POLL_DEADLINE_S = 30


def _env(prefect_server, home) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_PROFILES_PATH=str(home / "profiles.toml"),
        PREFECT_API_URL=prefect_server.api_url,
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="false",
        PREFECT_API_REQUEST_TIMEOUT="30",
    )
    return env


def run_script(prefect_server, home, script: str, *args: str) -> dict:
    """Runs script in a child interpreter; its last stdout line is JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=home,
        env=_env(prefect_server, home),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.fail(
            f"script failed ({proc.returncode})\nstdout:\n{proc.stdout[-3000:]}\n"
            f"stderr:\n{proc.stderr[-5000:]}\nserver log:\n{prefect_server.log_tail()}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_script(prefect_server, home, script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=home,
        env=_env(prefect_server, home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, prefect_server) -> dict:
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"script timed out\nstdout:\n{out[-3000:]}\nstderr:\n{err[-5000:]}")
    if proc.returncode != 0 or not out.strip():
        pytest.fail(
            f"script failed ({proc.returncode})\nstdout:\n{out[-3000:]}\nstderr:\n{err[-5000:]}\n"
            f"server log:\n{prefect_server.log_tail()}"
        )
    return json.loads(out.strip().splitlines()[-1])


def poll(what: str, fn, deadline_s: float = POLL_DEADLINE_S):
    """Calls fn until it returns a truthy value or the deadline passes."""
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; last value: {last!r}")


def task_runs_of(client, flow_run_id):
    return client.read_task_runs(
        task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[uuid.UUID(flow_run_id)]))
    )


def settled_task_runs(client, flow_run_id, count: int):
    """Task runs of the flow run once count of them are in a terminal state."""

    def done():
        trs = task_runs_of(client, flow_run_id)
        if len(trs) == count and all(tr.state and tr.state.is_final() for tr in trs):
            return trs
        return None

    return poll(f"{count} final task runs of {flow_run_id}", done)


TWO_TASKS = """
    import json, sys
    from prefect import flow, task

    @task
    def add(a, b):
        return a + b

    @flow(name=sys.argv[1])
    def pipeline():
        x = add(1, 2)
        return add(x, 3)

    state = pipeline(return_state=True)
    print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id),
                      "type": state.type.value, "result": state.result()}))
"""


def test_flow_with_two_tasks(prefect_server, sync_client, tmp_path):
    out = run_script(prefect_server, tmp_path, TWO_TASKS, f"e2e-two-{uuid.uuid4().hex[:8]}")
    assert out["type"] == "COMPLETED" and out["result"] == 6
    fr = sync_client.read_flow_run(out["flow_run_id"])
    assert fr.state.type.value == "COMPLETED"
    assert fr.run_count == 1
    assert fr.start_time and fr.end_time and fr.end_time >= fr.start_time
    assert fr.total_run_time.total_seconds() >= 0
    flow_states = [s.type.value for s in sync_client.read_flow_run_states(out["flow_run_id"])]
    assert flow_states[0] == "PENDING" and flow_states[-1] == "COMPLETED" and "RUNNING" in flow_states

    trs = settled_task_runs(sync_client, out["flow_run_id"], 2)
    # The 3.9.1 engine names task runs "<task>-<3 hex digits of the id>".
    assert all(tr.name.startswith("add-") for tr in trs), [tr.name for tr in trs]
    for tr in trs:
        assert tr.state.type.value == "COMPLETED"
        assert tr.run_count == 1
        assert tr.start_time and tr.end_time and tr.end_time >= tr.start_time
        assert str(tr.flow_run_id) == out["flow_run_id"]
        types = [s.type.value for s in sync_client.read_task_run_states(tr.id)]
        assert types == ["PENDING", "RUNNING", "COMPLETED"], types


FAILING = """
    import json, sys
    from prefect import flow, task

    @task
    def boom():
        raise ValueError("task failed on purpose")

    @flow(name=sys.argv[1])
    def failing():
        boom()

    state = failing(return_state=True)
    print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id), "type": state.type.value}))
"""


def test_failing_task_fails_the_flow(prefect_server, sync_client, tmp_path):
    out = run_script(prefect_server, tmp_path, FAILING, f"e2e-fail-{uuid.uuid4().hex[:8]}")
    assert out["type"] == "FAILED"
    assert sync_client.read_flow_run(out["flow_run_id"]).state.type.value == "FAILED"
    (tr,) = settled_task_runs(sync_client, out["flow_run_id"], 1)
    assert tr.state.type.value == "FAILED"


RETRIES = """
    import json, sys
    from pathlib import Path
    from prefect import flow, task

    counter = Path("attempts")

    @task(retries=2, retry_delay_seconds=1)
    def flaky():
        n = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(n + 1))
        if n < 2:
            raise RuntimeError(f"attempt {n}")
        return n

    flow_attempts = Path("flow_attempts")

    @flow(name=sys.argv[1], retries=1, retry_delay_seconds=1)
    def retrying():
        n = int(flow_attempts.read_text()) if flow_attempts.exists() else 0
        flow_attempts.write_text(str(n + 1))
        if n == 0:
            raise RuntimeError("first flow attempt fails")
        return flaky()

    state = retrying(return_state=True)
    print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id),
                      "type": state.type.value, "result": state.result()}))
"""


def test_flow_and_task_retries(prefect_server, sync_client, tmp_path):
    out = run_script(prefect_server, tmp_path, RETRIES, f"e2e-retry-{uuid.uuid4().hex[:8]}")
    assert out["type"] == "COMPLETED" and out["result"] == 2
    fr = sync_client.read_flow_run(out["flow_run_id"])
    assert fr.run_count == 2
    flow_state_names = [s.name for s in sync_client.read_flow_run_states(out["flow_run_id"])]
    assert "AwaitingRetry" in flow_state_names and flow_state_names[-1] == "Completed"

    (tr,) = settled_task_runs(sync_client, out["flow_run_id"], 1)
    assert tr.state.type.value == "COMPLETED"
    assert tr.run_count == 3
    names = [s.name for s in sync_client.read_task_run_states(tr.id)]
    assert names.count("AwaitingRetry") == 2 and names[-1] == "Completed", names


CACHED = """
    import json, sys
    from datetime import timedelta
    from prefect import flow, task

    key = sys.argv[2]

    @task(cache_key_fn=lambda ctx, params: key, cache_expiration=timedelta(minutes=5), persist_result=True)
    def expensive(x):
        return x * 2

    @flow(name=sys.argv[1])
    def cached():
        return expensive(21)

    state = cached(return_state=True)
    print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id),
                      "type": state.type.value, "result": state.result()}))
"""


def test_task_caching_across_flow_runs(prefect_server, sync_client, tmp_path):
    name, key = f"e2e-cache-{uuid.uuid4().hex[:8]}", f"key-{uuid.uuid4().hex}"
    first = run_script(prefect_server, tmp_path, CACHED, name, key)
    second = run_script(prefect_server, tmp_path, CACHED, name, key)
    assert first["result"] == second["result"] == 42
    (tr1,) = settled_task_runs(sync_client, first["flow_run_id"], 1)
    (tr2,) = settled_task_runs(sync_client, second["flow_run_id"], 1)
    assert tr1.state.name == "Completed"
    assert tr2.state.name == "Cached" and tr2.state.type.value == "COMPLETED"


SUBFLOW = """
    import json, sys
    from prefect import flow

    @flow(name=sys.argv[1] + "-child")
    def child(x):
        return x + 1

    @flow(name=sys.argv[1])
    def parent():
        return child(1)

    state = parent(return_state=True)
    print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id),
                      "type": state.type.value, "result": state.result()}))
"""


def test_subflow_links_parent_task_run(prefect_server, sync_client, tmp_path):
    out = run_script(prefect_server, tmp_path, SUBFLOW, f"e2e-sub-{uuid.uuid4().hex[:8]}")
    assert out["type"] == "COMPLETED" and out["result"] == 2
    children = sync_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[uuid.UUID(out["flow_run_id"])]))
    )
    assert len(children) == 1
    child = children[0]
    assert child.state.type.value == "COMPLETED"
    assert child.parent_task_run_id is not None
    parent_task = poll(
        "the subflow's parent task run",
        lambda: next((t for t in task_runs_of(sync_client, out["flow_run_id"]) if t.id == child.parent_task_run_id and t.state and t.state.is_final()), None),
    )
    assert parent_task.state.type.value == "COMPLETED"


PAUSING = """
    import json, sys
    from prefect import flow
    from prefect.flow_runs import pause_flow_run

    with_input = sys.argv[2] == "input"

    @flow(name=sys.argv[1])
    def pausing():
        if with_input:
            return pause_flow_run(wait_for_input=str, timeout=90, poll_interval=1)
        pause_flow_run(timeout=90, poll_interval=1)
        return "resumed"

    state = pausing(return_state=True)
    print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id),
                      "type": state.type.value, "result": state.result()}))
"""


@pytest.mark.parametrize("mode", ["plain", "input"])
def test_pause_and_resume(prefect_server, sync_client, tmp_path, mode):
    name = f"e2e-pause-{uuid.uuid4().hex[:8]}"
    proc = start_script(prefect_server, tmp_path, PAUSING, name, mode)
    try:
        def paused_run():
            runs = sync_client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])))
            return next((r for r in runs if r.state and r.state.type.value == "PAUSED"), None)

        run = poll("the flow run to pause", paused_run, deadline_s=60)
        if mode == "input":
            sync_client.resume_flow_run(run.id, run_input={"value": "hello"})
        else:
            sync_client.resume_flow_run(run.id)
        out = finish(proc, prefect_server)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out["type"] == "COMPLETED"
    assert out["result"] == ("hello" if mode == "input" else "resumed")
    names = [s.name for s in sync_client.read_flow_run_states(out["flow_run_id"])]
    assert "Paused" in names and names[-1] == "Completed"


SLOW = """
    import json, sys, time
    from prefect import flow

    @flow(name=sys.argv[1])
    def slow():
        time.sleep(8)
        return "finished"

    state = slow(return_state=True)
    print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id), "type": state.type.value}))
"""


def test_cancel_running_flow_run(prefect_server, sync_client, tmp_path):
    name = f"e2e-cancel-{uuid.uuid4().hex[:8]}"
    proc = start_script(prefect_server, tmp_path, SLOW, name)
    try:
        def running_run():
            runs = sync_client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])))
            return next((r for r in runs if r.state and r.state.type.value == "RUNNING"), None)

        run = poll("the flow run to start", running_run, deadline_s=60)
        result = sync_client.set_flow_run_state(run.id, Cancelling())
        assert result.status.value == "ACCEPT"
        assert result.state.type.value == "CANCELLING"
        out = finish(proc, prefect_server)
    finally:
        if proc.poll() is None:
            proc.kill()
    # A run without infrastructure stays Cancelling, as with Prefect's own
    # server: the engine's later Completed is refused (only Cancelled may
    # follow Cancelling) and the client ends on the state it is given.
    assert out["type"] == "CANCELLING"
    names = [s.name for s in sync_client.read_flow_run_states(run.id)]
    assert names == ["Pending", "Running", "Cancelling"], names


LOGGING = """
    import json, sys
    from prefect import flow, get_run_logger

    @flow(name=sys.argv[1])
    def chatty():
        logger = get_run_logger()
        for i in range(100):
            logger.info("line %03d", i)

    state = chatty(return_state=True)
    print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id), "type": state.type.value}))
"""


def test_hundred_log_lines_in_order(prefect_server, sync_client, tmp_path):
    out = run_script(prefect_server, tmp_path, LOGGING, f"e2e-logs-{uuid.uuid4().hex[:8]}")
    assert out["type"] == "COMPLETED"
    flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(out["flow_run_id"])]))

    def lines():
        logs = sync_client.read_logs(log_filter=flt, sort=LogSort.TIMESTAMP_ASC, limit=200)
        ours = [log.message for log in logs if log.message.startswith("line ")]
        return ours if len(ours) == 100 else None

    assert poll("100 log lines", lines) == [f"line {i:03d}" for i in range(100)]


def test_idempotency_key_returns_the_same_run(prefect_server, http, sync_client):
    flow_id = sync_client.create_flow_from_name(f"e2e-idem-{uuid.uuid4().hex[:8]}")
    body = {"flow_id": str(flow_id), "idempotency_key": f"key-{uuid.uuid4().hex}"}
    first = http.post("/flow_runs/", json=body)
    second = http.post("/flow_runs/", json=body)
    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    assert first.json()["id"] == second.json()["id"]
    runs = sync_client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(first.json()["id"])])))
    assert len(runs) == 1
