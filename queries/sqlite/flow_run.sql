-- Flow runs, their states and inputs (services/store/sqlite/flowrun.go).
-- The /filter, /count, /history and /lateness statements are built at run
-- time by services/store/filter.
--
-- name: InsertFlowRun :one
-- Runs without an idempotency key never conflict (NULLs are distinct); with
-- one, an existing (flow_id, idempotency_key) row makes this return nothing.
INSERT INTO flow_run (
	id, created, updated, flow_id, name, deployment_id, deployment_version, work_queue_id, work_queue_name,
	flow_version, parameters, idempotency_key, context, empirical_policy, tags, labels, created_by,
	infrastructure_document_id, parent_task_run_id, job_variables, auto_scheduled
) VALUES (
	@id, @created, @created, @flow_id, @name, @deployment_id, @deployment_version, @work_queue_id, @work_queue_name,
	@flow_version, @parameters, @idempotency_key, @context, @empirical_policy, @tags, @labels, @created_by,
	@infrastructure_document_id, @parent_task_run_id, @job_variables, @auto_scheduled
)
ON CONFLICT (flow_id, idempotency_key) DO NOTHING
RETURNING id;

-- name: GetFlowRunIDByIdempotencyKey :one
SELECT id FROM flow_run WHERE flow_id = @flow_id AND idempotency_key = @idempotency_key;

-- name: GetFlowRun :one
SELECT sqlc.embed(flow_run), work_queue.work_pool_id AS work_pool_id, work_pool.name AS work_pool_name
FROM flow_run
LEFT JOIN work_queue ON work_queue.id = flow_run.work_queue_id
LEFT JOIN work_pool ON work_pool.id = work_queue.work_pool_id
WHERE flow_run.id = @id;

-- name: GetFlowLabelsForFlowRun :one
SELECT labels FROM flow WHERE id = @id;

-- name: GetDeploymentForFlowRun :one
SELECT id, flow_id, labels FROM deployment WHERE id = @id;

-- name: GetWorkQueueInPool :one
SELECT work_queue.id FROM work_queue JOIN work_pool ON work_pool.id = work_queue.work_pool_id
WHERE work_pool.name = @pool_name AND work_queue.name = @queue_name;

-- name: GetWorkPoolDefaultQueue :one
SELECT default_queue_id FROM work_pool WHERE name = @pool_name;

-- name: UpdateFlowRunLabels :execrows
UPDATE flow_run SET labels = @labels, updated = @updated WHERE id = @id;

-- name: LockFlowRunLabels :one
SELECT labels FROM flow_run WHERE id = @id;

-- name: DeleteFlowRun :execrows
DELETE FROM flow_run WHERE id = @id;

-- name: DeleteFlowRunsByIDs :many
DELETE FROM flow_run WHERE id IN (sqlc.slice('ids')) RETURNING id;

-- name: ListFlowRunStates :many
SELECT sqlc.embed(flow_run_state), artifact.data AS artifact_data
FROM flow_run_state LEFT JOIN artifact ON artifact.id = flow_run_state.result_artifact_id
WHERE flow_run_state.flow_run_id = @flow_run_id
ORDER BY flow_run_state.timestamp ASC, flow_run_state.id ASC;

-- name: GetFlowRunStatesByIDs :many
SELECT sqlc.embed(flow_run_state), artifact.data AS artifact_data
FROM flow_run_state LEFT JOIN artifact ON artifact.id = flow_run_state.result_artifact_id
WHERE flow_run_state.id IN (sqlc.slice('ids'));

-- name: GetTaskRunStatesByIDsForGraph :many
SELECT sqlc.embed(task_run_state), artifact.data AS artifact_data
FROM task_run_state LEFT JOIN artifact ON artifact.id = task_run_state.result_artifact_id
WHERE task_run_state.id IN (sqlc.slice('ids'));

-- name: ListTaskRunsForGraph :many
SELECT * FROM task_run WHERE flow_run_id = @flow_run_id ORDER BY id DESC;

-- name: ListFlowRunStatesForGraph :many
SELECT id, timestamp, type, name FROM flow_run_state WHERE flow_run_id = @flow_run_id ORDER BY timestamp ASC, id ASC;

-- name: ListSubflowRunsForGraph :many
-- Subflow runs of a flow run: runs whose parent task run belongs to it.
SELECT flow_run.id, flow_run.name, flow_run.state_type, flow_run.start_time, flow_run.end_time,
	flow_run.expected_start_time, flow_run.parent_task_run_id, flow.name AS flow_name
FROM flow_run JOIN task_run ON task_run.id = flow_run.parent_task_run_id
LEFT JOIN flow ON flow.id = flow_run.flow_id
WHERE task_run.flow_run_id = @flow_run_id;

-- name: ListGraphArtifacts :many
-- Like Prefect's, type <> 'result' also leaves out untyped artifacts.
SELECT artifact.id, artifact.created, artifact.key, artifact.type, artifact.data, artifact.task_run_id,
	CAST(artifact.key IS NULL OR artifact_collection.id IS NOT NULL AS BOOLEAN) AS is_latest
FROM artifact LEFT JOIN artifact_collection
	ON artifact_collection.key = artifact.key AND artifact_collection.latest_id = artifact.id
WHERE artifact.flow_run_id = @flow_run_id AND artifact.type <> 'result'
ORDER BY artifact.created ASC, artifact.id ASC
LIMIT @max_artifacts;

-- name: InsertFlowRunInput :one
INSERT INTO flow_run_input (id, created, updated, flow_run_id, key, value, sender)
VALUES (@id, @created, @created, @flow_run_id, @key, @value, @sender)
RETURNING *;

-- name: GetFlowRunInput :one
SELECT * FROM flow_run_input WHERE flow_run_id = @flow_run_id AND key = @key;

-- name: ListFlowRunInputsByPrefix :many
-- Prefect matches with LIKE prefix || '%', wildcards in the prefix included.
SELECT * FROM flow_run_input WHERE flow_run_id = @flow_run_id AND key LIKE @prefix || '%'
ORDER BY created ASC, id ASC;

-- name: DeleteFlowRunInput :execrows
DELETE FROM flow_run_input WHERE flow_run_id = @flow_run_id AND key = @key;

-- name: FlowRunExists :one
SELECT EXISTS (SELECT 1 FROM flow_run WHERE id = @id);
