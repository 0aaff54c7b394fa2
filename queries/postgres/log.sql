-- name: InsertLogs :exec
-- One statement for a whole batch: the columns arrive as parallel arrays
-- (no bound-parameter limit applies; unnests in one select list advance
-- together), NULL run ids as empty strings.
INSERT INTO log (id, created, updated, name, level, flow_run_id, task_run_id, message, timestamp)
SELECT u.id, @created::timestamptz, @created::timestamptz, u.name, u.level,
       NULLIF(u.flow_run_id, '')::uuid, NULLIF(u.task_run_id, '')::uuid, u.message, u.ts
FROM (SELECT unnest(@ids::uuid[]) AS id, unnest(@names::text[]) AS name,
             unnest(@levels::smallint[]) AS level, unnest(@flow_run_ids::text[]) AS flow_run_id,
             unnest(@task_run_ids::text[]) AS task_run_id, unnest(@messages::text[]) AS message,
             unnest(@timestamps::timestamptz[]) AS ts) AS u;

-- name: GetLogFlowRunName :one
SELECT name FROM flow_run WHERE id = @id;
