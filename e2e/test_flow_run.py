"""A real @flow executed by the Prefect engine against the server.

The flow runs in a child interpreter: the engine keeps process-wide state (event
workers, API log handler, version-check cache) and a hard subprocess timeout is
the only bound that also covers a client stuck in its own retry loops.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

RUN_TIMEOUT_S = 90

FLOW_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    from prefect import flow

    @flow(name=sys.argv[1], log_prints=True)
    def add(x: int, y: int) -> int:
        print("adding", x, y)
        return x + y

    state = add(2, 3, return_state=True)
    print(json.dumps({
        "flow_run_id": str(state.state_details.flow_run_id),
        "type": state.type.value,
        "result": state.result(raise_on_failure=False),
    }))
    """
)


@pytest.mark.flow_runs
def test_flow_completes(prefect_server, sync_client, tmp_path):
    flow_name = f"e2e-run-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path),
        PREFECT_PROFILES_PATH=str(tmp_path / "profiles.toml"),
        PREFECT_API_URL=prefect_server.api_url,
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="false",
        # Fail fast instead of backing off through retries on an unfinished server.
        PREFECT_CLIENT_MAX_RETRIES="0",
        PREFECT_API_REQUEST_TIMEOUT="15",
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", FLOW_SCRIPT, flow_name],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"flow did not finish in {RUN_TIMEOUT_S}s:\n{exc.stderr or ''}")
    assert proc.returncode == 0, f"flow process failed:\n{proc.stdout}\n{proc.stderr}"

    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["type"] == "COMPLETED", proc.stderr
    assert outcome["result"] == 5

    flow_run = sync_client.read_flow_run(uuid.UUID(outcome["flow_run_id"]))
    assert flow_run.state is not None
    assert flow_run.state.type.value == "COMPLETED"
    assert flow_run.state.name == "Completed"
    assert flow_run.run_count == 1
    assert flow_run.start_time is not None and flow_run.end_time is not None
    assert sync_client.read_flow(flow_run.flow_id).name == flow_name
