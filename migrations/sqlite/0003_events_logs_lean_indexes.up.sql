-- Indexes of Prefect's schema that no query of this server needs, on the
-- tables every flow run writes many rows into (13 events with ~4 resource
-- rows each, and its logs, in the benchmark lifecycle). Each index is one
-- more B-tree insert per row; dropping them leaves every query plan as it
-- was, because:
--   * a prefix of another index is covered by that index:
--       ix_events__event_occurred   by ix_events__event_occurred_id
--       ix_events__occurred         by ix_events__occurred_id
--       ix_log__flow_run_id         by ix_log__flow_run_id_timestamp
--   * no query filters or sorts these tables by `updated`:
--       ix_events__updated, ix_event_resources__updated, ix_log__updated
--   * a log's level is filtered only beside its flow run or task run, which
--     are indexed and far more selective:
--       ix_log__level
DROP INDEX IF EXISTS ix_events__event_occurred;
DROP INDEX IF EXISTS ix_events__occurred;
DROP INDEX IF EXISTS ix_log__flow_run_id;
DROP INDEX IF EXISTS ix_events__updated;
DROP INDEX IF EXISTS ix_event_resources__updated;
DROP INDEX IF EXISTS ix_log__updated;
DROP INDEX IF EXISTS ix_log__level;
