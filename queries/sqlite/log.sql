-- name: GetLogFlowRunName :one
SELECT name FROM flow_run WHERE id = @id;
