-- Statements of the set_state transaction (services/store/postgres/orchestrate.go).
-- Names carry the Orch prefix so they cannot collide with the resource files.

-- name: OrchLockFlowRun :one
-- Locks the run for the whole transition: concurrent set_state calls on one
-- run queue here, so each sees the state the previous one wrote.
SELECT * FROM flow_run WHERE id = @id FOR UPDATE;

-- name: OrchGetFlowRun :one
SELECT * FROM flow_run WHERE id = @id;

-- name: OrchLockTaskRun :one
SELECT * FROM task_run WHERE id = @id FOR UPDATE;

-- name: OrchGetFlowRunState :one
-- A state with its result: Prefect keeps persisted results in an artifact.
SELECT sqlc.embed(flow_run_state), artifact.data AS artifact_data
FROM flow_run_state LEFT JOIN artifact ON artifact.id = flow_run_state.result_artifact_id
WHERE flow_run_state.id = @id;

-- name: OrchGetTaskRunState :one
SELECT sqlc.embed(task_run_state), artifact.data AS artifact_data
FROM task_run_state LEFT JOIN artifact ON artifact.id = task_run_state.result_artifact_id
WHERE task_run_state.id = @id;

-- name: OrchInsertFlowRunState :exec
INSERT INTO flow_run_state (id, created, updated, flow_run_id, type, timestamp, name, message, state_details, data, result_artifact_id)
VALUES (@id, @created, @created, @flow_run_id, @type, @timestamp, @name, @message, @state_details, @data, @result_artifact_id);

-- name: OrchInsertTaskRunState :exec
INSERT INTO task_run_state (id, created, updated, task_run_id, type, timestamp, name, message, state_details, data, result_artifact_id)
VALUES (@id, @created, @created, @task_run_id, @type, @timestamp, @name, @message, @state_details, @data, @result_artifact_id);

-- name: OrchUpdateFlowRun :exec
UPDATE flow_run SET
	state_id = @state_id, state_type = @state_type, state_name = @state_name, state_timestamp = @state_timestamp,
	run_count = @run_count, start_time = @start_time, end_time = @end_time, total_run_time = @total_run_time,
	expected_start_time = @expected_start_time, next_scheduled_start_time = @next_scheduled_start_time,
	empirical_policy = @empirical_policy, updated = @updated
WHERE id = @id;

-- name: OrchUpdateTaskRun :exec
UPDATE task_run SET
	state_id = @state_id, state_type = @state_type, state_name = @state_name, state_timestamp = @state_timestamp,
	run_count = @run_count, start_time = @start_time, end_time = @end_time, total_run_time = @total_run_time,
	expected_start_time = @expected_start_time, next_scheduled_start_time = @next_scheduled_start_time,
	flow_run_run_count = @flow_run_run_count, updated = @updated
WHERE id = @id;

-- name: OrchFlowRunStateTimestampExists :one
SELECT EXISTS (SELECT 1 FROM flow_run_state WHERE flow_run_id = @flow_run_id AND timestamp = @timestamp);

-- name: OrchInsertStateCache :exec
INSERT INTO task_run_state_cache (id, created, updated, cache_key, cache_expiration, task_run_state_id)
VALUES (@id, @created, @created, @cache_key, @cache_expiration, @task_run_state_id);

-- name: OrchReadCachedState :one
-- The newest cache entry for the key that has not expired, as Prefect's
-- CacheRetrieval: only that entry counts, even if its state is gone.
SELECT sqlc.embed(task_run_state), artifact.data AS artifact_data
FROM task_run_state LEFT JOIN artifact ON artifact.id = task_run_state.result_artifact_id
WHERE task_run_state.id = (
	SELECT c.task_run_state_id FROM task_run_state_cache c
	WHERE c.cache_key = @cache_key AND (c.cache_expiration IS NULL OR c.cache_expiration > @now)
	ORDER BY c.created DESC LIMIT 1
);

-- name: OrchDeleteFlowRunInput :exec
DELETE FROM flow_run_input WHERE flow_run_id = @flow_run_id AND key = @key;

-- name: OrchInsertResultArtifact :exec
INSERT INTO artifact (id, created, updated, key, type, description, data, flow_run_id, task_run_id)
VALUES (@id, @created, @created, @key, @type, @description, @data, @flow_run_id, @task_run_id);

-- name: OrchFlowRunEventData :one
-- Everything a prefect.flow-run.<State> event names besides the run itself.
SELECT
	flow.id AS flow_id, flow.name AS flow_name, flow.tags AS flow_tags,
	deployment.id AS deployment_id, deployment.name AS deployment_name, deployment.tags AS deployment_tags,
	work_queue.id AS work_queue_id, work_queue.name AS work_queue_name,
	work_pool.id AS work_pool_id, work_pool.name AS work_pool_name, work_pool.type AS work_pool_type,
	task_run.id AS task_run_id, task_run.name AS task_run_name, task_run.tags AS task_run_tags
FROM flow_run
LEFT JOIN flow ON flow.id = flow_run.flow_id
LEFT JOIN deployment ON deployment.id = flow_run.deployment_id
LEFT JOIN work_queue ON work_queue.id = flow_run.work_queue_id
LEFT JOIN work_pool ON work_pool.id = work_queue.work_pool_id
LEFT JOIN task_run ON task_run.id = flow_run.parent_task_run_id
WHERE flow_run.id = @id;
