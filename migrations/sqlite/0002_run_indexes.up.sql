-- The indexes of the run tables, reviewed against the queries this server
-- runs: the /filter, /count and /history statements (services/store/filter),
-- the sorts of the API's sort enums, the foreign key checks SQLite makes when
-- a referenced row is deleted, and the static queries in queries/sqlite.
-- Every flow run and task run state change rewrites the entries of each index
-- on a changed column (state_*, start_time, end_time, expected_start_time,
-- next_scheduled_start_time, updated, ...), and every state row inserts into
-- each index of its state table; with a single SQLite writer that work bounds
-- how many transitions a second the server commits.

-- flow_run ------------------------------------------------------------------

-- The DESC twin of ix_flow_run__coalesce_start_time_expected_start_time_asc:
-- SQLite walks an index in either direction for START_TIME_ASC/DESC.
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

-- Planner statistics ------------------------------------------------------------
-- Without statistics SQLite assumes every index equality matches ten rows, so
-- for "state_type = ? AND flow_run_id = ? ORDER BY expected_start_time" it
-- walks all the runs in that state in order rather than the ten runs of the
-- flow run. These figures describe a large server (100,000 flow runs,
-- 1,000,000 task runs: few state types and names, ten task runs per flow run,
-- unique times and ids) and are the same on every database, so plans do not
-- change as a database grows and the plan tests hold for production
-- (services/store/filter: TestSQLitePagePlans). A later ANALYZE replaces them
-- with measured figures; a migration that adds an index to these tables adds
-- its row too, or the planner assumes ten rows per value for it.
ANALYZE sqlite_schema;
DELETE FROM sqlite_stat1 WHERE tbl IN ('flow_run', 'task_run');
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
	('flow_run', 'sqlite_autoindex_flow_run_1', '100000 1'),
	('flow_run', 'uq_flow_run__flow_id_idempotency_key', '100000 1000 1'),
	('flow_run', 'ix_flow_run__coalesce_start_time_expected_start_time_asc', '100000 1'),
	('flow_run', 'ix_flow_run__deployment_id', '100000 1000'),
	('flow_run', 'ix_flow_run__end_time_desc', '100000 1'),
	('flow_run', 'ix_flow_run__expected_start_time_desc', '100000 1'),
	('flow_run', 'ix_flow_run__flow_version', '100000 10000'),
	('flow_run', 'ix_flow_run__infrastructure_document_id', '1000 10'),
	('flow_run', 'ix_flow_run__name', '100000 1'),
	('flow_run', 'ix_flow_run__next_scheduled_start_time_asc', '100000 1'),
	('flow_run', 'ix_flow_run__parent_task_run_id', '10000 1'),
	('flow_run', 'ix_flow_run__scheduler_deployment_id_auto_scheduled_next_schedu', '1000 100 50 1'),
	('flow_run', 'ix_flow_run__state_id', '100000 1'),
	('flow_run', 'ix_flow_run__state_name', '100000 10000'),
	('flow_run', 'ix_flow_run__state_type_coalesce_start_time', '100000 20000 1'),
	('flow_run', 'ix_flow_run__state_type_expected_start_time', '100000 20000 1'),
	('flow_run', 'ix_flow_run__work_queue_id', '100000 1000'),
	('flow_run', 'ix_flow_run__work_queue_name', '100000 1000'),
	('task_run', 'sqlite_autoindex_task_run_1', '1000000 1'),
	('task_run', 'uq_task_run__flow_run_id_task_key_dynamic_key', '1000000 10 1 1'),
	('task_run', 'ix_task_run__end_time_desc', '1000000 1'),
	('task_run', 'ix_task_run__expected_start_time_desc', '1000000 1'),
	('task_run', 'ix_task_run__name', '1000000 10'),
	('task_run', 'ix_task_run__next_scheduled_start_time_asc', '1000000 1'),
	('task_run', 'ix_task_run__start_time', '1000000 1'),
	('task_run', 'ix_task_run__state_name', '1000000 100000'),
	('task_run', 'ix_task_run__state_type_expected_start_time', '1000000 200000 1');
-- Loads the figures into this connection; others load them with the schema.
ANALYZE sqlite_schema;
