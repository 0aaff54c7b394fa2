package filter

import (
	"fmt"
	"strings"
)

// The sort functions map the API's sort enums to ORDER BY lists (without the
// ORDER BY keyword), column for column as Prefect's schemas/sorting.py. An
// empty sort selects the endpoint's default. Each list ends with the table's
// id so that LIMIT/OFFSET pages are stable when the sort key ties; that never
// reorders rows the key tells apart. NULL placement is each engine's own, as
// it is under Prefect (PostgreSQL puts NULLs last ascending, SQLite first).

var flowSorts = map[string]string{
	"CREATED_DESC": "flow.created DESC, flow.id DESC",
	"UPDATED_DESC": "flow.updated DESC, flow.id DESC",
	"NAME_ASC":     "flow.name ASC, flow.id ASC",
	"NAME_DESC":    "flow.name DESC, flow.id DESC",
}

var flowRunSorts = map[string]string{
	"ID_DESC":                       "flow_run.id DESC",
	"START_TIME_ASC":                "COALESCE(flow_run.start_time, flow_run.expected_start_time) ASC, flow_run.id ASC",
	"START_TIME_DESC":               "COALESCE(flow_run.start_time, flow_run.expected_start_time) DESC, flow_run.id DESC",
	"EXPECTED_START_TIME_ASC":       "flow_run.expected_start_time ASC, flow_run.id ASC",
	"EXPECTED_START_TIME_DESC":      "flow_run.expected_start_time DESC, flow_run.id DESC",
	"NAME_ASC":                      "flow_run.name ASC, flow_run.id ASC",
	"NAME_DESC":                     "flow_run.name DESC, flow_run.id DESC",
	"NEXT_SCHEDULED_START_TIME_ASC": "flow_run.next_scheduled_start_time ASC, flow_run.id ASC",
	"END_TIME_DESC":                 "flow_run.end_time DESC, flow_run.id DESC",
}

var taskRunSorts = map[string]string{
	"ID_DESC":                       "task_run.id DESC",
	"EXPECTED_START_TIME_ASC":       "task_run.expected_start_time ASC, task_run.id ASC",
	"EXPECTED_START_TIME_DESC":      "task_run.expected_start_time DESC, task_run.id DESC",
	"NAME_ASC":                      "task_run.name ASC, task_run.id ASC",
	"NAME_DESC":                     "task_run.name DESC, task_run.id DESC",
	"NEXT_SCHEDULED_START_TIME_ASC": "task_run.next_scheduled_start_time ASC, task_run.id ASC",
	"END_TIME_DESC":                 "task_run.end_time DESC, task_run.id DESC",
	// Prefect's own tiebreakers for the duration sorts. The package-level
	// function sorts by the stored total_run_time; (*Builder).TaskRunOrderBy
	// adds the running span as Prefect's estimated_run_time does.
	"DURATION_DESC": "task_run.total_run_time DESC, task_run.expected_start_time DESC, task_run.id DESC",
	"DURATION_ASC":  "task_run.total_run_time ASC, task_run.expected_start_time DESC, task_run.id DESC",
}

// estimatedRunTime is Prefect's TaskRun.estimated_run_time in seconds: the
// stored total plus, while RUNNING, the time since the state was entered
// (total_run_time only grows when a RUNNING state is left).
var estimatedRunTime = map[Dialect]string{
	Postgres: "(CASE WHEN task_run.state_type = 'RUNNING' THEN task_run.total_run_time + EXTRACT(EPOCH FROM (now() - task_run.state_timestamp)) ELSE task_run.total_run_time END)",
	SQLite:   "(CASE WHEN task_run.state_type = 'RUNNING' THEN task_run.total_run_time + (julianday('now') - julianday(task_run.state_timestamp)) * 86400.0 ELSE task_run.total_run_time END)",
}

var deploymentSorts = map[string]string{
	"CREATED_DESC": "deployment.created DESC, deployment.id DESC",
	"UPDATED_DESC": "deployment.updated DESC, deployment.id DESC",
	"NAME_ASC":     "deployment.name ASC, deployment.id ASC",
	"NAME_DESC":    "deployment.name DESC, deployment.id DESC",
}

var logSorts = map[string]string{
	"TIMESTAMP_ASC":  "log.timestamp ASC, log.id ASC",
	"TIMESTAMP_DESC": "log.timestamp DESC, log.id DESC",
}

func orderBy(kind string, table map[string]string, sort, def string) (string, error) {
	if sort == "" {
		sort = def
	}
	if s, ok := table[sort]; ok {
		return s, nil
	}
	return "", fmt.Errorf("%w: unknown %s %q", ErrInvalid, kind, sort)
}

// FlowOrderBy maps a FlowSort value (default NAME_ASC) to an ORDER BY list.
func FlowOrderBy(sort string) (string, error) {
	return orderBy("FlowSort", flowSorts, sort, "NAME_ASC")
}

// FlowRunOrderBy maps a FlowRunSort value (default ID_DESC) to an ORDER BY list.
func FlowRunOrderBy(sort string) (string, error) {
	return orderBy("FlowRunSort", flowRunSorts, sort, "ID_DESC")
}

// TaskRunOrderBy maps a TaskRunSort value (default ID_DESC) to an ORDER BY
// list that is valid on both engines. For DURATION_* it orders by the stored
// total_run_time, which misses the current span of RUNNING task runs; use
// (*Builder).TaskRunOrderBy for Prefect's exact order.
func TaskRunOrderBy(sort string) (string, error) {
	return orderBy("TaskRunSort", taskRunSorts, sort, "ID_DESC")
}

// TaskRunOrderBy is the dialect-aware TaskRunSort mapping: DURATION_* order
// by Prefect's estimated run time, counting the running span of RUNNING task
// runs. Other values are as the package-level TaskRunOrderBy.
func (b *Builder) TaskRunOrderBy(sort string) (string, error) {
	s, err := TaskRunOrderBy(sort)
	if err != nil {
		return "", err
	}
	if sort == "DURATION_DESC" || sort == "DURATION_ASC" {
		s = strings.Replace(s, "task_run.total_run_time", estimatedRunTime[b.d], 1)
	}
	return s, nil
}

// DeploymentOrderBy maps a DeploymentSort value (default NAME_ASC) to an
// ORDER BY list.
func DeploymentOrderBy(sort string) (string, error) {
	return orderBy("DeploymentSort", deploymentSorts, sort, "NAME_ASC")
}

// LogOrderBy maps a LogSort value (default TIMESTAMP_ASC) to an ORDER BY list.
func LogOrderBy(sort string) (string, error) {
	return orderBy("LogSort", logSorts, sort, "TIMESTAMP_ASC")
}
