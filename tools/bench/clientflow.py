"""The real Prefect 3.9.1 client as a workload: one process runs a flow of N
sequential tasks R times and writes each run's id and wall time as JSON.

Run by `bench compare` with PREFECT_API_URL pointing at the server under
test; the process start-up (importing prefect) is outside the timings.
"""

import json
import sys
import time

from prefect import flow, task
from prefect.runtime import flow_run as current_flow_run

N_TASKS = int(sys.argv[1])
N_RUNS = int(sys.argv[2])
OUT = sys.argv[3]


@task
def work(i: int) -> int:
    return i * 2


@flow(name="bench-client-flow")
def many_tasks() -> str:
    for i in range(N_TASKS):
        work(i)
    return str(current_flow_run.id)


runs = []
for _ in range(N_RUNS):
    started = time.perf_counter()
    run_id = many_tasks()
    runs.append({"id": run_id, "seconds": time.perf_counter() - started})

with open(OUT, "w") as f:
    json.dump({"runs": runs}, f)
