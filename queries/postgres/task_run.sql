-- Static statements of the task run store. The reads that serve the API
-- (one run with its state, filtered pages, history) and the recorder's
-- multi-row upserts are built at run time in services/store/postgres/taskrun.go
-- because their shape depends on the filter or on the batch.

-- name: InsertTaskRun :one
-- Creates a task run unless its natural key (flow_run_id, task_key,
-- dynamic_key) exists; no row comes back then (Prefect's create_task_run).
INSERT INTO task_run (id, created, updated, name, flow_run_id, task_key, dynamic_key,
	cache_key, cache_expiration, task_version, empirical_policy, tags, labels, task_inputs)
VALUES (@id, @created, @created, @name, @flow_run_id, @task_key, @dynamic_key,
	@cache_key, @cache_expiration, @task_version, @empirical_policy, @tags, @labels, @task_inputs)
ON CONFLICT (flow_run_id, task_key, dynamic_key) DO NOTHING
RETURNING id;

-- name: GetTaskRunIDByNaturalKey :one
SELECT id FROM task_run
WHERE flow_run_id = @flow_run_id AND task_key = @task_key AND dynamic_key = @dynamic_key;

-- name: GetTaskRunIDWithoutFlowRun :one
-- Task runs without a flow run have no unique index to lean on (NULL never
-- conflicts); Prefect matches them on (task_key, dynamic_key) in code.
SELECT id FROM task_run
WHERE flow_run_id IS NULL AND task_key = @task_key AND dynamic_key = @dynamic_key
LIMIT 1;

-- name: GetFlowRunLabelsForTaskRun :one
-- The parent flow run's labels, which a new task run inherits.
SELECT labels FROM flow_run WHERE id = @id;

-- name: LockTaskRunsWithoutFlowRun :exec
-- Serialises creators of flow-run-less task runs on one (task_key,
-- dynamic_key), which no unique index guards.
SELECT pg_advisory_xact_lock(hashtextextended(@task_key::text || '/' || @dynamic_key::text, 0));

-- name: UpdateTaskRunName :execrows
UPDATE task_run SET name = @name, updated = @updated WHERE id = @id;

-- name: TouchTaskRun :execrows
-- Bumps updated for a PATCH that changes no column, as SQLAlchemy's onupdate
-- does for every UPDATE Prefect issues.
UPDATE task_run SET updated = @updated WHERE id = @id;

-- name: DeleteTaskRun :execrows
DELETE FROM task_run WHERE id = @id;

-- name: GetTaskRunState :one
-- A state's result may live in its result artifact (states written by
-- set_state); Prefect serves the artifact's data when the row has none.
SELECT trs.id, trs.type, trs.name, trs.timestamp, trs.message, trs.state_details, trs.data,
	tra.data AS artifact_data
FROM task_run_state trs LEFT JOIN artifact tra ON tra.id = trs.result_artifact_id
WHERE trs.id = @id;

-- name: ListTaskRunStates :many
SELECT trs.id, trs.type, trs.name, trs.timestamp, trs.message, trs.state_details, trs.data,
	tra.data AS artifact_data
FROM task_run_state trs LEFT JOIN artifact tra ON tra.id = trs.result_artifact_id
WHERE trs.task_run_id = @task_run_id ORDER BY trs.timestamp ASC;

-- name: DeleteTaskRunLogs :exec
DELETE FROM log WHERE task_run_id = @task_run_id;
