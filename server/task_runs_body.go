package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
)

// taskRunBody is Prefect's TaskRun with plain Go fields. The generated
// api.TaskRun wraps every optional field in nullable.Nullable (a map with
// its own MarshalJSON), which made encoding a 200-row /task_runs/filter
// page cost several times the query; this type encodes the same document
// (TestTaskRunBodyMatchesModel holds them equal).
type taskRunBody struct {
	ID                      uuid.UUID       `json:"id"`
	Created                 openapi.Time    `json:"created"`
	Updated                 openapi.Time    `json:"updated"`
	Name                    string          `json:"name"`
	FlowRunID               *uuid.UUID      `json:"flow_run_id"`
	TaskKey                 string          `json:"task_key"`
	DynamicKey              string          `json:"dynamic_key"`
	CacheKey                *string         `json:"cache_key"`
	CacheExpiration         *openapi.Time   `json:"cache_expiration"`
	TaskVersion             *string         `json:"task_version"`
	EmpiricalPolicy         json.RawMessage `json:"empirical_policy"`
	Tags                    []string        `json:"tags"`
	Labels                  map[string]any  `json:"labels"`
	StateID                 *uuid.UUID      `json:"state_id"`
	TaskInputs              json.RawMessage `json:"task_inputs"`
	StateType               *string         `json:"state_type"`
	StateName               *string         `json:"state_name"`
	RunCount                int             `json:"run_count"`
	FlowRunRunCount         int             `json:"flow_run_run_count"`
	ExpectedStartTime       *openapi.Time   `json:"expected_start_time"`
	NextScheduledStartTime  *openapi.Time   `json:"next_scheduled_start_time"`
	StartTime               *openapi.Time   `json:"start_time"`
	EndTime                 *openapi.Time   `json:"end_time"`
	TotalRunTime            float64         `json:"total_run_time"`
	EstimatedRunTime        float64         `json:"estimated_run_time"`
	EstimatedStartTimeDelta float64         `json:"estimated_start_time_delta"`
	State                   *stateJSON      `json:"state"`
}

// taskRunPolicyCache encodes a policy as the API model does; policies
// repeat across a page, so equal ones share one encoding.
type taskRunPolicyCache struct {
	cache map[string]json.RawMessage
}

func (c *taskRunPolicyCache) encode(p orchestration.TaskRunPolicy) (json.RawMessage, error) {
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if out, ok := c.cache[string(raw)]; ok {
		return out, nil
	}
	model, err := taskRunPolicyOut(p)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(model)
	if err != nil {
		return nil, err
	}
	if c.cache == nil {
		c.cache = map[string]json.RawMessage{}
	}
	c.cache[string(raw)] = out
	return out, nil
}

func taskRunBodyOut(tr store.TaskRun, now time.Time, policies *taskRunPolicyCache) (taskRunBody, error) {
	out := taskRunBody{
		ID: tr.ID, Created: openapi.Time{Time: tr.Created}, Updated: openapi.Time{Time: tr.Updated}, Name: tr.Name,
		FlowRunID: tr.FlowRunID, TaskKey: tr.TaskKey, DynamicKey: tr.DynamicKey, CacheKey: tr.CacheKey,
		CacheExpiration: optTime(tr.CacheExpiration), TaskVersion: tr.TaskVersion, Tags: tr.Tags, StateID: tr.StateID,
		RunCount: tr.RunCount, FlowRunRunCount: tr.FlowRunRunCount,
		ExpectedStartTime: optTime(tr.ExpectedStartTime), NextScheduledStartTime: optTime(tr.NextScheduledStartTime),
		StartTime: optTime(tr.StartTime), EndTime: optTime(tr.EndTime),
		TotalRunTime:            tr.TotalRunTime.Seconds(),
		EstimatedRunTime:        tr.EstimatedRunTime(now).Seconds(),
		EstimatedStartTimeDelta: tr.EstimatedStartTimeDelta(now).Seconds(),
		TaskInputs:              json.RawMessage(tr.TaskInputs),
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if tr.Labels != nil {
		out.Labels = tr.Labels
	}
	if len(out.TaskInputs) == 0 {
		out.TaskInputs = json.RawMessage("{}")
	}
	if tr.StateType != orchestration.NoState {
		st, name := string(tr.StateType), tr.StateName
		out.StateType, out.StateName = &st, &name
	}
	var err error
	if out.EmpiricalPolicy, err = policies.encode(tr.EmpiricalPolicy); err != nil {
		return out, err
	}
	if tr.State != nil {
		out.State = stateOut(tr.State)
		if out.State.StateDetails.Deferred == nil {
			f := false
			out.State.StateDetails.Deferred = &f
		}
	}
	return out, nil
}

func taskRunsBodyOut(trs []store.TaskRun, now time.Time) ([]taskRunBody, error) {
	var policies taskRunPolicyCache
	out := make([]taskRunBody, len(trs))
	for i, tr := range trs {
		var err error
		if out[i], err = taskRunBodyOut(tr, now, &policies); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (a jsonAnswer) VisitReadTaskRunsResponse(w http.ResponseWriter) error { return a.write(w) }
