// Package runcodec holds what both adapters share for flow runs, task run
// orchestration and run states: conversions between stored JSON and the
// orchestration types, the result-artifact split Prefect applies to state
// data, and the text of the dynamic flow run statements.
package runcodec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
	"github.com/prefect-go/prefect-server/services/store/internal/rowcodec"
)

// StateParts are the stored columns of a flow or task run state.
type StateParts struct {
	ID        uuid.UUID
	Type      string
	Name      string
	Timestamp time.Time
	Message   *string
	Details   []byte
	// Data is the state's own data column; ArtifactData the data of its
	// result artifact. Prefect serves the first when set, else the second.
	Data, ArtifactData []byte
}

// DecodeState builds the domain state from its columns.
func DecodeState(p StateParts) (orchestration.State, error) {
	st := orchestration.State{
		ID:        p.ID,
		Type:      orchestration.StateType(p.Type),
		Name:      p.Name,
		Timestamp: store.Truncate(p.Timestamp),
		Message:   p.Message,
	}
	if d, err := DecodeDetails(p.Details); err != nil {
		return st, err
	} else {
		st.StateDetails = d
	}
	switch {
	case isJSONValue(p.Data):
		st.Data = json.RawMessage(bytes.Clone(p.Data))
	case isJSONValue(p.ArtifactData):
		st.Data = json.RawMessage(bytes.Clone(p.ArtifactData))
	}
	return st, nil
}

func isJSONValue(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && !bytes.Equal(b, []byte("null"))
}

// DecodeDetails parses a stored state_details object; empty means none.
func DecodeDetails(b []byte) (orchestration.StateDetails, error) {
	var d orchestration.StateDetails
	if !isJSONValue(b) {
		return d, nil
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("decode state_details %q: %w", b, err)
	}
	return d, nil
}

// EncodeDetails renders state_details with Prefect's keys.
func EncodeDetails(d orchestration.StateDetails) []byte {
	b, err := json.Marshal(d)
	if err != nil {
		// Only the map of strings and plain values: cannot fail.
		return []byte("{}")
	}
	return b
}

// ResultArtifact is the artifact row Prefect writes for a state's data.
type ResultArtifact struct {
	Key, Type, Description *string
	Data                   []byte
}

// SplitResult applies Prefect's rule for state data: any data except null
// and {"type": "unpersisted"} goes into a result artifact (artifact_key,
// artifact_type and artifact_description lifted out of an object), and the
// state row keeps no data of its own. ok is false when nothing is stored.
func SplitResult(data json.RawMessage) (ResultArtifact, bool) {
	if !isJSONValue(data) {
		return ResultArtifact{}, false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil || obj == nil {
		return ResultArtifact{Data: bytes.Clone(data)}, true
	}
	if raw, ok := obj["type"]; ok {
		var typ string
		if json.Unmarshal(raw, &typ) == nil && typ == "unpersisted" {
			return ResultArtifact{}, false
		}
	}
	var a ResultArtifact
	lift := func(key string) *string {
		raw, ok := obj[key]
		if !ok {
			return nil
		}
		delete(obj, key)
		var s string
		if json.Unmarshal(raw, &s) != nil || s == "" {
			return nil
		}
		return &s
	}
	a.Key = lift("artifact_key")
	a.Type = lift("artifact_type")
	a.Description = lift("artifact_description")
	if a.Key == nil && a.Type == nil && a.Description == nil {
		a.Data = bytes.Clone(data)
		return a, true
	}
	b, err := json.Marshal(obj)
	if err != nil {
		a.Data = bytes.Clone(data)
	} else {
		a.Data = b
	}
	return a, true
}

// DefaultFlowPolicy is the empirical_policy of a run created without one.
func DefaultFlowPolicy() orchestration.FlowRunPolicy {
	return orchestration.FlowRunPolicy{PauseKeys: []string{}}
}

// DecodeFlowPolicy parses flow_run.empirical_policy; {} gives the default.
func DecodeFlowPolicy(b []byte) (orchestration.FlowRunPolicy, error) {
	p := DefaultFlowPolicy()
	if !isJSONValue(b) {
		return p, nil
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("decode flow run empirical_policy %q: %w", b, err)
	}
	if p.PauseKeys == nil {
		p.PauseKeys = []string{}
	}
	return p, nil
}

// EncodeFlowPolicy renders a flow run policy; pause_keys is never null.
func EncodeFlowPolicy(p orchestration.FlowRunPolicy) []byte {
	if p.PauseKeys == nil {
		p.PauseKeys = []string{}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return []byte("{}")
	}
	return b
}

// DecodeTaskPolicy parses task_run.empirical_policy.
func DecodeTaskPolicy(b []byte) (orchestration.TaskRunPolicy, error) {
	var p orchestration.TaskRunPolicy
	if !isJSONValue(b) {
		return p, nil
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("decode task run empirical_policy %q: %w", b, err)
	}
	return p, nil
}

// Seconds converts a stored total_run_time to a duration.
func Seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// EncodeMap renders a JSON object column that is NOT NULL DEFAULT '{}'.
func EncodeMap(m map[string]any) ([]byte, error) {
	if m == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(m)
}

// DecodeMap parses such a column; never nil.
func DecodeMap(b []byte) (map[string]any, error) {
	m, err := rowcodec.DecodeObject(b)
	if m == nil && err == nil {
		m = map[string]any{}
	}
	return m, err
}

// FlowRunColumns lists flow_run's columns in table order (the order of
// the sqlc models) plus the joined work pool, for the dynamic selects.
const FlowRunColumns = `flow_run.flow_id, flow_run.deployment_id, flow_run.work_queue_name, flow_run.flow_version,
	flow_run.deployment_version, flow_run.parameters, flow_run.idempotency_key, flow_run.context,
	flow_run.empirical_policy, flow_run.tags, flow_run.labels, flow_run.created_by, flow_run.infrastructure_pid,
	flow_run.job_variables, flow_run.infrastructure_document_id, flow_run.parent_task_run_id,
	flow_run.auto_scheduled, flow_run.state_id, flow_run.work_queue_id, flow_run.name, flow_run.state_type,
	flow_run.state_name, flow_run.state_timestamp, flow_run.run_count, flow_run.expected_start_time,
	flow_run.next_scheduled_start_time, flow_run.start_time, flow_run.end_time, flow_run.total_run_time,
	flow_run.id, flow_run.created, flow_run.updated, fr_wq.work_pool_id, fr_wp.name`

// flowRunFrom joins the work pool under aliases, so the filter's own
// EXISTS subqueries over work_queue and work_pool stay unambiguous.
const flowRunFrom = ` FROM flow_run
	LEFT JOIN work_queue fr_wq ON fr_wq.id = flow_run.work_queue_id
	LEFT JOIN work_pool fr_wp ON fr_wp.id = fr_wq.work_pool_id`

// FlowRunSelect builds the statement for one page of flow runs.
func FlowRunSelect(d filter.Dialect, q store.FlowRunQuery) (string, []any, error) {
	b := filter.NewBuilder(d)
	order, err := filter.FlowRunOrderBy(q.Sort)
	if err != nil {
		return "", nil, err
	}
	where, err := b.FlowRunPageWhere(q.Filter, order, q.Limit, q.Offset)
	if err != nil {
		return "", nil, err
	}
	var sb strings.Builder
	sb.WriteString("SELECT " + FlowRunColumns + flowRunFrom + " WHERE " + where)
	rowcodec.Page(&sb, b, order, q.Limit, q.Offset)
	return sb.String(), b.Args(), nil
}

// FlowRunIDs builds the statement selecting the ids of up to limit runs in
// ID_DESC order (bulk operations).
func FlowRunIDs(d filter.Dialect, f filter.FlowRunFilterSet, limit int) (string, []any, error) {
	b := filter.NewBuilder(d)
	where, err := b.FlowRunWhere(f)
	if err != nil {
		return "", nil, err
	}
	order, _ := filter.FlowRunOrderBy("")
	var sb strings.Builder
	sb.WriteString("SELECT flow_run.id FROM flow_run WHERE " + where)
	rowcodec.Page(&sb, b, order, limit, 0)
	return sb.String(), b.Args(), nil
}

// FlowRunCount builds the count statement.
func FlowRunCount(d filter.Dialect, f filter.FlowRunFilterSet) (string, []any, error) {
	b := filter.NewBuilder(d)
	where, err := b.FlowRunWhere(f)
	if err != nil {
		return "", nil, err
	}
	return "SELECT count(*) FROM flow_run WHERE " + where, b.Args(), nil
}

// HistoryColumns are the RunCore columns a history needs, in scan order.
const HistoryColumns = `flow_run.state_type, flow_run.state_name, flow_run.state_timestamp, flow_run.expected_start_time,
	flow_run.start_time, flow_run.total_run_time`

// FlowRunHistorySelect selects the runs of a history window.
func FlowRunHistorySelect(d filter.Dialect, q store.HistoryQuery) (string, []any, error) {
	b := filter.NewBuilder(d)
	where, err := b.FlowRunWhere(q.Filter)
	if err != nil {
		return "", nil, err
	}
	var lo, hi string
	if d == filter.SQLite {
		lo, hi = b.Bind(filter.SQLiteTime(q.Start)), b.Bind(filter.SQLiteTime(store.HistoryEnd(q)))
	} else {
		lo, hi = b.Bind(q.Start.UTC()), b.Bind(store.HistoryEnd(q).UTC())
	}
	return "SELECT " + HistoryColumns + " FROM flow_run WHERE flow_run.expected_start_time >= " + lo +
		" AND flow_run.expected_start_time < " + hi + " AND " + where, b.Args(), nil
}

// latenessExpr is Prefect's estimated_start_time_delta in seconds per
// dialect (PostgreSQL's hybrid expression; on SQLite the route's own CASE,
// with fractional seconds).
var latenessExpr = map[filter.Dialect]string{
	filter.Postgres: `CASE
		WHEN flow_run.start_time > flow_run.expected_start_time THEN EXTRACT(EPOCH FROM flow_run.start_time - flow_run.expected_start_time)
		WHEN flow_run.start_time IS NULL AND flow_run.state_type NOT IN ('COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED')
			AND flow_run.expected_start_time < now() THEN EXTRACT(EPOCH FROM now() - flow_run.expected_start_time)
		ELSE 0 END`,
	filter.SQLite: `CASE
		WHEN flow_run.start_time > flow_run.expected_start_time THEN (julianday(flow_run.start_time) - julianday(flow_run.expected_start_time)) * 86400.0
		WHEN flow_run.start_time IS NULL AND flow_run.state_type NOT IN ('COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED')
			AND julianday(flow_run.expected_start_time) < julianday('now') THEN (julianday('now') - julianday(flow_run.expected_start_time)) * 86400.0
		ELSE 0 END`,
}

// FlowRunLateness builds the average lateness statement.
func FlowRunLateness(d filter.Dialect, f filter.FlowRunFilterSet) (string, []any, error) {
	b := filter.NewBuilder(d)
	where, err := b.FlowRunWhere(f)
	if err != nil {
		return "", nil, err
	}
	if d == filter.Postgres {
		return "SELECT CAST(avg(" + latenessExpr[d] + ") AS double precision) FROM flow_run WHERE " + where, b.Args(), nil
	}
	return "SELECT avg(" + latenessExpr[d] + ") FROM flow_run WHERE " + where, b.Args(), nil
}

// TaskInputs parses task_run.task_inputs: parameter name -> inputs. Each
// input is kept as its raw JSON (for graph v1) and decoded (for graph v2).
func TaskInputs(b []byte) (map[string][]json.RawMessage, error) {
	out := map[string][]json.RawMessage{}
	if !isJSONValue(b) {
		return out, nil
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decode task_inputs: %w", err)
	}
	return out, nil
}
