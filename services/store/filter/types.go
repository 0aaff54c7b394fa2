// Package filter holds Prefect's filter grammars (the request bodies of the
// /flows/filter, /flow_runs/filter, ... endpoints) as Go types, and a
// dialect-aware builder that turns them into SQL WHERE expressions with bound
// parameters only.
//
// The types mirror the schemas of the upstream OpenAPI document field for
// field and are used directly as the generated API's request types, so their
// JSON shape is the wire shape. Two encoding rules keep that shape exact:
//   - sub-filters are pointers: absent and null both mean "no criterion";
//   - lists use `omitzero`, so a nil list (absent or null) is omitted while an
//     explicit empty list survives a round trip, because Prefect gives `[]` a
//     meaning of its own (`any_: []` matches nothing).
package filter

import (
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
)

// Operator combines the criteria of one filter object. The zero value means
// and_, which is Prefect's default.
type Operator string

// The two operators the schema allows.
const (
	And Operator = "and_"
	Or  Operator = "or_"
)

// UnmarshalJSON accepts only the schema's enum, so a bad operator is a decode
// error (422) rather than a silently different query.
func (o *Operator) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	switch Operator(s) {
	case And, Or:
		*o = Operator(s)
		return nil
	}
	return fmt.Errorf("filter: operator must be %q or %q, got %q", And, Or, s)
}

// Time is the API's date-time (pydantic's lenient parsing, RFC 3339 with
// microseconds in UTC on output), shared with the generated models.
type Time = openapi.Time

// ---- flows ----

// FlowFilter filters flows.
type FlowFilter struct {
	Operator   Operator              `json:"operator,omitzero"`
	Id         *FlowFilterId         `json:"id,omitzero"`
	Deployment *FlowFilterDeployment `json:"deployment,omitzero"`
	Name       *FlowFilterName       `json:"name,omitzero"`
	Tags       *FlowFilterTags       `json:"tags,omitzero"`
}

// FlowFilterId filters by flow.id.
type FlowFilterId struct {
	Any    []uuid.UUID `json:"any_,omitzero"`
	NotAny []uuid.UUID `json:"not_any_,omitzero"`
}

// FlowFilterDeployment filters flows by whether they have deployments.
type FlowFilterDeployment struct {
	Operator Operator `json:"operator,omitzero"`
	IsNull   *bool    `json:"is_null_,omitzero"`
}

// FlowFilterName filters by flow.name.
type FlowFilterName struct {
	Any  []string `json:"any_,omitzero"`
	Like *string  `json:"like_,omitzero"`
}

// FlowFilterTags filters by flow.tags.
type FlowFilterTags struct {
	Operator Operator `json:"operator,omitzero"`
	All      []string `json:"all_,omitzero"`
	IsNull   *bool    `json:"is_null_,omitzero"`
}

// ---- flow runs ----

// FlowRunFilter filters flow runs.
type FlowRunFilter struct {
	Operator               Operator                             `json:"operator,omitzero"`
	Id                     *FlowRunFilterId                     `json:"id,omitzero"`
	Name                   *FlowRunFilterName                   `json:"name,omitzero"`
	Tags                   *FlowRunFilterTags                   `json:"tags,omitzero"`
	DeploymentId           *FlowRunFilterDeploymentId           `json:"deployment_id,omitzero"`
	WorkQueueName          *FlowRunFilterWorkQueueName          `json:"work_queue_name,omitzero"`
	State                  *FlowRunFilterState                  `json:"state,omitzero"`
	FlowVersion            *FlowRunFilterFlowVersion            `json:"flow_version,omitzero"`
	StartTime              *FlowRunFilterStartTime              `json:"start_time,omitzero"`
	EndTime                *FlowRunFilterEndTime                `json:"end_time,omitzero"`
	ExpectedStartTime      *FlowRunFilterExpectedStartTime      `json:"expected_start_time,omitzero"`
	NextScheduledStartTime *FlowRunFilterNextScheduledStartTime `json:"next_scheduled_start_time,omitzero"`
	ParentFlowRunId        *FlowRunFilterParentFlowRunId        `json:"parent_flow_run_id,omitzero"`
	ParentTaskRunId        *FlowRunFilterParentTaskRunId        `json:"parent_task_run_id,omitzero"`
	IdempotencyKey         *FlowRunFilterIdempotencyKey         `json:"idempotency_key,omitzero"`
	CreatedBy              *FlowRunFilterCreatedBy              `json:"created_by,omitzero"`
}

// FlowRunFilterId filters by flow_run.id.
type FlowRunFilterId struct {
	Any    []uuid.UUID `json:"any_,omitzero"`
	NotAny []uuid.UUID `json:"not_any_,omitzero"`
}

// FlowRunFilterName filters by flow_run.name.
type FlowRunFilterName struct {
	Any  []string `json:"any_,omitzero"`
	Like *string  `json:"like_,omitzero"`
}

// FlowRunFilterTags filters by flow_run.tags.
type FlowRunFilterTags struct {
	Operator Operator `json:"operator,omitzero"`
	All      []string `json:"all_,omitzero"`
	Any      []string `json:"any_,omitzero"`
	IsNull   *bool    `json:"is_null_,omitzero"`
}

// FlowRunFilterDeploymentId filters by flow_run.deployment_id.
type FlowRunFilterDeploymentId struct {
	Operator Operator    `json:"operator,omitzero"`
	Any      []uuid.UUID `json:"any_,omitzero"`
	IsNull   *bool       `json:"is_null_,omitzero"`
}

// FlowRunFilterWorkQueueName filters by flow_run.work_queue_name.
type FlowRunFilterWorkQueueName struct {
	Operator Operator `json:"operator,omitzero"`
	Any      []string `json:"any_,omitzero"`
	IsNull   *bool    `json:"is_null_,omitzero"`
}

// FlowRunFilterState filters by flow_run.state_type and state_name.
type FlowRunFilterState struct {
	Operator Operator                `json:"operator,omitzero"`
	Type     *FlowRunFilterStateType `json:"type,omitzero"`
	Name     *FlowRunFilterStateName `json:"name,omitzero"`
}

// FlowRunFilterStateType filters by flow_run.state_type (StateType values).
type FlowRunFilterStateType struct {
	Any    []string `json:"any_,omitzero"`
	NotAny []string `json:"not_any_,omitzero"`
}

// FlowRunFilterStateName filters by flow_run.state_name.
type FlowRunFilterStateName struct {
	Any    []string `json:"any_,omitzero"`
	NotAny []string `json:"not_any_,omitzero"`
}

// FlowRunFilterFlowVersion filters by flow_run.flow_version.
type FlowRunFilterFlowVersion struct {
	Any []string `json:"any_,omitzero"`
}

// FlowRunFilterStartTime filters by flow_run.start_time (before_/after_ fall
// back to expected_start_time for runs that have not started, as Prefect does).
type FlowRunFilterStartTime struct {
	Before *Time `json:"before_,omitzero"`
	After  *Time `json:"after_,omitzero"`
	IsNull *bool `json:"is_null_,omitzero"`
}

// FlowRunFilterEndTime filters by flow_run.end_time.
type FlowRunFilterEndTime struct {
	Before *Time `json:"before_,omitzero"`
	After  *Time `json:"after_,omitzero"`
	IsNull *bool `json:"is_null_,omitzero"`
}

// FlowRunFilterExpectedStartTime filters by flow_run.expected_start_time.
type FlowRunFilterExpectedStartTime struct {
	Before *Time `json:"before_,omitzero"`
	After  *Time `json:"after_,omitzero"`
}

// FlowRunFilterNextScheduledStartTime filters by flow_run.next_scheduled_start_time.
type FlowRunFilterNextScheduledStartTime struct {
	Before *Time `json:"before_,omitzero"`
	After  *Time `json:"after_,omitzero"`
}

// FlowRunFilterParentFlowRunId selects subflow runs of the given flow runs.
type FlowRunFilterParentFlowRunId struct {
	Operator Operator    `json:"operator,omitzero"`
	Any      []uuid.UUID `json:"any_,omitzero"`
}

// FlowRunFilterParentTaskRunId filters by flow_run.parent_task_run_id.
type FlowRunFilterParentTaskRunId struct {
	Operator Operator    `json:"operator,omitzero"`
	Any      []uuid.UUID `json:"any_,omitzero"`
	IsNull   *bool       `json:"is_null_,omitzero"`
}

// FlowRunFilterIdempotencyKey filters by flow_run.idempotency_key.
type FlowRunFilterIdempotencyKey struct {
	Any    []string `json:"any_,omitzero"`
	NotAny []string `json:"not_any_,omitzero"`
}

// FlowRunFilterCreatedBy filters by the flow_run.created_by JSON object.
type FlowRunFilterCreatedBy struct {
	Operator Operator    `json:"operator,omitzero"`
	Id       []uuid.UUID `json:"id_,omitzero"`
	Type     []string    `json:"type_,omitzero"`
	IsNull   *bool       `json:"is_null_,omitzero"`
}

// ---- task runs ----

// TaskRunFilter filters task runs.
type TaskRunFilter struct {
	Operator          Operator                        `json:"operator,omitzero"`
	Id                *TaskRunFilterId                `json:"id,omitzero"`
	Name              *TaskRunFilterName              `json:"name,omitzero"`
	Tags              *TaskRunFilterTags              `json:"tags,omitzero"`
	State             *TaskRunFilterState             `json:"state,omitzero"`
	StartTime         *TaskRunFilterStartTime         `json:"start_time,omitzero"`
	EndTime           *TaskRunFilterEndTime           `json:"end_time,omitzero"`
	ExpectedStartTime *TaskRunFilterExpectedStartTime `json:"expected_start_time,omitzero"`
	SubflowRuns       *TaskRunFilterSubFlowRuns       `json:"subflow_runs,omitzero"`
	FlowRunId         *TaskRunFilterFlowRunId         `json:"flow_run_id,omitzero"`
}

// TaskRunFilterId filters by task_run.id.
type TaskRunFilterId struct {
	Any []uuid.UUID `json:"any_,omitzero"`
}

// TaskRunFilterName filters by task_run.name.
type TaskRunFilterName struct {
	Any  []string `json:"any_,omitzero"`
	Like *string  `json:"like_,omitzero"`
}

// TaskRunFilterTags filters by task_run.tags.
type TaskRunFilterTags struct {
	Operator Operator `json:"operator,omitzero"`
	All      []string `json:"all_,omitzero"`
	IsNull   *bool    `json:"is_null_,omitzero"`
}

// TaskRunFilterState filters by task_run.state_type and state_name.
type TaskRunFilterState struct {
	Operator Operator                `json:"operator,omitzero"`
	Type     *TaskRunFilterStateType `json:"type,omitzero"`
	Name     *TaskRunFilterStateName `json:"name,omitzero"`
}

// TaskRunFilterStateType filters by task_run.state_type (StateType values).
type TaskRunFilterStateType struct {
	Any []string `json:"any_,omitzero"`
}

// TaskRunFilterStateName filters by task_run.state_name.
type TaskRunFilterStateName struct {
	Any []string `json:"any_,omitzero"`
}

// TaskRunFilterSubFlowRuns filters task runs by whether a subflow run has
// them as parent task run.
type TaskRunFilterSubFlowRuns struct {
	Exists *bool `json:"exists_,omitzero"`
}

// TaskRunFilterStartTime filters by task_run.start_time.
type TaskRunFilterStartTime struct {
	Before *Time `json:"before_,omitzero"`
	After  *Time `json:"after_,omitzero"`
	IsNull *bool `json:"is_null_,omitzero"`
}

// TaskRunFilterEndTime filters by task_run.end_time.
type TaskRunFilterEndTime struct {
	Before *Time `json:"before_,omitzero"`
	After  *Time `json:"after_,omitzero"`
	IsNull *bool `json:"is_null_,omitzero"`
}

// TaskRunFilterExpectedStartTime filters by task_run.expected_start_time.
type TaskRunFilterExpectedStartTime struct {
	Before *Time `json:"before_,omitzero"`
	After  *Time `json:"after_,omitzero"`
}

// TaskRunFilterFlowRunId filters by task_run.flow_run_id. The schema gives
// is_null_ a default of false, so a nil IsNull means false: an empty object
// selects task runs that have a flow run.
type TaskRunFilterFlowRunId struct {
	Operator Operator    `json:"operator,omitzero"`
	Any      []uuid.UUID `json:"any_,omitzero"`
	IsNull   *bool       `json:"is_null_,omitzero"`
}

// ---- deployments ----

// DeploymentFilter filters deployments.
type DeploymentFilter struct {
	Operator             Operator                          `json:"operator,omitzero"`
	Id                   *DeploymentFilterId               `json:"id,omitzero"`
	Name                 *DeploymentFilterName             `json:"name,omitzero"`
	FlowOrDeploymentName *DeploymentOrFlowNameFilter       `json:"flow_or_deployment_name,omitzero"`
	Paused               *DeploymentFilterPaused           `json:"paused,omitzero"`
	Tags                 *DeploymentFilterTags             `json:"tags,omitzero"`
	WorkQueueName        *DeploymentFilterWorkQueueName    `json:"work_queue_name,omitzero"`
	ConcurrencyLimit     *DeploymentFilterConcurrencyLimit `json:"concurrency_limit,omitzero"`
}

// DeploymentFilterId filters by deployment.id.
type DeploymentFilterId struct {
	Any    []uuid.UUID `json:"any_,omitzero"`
	NotAny []uuid.UUID `json:"not_any_,omitzero"`
}

// DeploymentFilterName filters by deployment.name.
type DeploymentFilterName struct {
	Any  []string `json:"any_,omitzero"`
	Like *string  `json:"like_,omitzero"`
}

// DeploymentOrFlowNameFilter matches a substring of the deployment's or its
// flow's name.
type DeploymentOrFlowNameFilter struct {
	Like *string `json:"like_,omitzero"`
}

// DeploymentFilterPaused filters by deployment.paused.
type DeploymentFilterPaused struct {
	Eq *bool `json:"eq_,omitzero"`
}

// DeploymentFilterTags filters by deployment.tags.
type DeploymentFilterTags struct {
	Operator Operator `json:"operator,omitzero"`
	All      []string `json:"all_,omitzero"`
	Any      []string `json:"any_,omitzero"`
	IsNull   *bool    `json:"is_null_,omitzero"`
}

// DeploymentFilterWorkQueueName filters by deployment.work_queue_name.
type DeploymentFilterWorkQueueName struct {
	Any []string `json:"any_,omitzero"`
}

// DeploymentFilterConcurrencyLimit is deprecated upstream: it is accepted and
// ignored, exactly as Prefect does since the column became a relationship.
type DeploymentFilterConcurrencyLimit struct {
	Ge     *int  `json:"ge_,omitzero"`
	Le     *int  `json:"le_,omitzero"`
	IsNull *bool `json:"is_null_,omitzero"`
}

// ---- work pools and queues ----

// WorkPoolFilter filters work pools.
type WorkPoolFilter struct {
	Operator Operator            `json:"operator,omitzero"`
	Id       *WorkPoolFilterId   `json:"id,omitzero"`
	Name     *WorkPoolFilterName `json:"name,omitzero"`
	Type     *WorkPoolFilterType `json:"type,omitzero"`
}

// WorkPoolFilterId filters by work_pool.id.
type WorkPoolFilterId struct {
	Any []uuid.UUID `json:"any_,omitzero"`
}

// WorkPoolFilterName filters by work_pool.name.
type WorkPoolFilterName struct {
	Any []string `json:"any_,omitzero"`
}

// WorkPoolFilterType filters by work_pool.type.
type WorkPoolFilterType struct {
	Any []string `json:"any_,omitzero"`
}

// WorkQueueFilter filters work queues.
type WorkQueueFilter struct {
	Operator Operator             `json:"operator,omitzero"`
	Id       *WorkQueueFilterId   `json:"id,omitzero"`
	Name     *WorkQueueFilterName `json:"name,omitzero"`
}

// WorkQueueFilterId filters by work_queue.id.
type WorkQueueFilterId struct {
	Any []uuid.UUID `json:"any_,omitzero"`
}

// WorkQueueFilterName filters by work_queue.name; startswith_ is a
// case-insensitive prefix match.
type WorkQueueFilterName struct {
	Any        []string `json:"any_,omitzero"`
	StartsWith []string `json:"startswith_,omitzero"`
}

// ---- logs ----

// LogFilter filters logs.
type LogFilter struct {
	Operator  Operator             `json:"operator,omitzero"`
	Level     *LogFilterLevel      `json:"level,omitzero"`
	Timestamp *LogFilterTimestamp  `json:"timestamp,omitzero"`
	FlowRunId *LogFilterFlowRunId  `json:"flow_run_id,omitzero"`
	TaskRunId *LogFilterTaskRunId  `json:"task_run_id,omitzero"`
	Text      *LogFilterTextSearch `json:"text,omitzero"`
}

// LogFilterLevel filters by log.level (inclusive bounds).
type LogFilterLevel struct {
	Ge *int `json:"ge_,omitzero"`
	Le *int `json:"le_,omitzero"`
}

// LogFilterTimestamp filters by log.timestamp (inclusive bounds).
type LogFilterTimestamp struct {
	Before *Time `json:"before_,omitzero"`
	After  *Time `json:"after_,omitzero"`
}

// LogFilterFlowRunId filters by log.flow_run_id.
type LogFilterFlowRunId struct {
	Any []uuid.UUID `json:"any_,omitzero"`
}

// LogFilterTaskRunId filters by log.task_run_id.
type LogFilterTaskRunId struct {
	Any    []uuid.UUID `json:"any_,omitzero"`
	IsNull *bool       `json:"is_null_,omitzero"`
}

// LogFilterTextSearch is Prefect's small search language over the log
// message and logger name: space-separated terms are OR-ed, "-term" or
// "!term" excludes, "+term" is required, "quoted phrases" match as a whole.
// Query is required by the schema; it is kept without omitzero so an empty
// query still encodes.
type LogFilterTextSearch struct {
	Query string `json:"query"`
}

// ---- filter sets: the bodies of the filter/count endpoints ----

// FlowFilterSet is what /flows/filter and /flows/count filter by.
type FlowFilterSet struct {
	Flows       *FlowFilter       `json:"flows,omitzero"`
	FlowRuns    *FlowRunFilter    `json:"flow_runs,omitzero"`
	TaskRuns    *TaskRunFilter    `json:"task_runs,omitzero"`
	Deployments *DeploymentFilter `json:"deployments,omitzero"`
	WorkPools   *WorkPoolFilter   `json:"work_pools,omitzero"`
}

// FlowRunFilterSet is what /flow_runs/filter and /flow_runs/count filter by.
type FlowRunFilterSet struct {
	Flows          *FlowFilter       `json:"flows,omitzero"`
	FlowRuns       *FlowRunFilter    `json:"flow_runs,omitzero"`
	TaskRuns       *TaskRunFilter    `json:"task_runs,omitzero"`
	Deployments    *DeploymentFilter `json:"deployments,omitzero"`
	WorkPools      *WorkPoolFilter   `json:"work_pools,omitzero"`
	WorkPoolQueues *WorkQueueFilter  `json:"work_pool_queues,omitzero"`
}

// TaskRunFilterSet is what /task_runs/filter and /task_runs/count filter by.
// The work pool and queue members are not in those bodies but Prefect's
// model layer (and the UI routes) accept them, so they are kept here.
type TaskRunFilterSet struct {
	Flows          *FlowFilter       `json:"flows,omitzero"`
	FlowRuns       *FlowRunFilter    `json:"flow_runs,omitzero"`
	TaskRuns       *TaskRunFilter    `json:"task_runs,omitzero"`
	Deployments    *DeploymentFilter `json:"deployments,omitzero"`
	WorkPools      *WorkPoolFilter   `json:"work_pools,omitzero"`
	WorkPoolQueues *WorkQueueFilter  `json:"work_pool_queues,omitzero"`
}

// DeploymentFilterSet is what /deployments/filter and /deployments/count
// filter by.
type DeploymentFilterSet struct {
	Flows          *FlowFilter       `json:"flows,omitzero"`
	FlowRuns       *FlowRunFilter    `json:"flow_runs,omitzero"`
	TaskRuns       *TaskRunFilter    `json:"task_runs,omitzero"`
	Deployments    *DeploymentFilter `json:"deployments,omitzero"`
	WorkPools      *WorkPoolFilter   `json:"work_pools,omitzero"`
	WorkPoolQueues *WorkQueueFilter  `json:"work_pool_queues,omitzero"`
}
