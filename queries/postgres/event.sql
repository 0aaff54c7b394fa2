-- name: InsertEvents :many
-- One statement per batch from parallel arrays. ON CONFLICT DO NOTHING
-- skips ids already stored; RETURNING names the rows that were new, whose
-- resource rows are then written (Prefect's _write_postgres_events).
-- Ids travel as text: pgx encodes a google/uuid value through its
-- driver.Valuer fallback, which builds an error for every element before
-- it succeeds, and that cost more than the insert itself.
INSERT INTO events (id, occurred, event, resource_id, resource, related_resource_ids, related,
                    payload, received, recorded, follows, created, updated)
SELECT u.id, u.occurred, u.event, u.resource_id, u.resource::jsonb, u.related_resource_ids::jsonb,
       u.related::jsonb, u.payload::jsonb, u.received, @recorded::timestamptz,
       NULLIF(u.follows, '')::uuid, @recorded::timestamptz, @recorded::timestamptz
FROM (SELECT unnest(@ids::text[])::uuid AS id, unnest(@occurred::timestamptz[]) AS occurred,
             unnest(@events::text[]) AS event, unnest(@resource_ids::text[]) AS resource_id,
             unnest(@resources::text[]) AS resource,
             unnest(@related_resource_ids::text[]) AS related_resource_ids,
             unnest(@related::text[]) AS related, unnest(@payloads::text[]) AS payload,
             unnest(@received::timestamptz[]) AS received, unnest(@follows::text[]) AS follows) AS u
ON CONFLICT (id) DO NOTHING
RETURNING id::text;

-- name: InsertEventResources :exec
INSERT INTO event_resources (id, occurred, resource_id, resource_role, resource, event_id, created, updated)
SELECT u.id, u.occurred, u.resource_id, u.resource_role, u.resource::jsonb, u.event_id,
       @created::timestamptz, @created::timestamptz
FROM (SELECT unnest(@ids::text[])::uuid AS id, unnest(@occurred::timestamptz[]) AS occurred,
             unnest(@resource_ids::text[]) AS resource_id, unnest(@resource_roles::text[]) AS resource_role,
             unnest(@resources::text[]) AS resource, unnest(@event_ids::text[])::uuid AS event_id) AS u;
