-- name: InsertFlow :one
-- Inserts a flow unless one with the name exists; no row comes back then.
INSERT INTO flow (id, created, updated, name, tags, labels)
VALUES (@id, @created, @created, @name, @tags, @labels)
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: GetFlowByID :one
SELECT * FROM flow WHERE id = @id;

-- name: GetFlowByName :one
SELECT * FROM flow WHERE name = @name;

-- name: UpdateFlowTags :execrows
UPDATE flow SET tags = @tags, updated = @updated WHERE id = @id;

-- name: TouchFlow :execrows
-- Bumps updated for a PATCH that changes no column, as SQLAlchemy's onupdate
-- does for every UPDATE Prefect issues.
UPDATE flow SET updated = @updated WHERE id = @id;

-- name: DeleteFlow :execrows
DELETE FROM flow WHERE id = @id;

-- name: DeleteFlowsByIDs :many
DELETE FROM flow WHERE id = ANY(@ids::uuid[]) RETURNING id;
