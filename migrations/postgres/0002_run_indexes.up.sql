-- The indexes of the run tables, reviewed against the queries this server
-- runs: the /filter, /count and /history statements (services/store/filter),
-- the sorts of the API's sort enums, the foreign key checks PostgreSQL makes
-- when a referenced row is deleted, and the static queries in queries/postgres.
-- Every flow run and task run state change updates indexed columns (state_*,
-- start_time, end_time, expected_start_time, ...), so PostgreSQL cannot make
-- it a HOT update and adds an entry to every index of the table; every state
-- row inserts into each index of its state table.
-- The same indexes as migrations/sqlite/0002_run_indexes.up.sql.

-- flow_run ------------------------------------------------------------------

-- The DESC twin of ix_flow_run__coalesce_start_time_expected_start_time_asc:
-- PostgreSQL walks an index in either direction for START_TIME_ASC/DESC.
DROP INDEX IF EXISTS ix_flow_run__coalesce_start_time_expected_start_time_desc;
-- A prefix of uq_flow_run__flow_id_idempotency_key, which serves the flow
-- filter's EXISTS and the foreign key check when a flow is deleted.
DROP INDEX IF EXISTS ix_flow_run__flow_id;
-- A prefix of ix_flow_run__state_type_coalesce_start_time (and of the
-- state_type/expected_start_time index below).
DROP INDEX IF EXISTS ix_flow_run__state_type;
-- No filter, sort or lookup reads these columns.
DROP INDEX IF EXISTS ix_flow_run__updated;
DROP INDEX IF EXISTS ix_flow_run__state_timestamp;
DROP INDEX IF EXISTS ix_flow_run__deployment_version;
-- The start_time filter and sorts use COALESCE(start_time,
-- expected_start_time), which has its own index; start_time alone is only
-- tested for is_null_, which matches most runs or sits beside a state filter.
DROP INDEX IF EXISTS ix_flow_run__start_time;
-- Mostly NULL (top-level runs, runs without infrastructure documents): only
-- lookups of one value need these (the parent task run filter, the subflow
-- join of the graph, the foreign key checks when a task run or a block
-- document is deleted), and a partial index serves them without an entry per
-- run.
DROP INDEX IF EXISTS ix_flow_run__parent_task_run_id;
CREATE INDEX ix_flow_run__parent_task_run_id ON flow_run (parent_task_run_id) WHERE parent_task_run_id IS NOT NULL;
DROP INDEX IF EXISTS ix_flow_run__infrastructure_document_id;
CREATE INDEX ix_flow_run__infrastructure_document_id ON flow_run (infrastructure_document_id) WHERE infrastructure_document_id IS NOT NULL;
-- A sorted page of runs in some state (the UI's run lists) walks this index
-- from one end and stops after a page: state equality, then the order of
-- EXPECTED_START_TIME_ASC/DESC. The filter builder reads several states as
-- one such walk per state type.
CREATE INDEX ix_flow_run__state_type_expected_start_time ON flow_run (state_type, expected_start_time);

-- task_run ------------------------------------------------------------------

-- A prefix of uq_task_run__flow_run_id_task_key_dynamic_key.
DROP INDEX IF EXISTS ix_task_run__flow_run_id;
-- A prefix of the state_type/expected_start_time index below.
DROP INDEX IF EXISTS ix_task_run__state_type;
-- task_run.state_id has no foreign key and no query looks runs up by it.
DROP INDEX IF EXISTS ix_task_run__state_id;
-- No filter, sort or lookup reads these columns.
DROP INDEX IF EXISTS ix_task_run__state_timestamp;
DROP INDEX IF EXISTS ix_task_run__updated;
-- No query filters a state and start_time together; the state prefix moves
-- to the index below, which also orders a state's runs for the sorted pages
-- (as ix_flow_run__state_type_expected_start_time).
DROP INDEX IF EXISTS ix_task_run__state_type_start_time;
CREATE INDEX ix_task_run__state_type_expected_start_time ON task_run (state_type, expected_start_time);

-- flow_run_state and task_run_state -------------------------------------------
-- States are read by id, by run (the unique (run id, timestamp) indexes) and
-- joined from their run by id; nothing filters them by name, type or updated.

DROP INDEX IF EXISTS ix_flow_run_state__name;
DROP INDEX IF EXISTS ix_flow_run_state__type;
DROP INDEX IF EXISTS ix_flow_run_state__type_name_timestamp;
DROP INDEX IF EXISTS ix_flow_run_state__updated;
DROP INDEX IF EXISTS ix_task_run_state__name;
DROP INDEX IF EXISTS ix_task_run_state__type;
DROP INDEX IF EXISTS ix_task_run_state__type_name_timestamp;
DROP INDEX IF EXISTS ix_task_run_state__updated;
-- Only the foreign key check when an artifact is deleted looks states up by
-- result artifact, and most states have none: partial, as above.
DROP INDEX IF EXISTS ix_flow_run_state__result_artifact_id;
CREATE INDEX ix_flow_run_state__result_artifact_id ON flow_run_state (result_artifact_id) WHERE result_artifact_id IS NOT NULL;
DROP INDEX IF EXISTS ix_task_run_state__result_artifact_id;
CREATE INDEX ix_task_run_state__result_artifact_id ON task_run_state (result_artifact_id) WHERE result_artifact_id IS NOT NULL;
