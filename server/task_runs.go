package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/prefect-go/prefect-server/gen/api"
	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// maxCacheKeyLength is PREFECT_API_TASK_CACHE_KEY_MAX_LENGTH's default.
const maxCacheKeyLength = 2000

// maxRetryDelays is how many per-retry delays Prefect's TaskRunPolicy
// accepts (list_length_50_or_less).
const maxRetryDelays = 50

// taskRunOut maps a stored task run to Prefect's TaskRun model, with the
// estimates computed at now.
func taskRunOut(tr store.TaskRun, now time.Time) (api.TaskRun, error) {
	out := api.TaskRun{
		Id:                      tr.ID,
		Created:                 nullable.NewNullableWithValue(openapi.Time{Time: tr.Created}),
		Updated:                 nullable.NewNullableWithValue(openapi.Time{Time: tr.Updated}),
		Name:                    &tr.Name,
		FlowRunId:               trNullableUUID(tr.FlowRunID),
		TaskKey:                 tr.TaskKey,
		DynamicKey:              tr.DynamicKey,
		CacheKey:                trNullableString(tr.CacheKey),
		CacheExpiration:         trNullableTime(tr.CacheExpiration),
		TaskVersion:             trNullableString(tr.TaskVersion),
		Tags:                    &tr.Tags,
		StateId:                 trNullableUUID(tr.StateID),
		StateName:               nullable.NewNullNullable[string](),
		StateType:               nullable.NewNullNullable[api.StateType](),
		RunCount:                &tr.RunCount,
		FlowRunRunCount:         &tr.FlowRunRunCount,
		ExpectedStartTime:       trNullableTime(tr.ExpectedStartTime),
		NextScheduledStartTime:  trNullableTime(tr.NextScheduledStartTime),
		StartTime:               trNullableTime(tr.StartTime),
		EndTime:                 trNullableTime(tr.EndTime),
		TotalRunTime:            trSeconds(tr.TotalRunTime),
		EstimatedRunTime:        trSeconds(tr.EstimatedRunTime(now)),
		EstimatedStartTimeDelta: trSeconds(tr.EstimatedStartTimeDelta(now)),
		State:                   nullable.NewNullNullable[api.State](),
	}
	if out.Tags == nil || *out.Tags == nil {
		empty := []string{}
		out.Tags = &empty
	}
	if tr.Labels != nil {
		out.Labels = nullable.NewNullableWithValue(tr.Labels)
	} else {
		out.Labels = nullable.NewNullNullable[map[string]any]()
	}
	if tr.StateType != orchestration.NoState {
		out.StateType = nullable.NewNullableWithValue(api.StateType(tr.StateType))
		out.StateName = nullable.NewNullableWithValue(tr.StateName)
	}
	policy, err := taskRunPolicyOut(tr.EmpiricalPolicy)
	if err != nil {
		return out, err
	}
	out.EmpiricalPolicy = &policy
	inputs := map[string][]api.TaskRun_TaskInputs_Item{}
	if len(tr.TaskInputs) > 0 {
		if err := json.Unmarshal(tr.TaskInputs, &inputs); err != nil {
			return out, fmt.Errorf("task run %s task_inputs: %w", tr.ID, err)
		}
	}
	out.TaskInputs = &inputs
	if tr.State != nil {
		st, err := taskRunStateOut(*tr.State)
		if err != nil {
			return out, err
		}
		out.State = nullable.NewNullableWithValue(st)
	}
	return out, nil
}

// taskRunResponseOut is the smaller TaskRunResponse model of
// /task_runs/paginate.
func taskRunResponseOut(tr store.TaskRun, now time.Time) (api.TaskRunResponse, error) {
	full, err := taskRunOut(tr, now)
	if err != nil {
		return api.TaskRunResponse{}, err
	}
	out := api.TaskRunResponse{
		Id:                      full.Id,
		Created:                 full.Created,
		Updated:                 full.Updated,
		Name:                    full.Name,
		FlowRunId:               full.FlowRunId,
		TaskKey:                 full.TaskKey,
		StateId:                 full.StateId,
		State:                   full.State,
		TaskVersion:             full.TaskVersion,
		EmpiricalPolicy:         full.EmpiricalPolicy,
		Tags:                    full.Tags,
		StartTime:               full.StartTime,
		EndTime:                 full.EndTime,
		TotalRunTime:            full.TotalRunTime,
		EstimatedRunTime:        full.EstimatedRunTime,
		EstimatedStartTimeDelta: full.EstimatedStartTimeDelta,
	}
	inputs := map[string][]api.TaskRunResponse_TaskInputs_Item{}
	if len(tr.TaskInputs) > 0 {
		if err := json.Unmarshal(tr.TaskInputs, &inputs); err != nil {
			return out, fmt.Errorf("task run %s task_inputs: %w", tr.ID, err)
		}
	}
	out.TaskInputs = &inputs
	return out, nil
}

// taskRunStateOut maps a state to the API's State model. Both share
// Prefect's field names, so JSON carries the state details across; a state
// detail Prefect defaults to false is written as false when unset.
func taskRunStateOut(s orchestration.State) (api.State, error) {
	var out api.State
	b, err := json.Marshal(s)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, err
	}
	if out.StateDetails != nil && (!out.StateDetails.Deferred.IsSpecified() || out.StateDetails.Deferred.IsNull()) {
		out.StateDetails.Deferred = nullable.NewNullableWithValue(false)
	}
	if !out.Name.IsSpecified() {
		out.Name = nullable.NewNullableWithValue(s.Name)
	}
	if !out.Message.IsSpecified() {
		out.Message = nullable.NewNullNullable[string]()
	}
	if !out.Data.IsSpecified() {
		out.Data = nullable.NewNullNullable[any]()
	}
	return out, nil
}

// taskRunPolicyIn reads a TaskRunPolicy as Prefect's model does: the
// deprecated max_retries and retry_delay_seconds fill retries and
// retry_delay when those are unset, and the validators bound the delays.
func taskRunPolicyIn(p *api.TaskRunPolicy) (orchestration.TaskRunPolicy, error) {
	var out orchestration.TaskRunPolicy
	if p == nil {
		return out, nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, errUnprocessable(fmt.Sprintf("Invalid empirical_policy: %v", err))
	}
	return normalizeTaskRunPolicy(out)
}

// normalizeTaskRunPolicy applies Prefect's TaskRunPolicy validators.
func normalizeTaskRunPolicy(p orchestration.TaskRunPolicy) (orchestration.TaskRunPolicy, error) {
	if (p.Retries == nil || *p.Retries == 0) && p.MaxRetries != 0 {
		r := p.MaxRetries
		p.Retries = &r
	}
	if len(p.RetryDelay.Seconds) == 0 || (!p.RetryDelay.IsList && p.RetryDelay.Seconds[0] == 0) {
		if p.RetryDelaySeconds != 0 {
			p.RetryDelay = orchestration.RetryDelay{Seconds: []float64{p.RetryDelaySeconds}}
		}
	}
	if p.RetryDelay.IsList && len(p.RetryDelay.Seconds) > maxRetryDelays {
		return p, errUnprocessable("Can not configure more than 50 retry delays per task.")
	}
	if p.RetryJitterFactor != nil && *p.RetryJitterFactor < 0 {
		return p, errUnprocessable("`retry_jitter_factor` must be >= 0.")
	}
	return p, nil
}

func taskRunPolicyOut(p orchestration.TaskRunPolicy) (api.TaskRunPolicy, error) {
	var out api.TaskRunPolicy
	b, err := json.Marshal(p)
	if err != nil {
		return out, err
	}
	return out, json.Unmarshal(b, &out)
}

func trNullableUUID(id *uuid.UUID) nullable.Nullable[uuid.UUID] {
	if id == nil {
		return nullable.NewNullNullable[uuid.UUID]()
	}
	return nullable.NewNullableWithValue(*id)
}

func trNullableString(s *string) nullable.Nullable[string] {
	if s == nil {
		return nullable.NewNullNullable[string]()
	}
	return nullable.NewNullableWithValue(*s)
}

func trNullableTime(t *time.Time) nullable.Nullable[openapi.Time] {
	if t == nil {
		return nullable.NewNullNullable[openapi.Time]()
	}
	return nullable.NewNullableWithValue(openapi.Time{Time: *t})
}

// trSeconds renders a duration as the API's float seconds.
func trSeconds(d time.Duration) *float64 {
	f := d.Seconds()
	return &f
}

// runRename is the name a run PATCH sets: nil when absent; Prefect's
// set_name validator turns null or "" into a new generated name.
func runRename(n nullable.Nullable[string]) *string {
	if !n.IsSpecified() {
		return nil
	}
	if v := present(n); v != nil && *v != "" {
		return v
	}
	name := store.GenerateSlug()
	return &name
}

// createdTaskRun answers 201: the document only lists 200, but Prefect's
// route sets 201 when the task run did not exist before.
type createdTaskRun api.TaskRun

func (c createdTaskRun) VisitCreateTaskRunResponse(w http.ResponseWriter) error {
	writeJSON(w, http.StatusCreated, api.TaskRun(c))
	return nil
}

func (h *handlers) CreateTaskRun(ctx context.Context, req api.CreateTaskRunRequestObject) (api.CreateTaskRunResponseObject, error) {
	now := time.Now()
	b := req.Body
	in := store.TaskRunCreate{
		ID:          present(b.Id),
		FlowRunID:   present(b.FlowRunId),
		TaskKey:     b.TaskKey,
		DynamicKey:  b.DynamicKey,
		CacheKey:    present(b.CacheKey),
		TaskVersion: present(b.TaskVersion),
		Tags:        []string{},
		Labels:      orDefault(present(b.Labels), nil),
	}
	if n := present(b.Name); n != nil && *n != "" {
		in.Name = *n
	} else {
		in.Name = store.GenerateSlug()
	}
	if in.CacheKey != nil && len(*in.CacheKey) > maxCacheKeyLength {
		return nil, errUnprocessable(fmt.Sprintf("Cache key exceeded maximum allowed length of %d characters.", maxCacheKeyLength))
	}
	if t := present(b.CacheExpiration); t != nil {
		in.CacheExpiration = &t.Time
	}
	if b.Tags != nil {
		in.Tags = *b.Tags
	}
	var err error
	if in.EmpiricalPolicy, err = taskRunPolicyIn(b.EmpiricalPolicy); err != nil {
		return nil, err
	}
	if b.TaskInputs != nil {
		if in.TaskInputs, err = json.Marshal(*b.TaskInputs); err != nil {
			return nil, errUnprocessable(fmt.Sprintf("Invalid task_inputs: %v", err))
		}
	}
	// Prefect creates the run in PENDING when the body has no state.
	proposed := orchestration.State{Type: orchestration.Pending}
	orchestration.NormalizeState(&proposed, now)
	if sc := present(b.State); sc != nil {
		if proposed, err = stateIn(*sc); err != nil {
			return nil, err
		}
		// Prefect validates the body into a full State here, which gives it
		// its id and timestamp before the transition.
		orchestration.NormalizeState(&proposed, now)
	}
	in.State = &proposed
	tr, created, res, err := h.store.CreateTaskRun(ctx, in, orchestrationOptions(ctx, true))
	if err != nil {
		return nil, err
	}
	h.afterTransition(ctx, res.Effects)
	out, err := taskRunOut(tr, store.Now())
	if err != nil {
		return nil, err
	}
	if created {
		return createdTaskRun(out), nil
	}
	return api.CreateTaskRun200JSONResponse(out), nil
}

func (h *handlers) ReadTaskRun(ctx context.Context, req api.ReadTaskRunRequestObject) (api.ReadTaskRunResponseObject, error) {
	tr, err := h.store.ReadTaskRun(ctx, req.Id)
	if err != nil {
		return nil, notFoundAs(err, "Task not found")
	}
	out, err := taskRunOut(tr, store.Now())
	if err != nil {
		return nil, err
	}
	return api.ReadTaskRun200JSONResponse(out), nil
}

func taskRunFilterSet(flows nullable.Nullable[filter.FlowFilter], flowRuns nullable.Nullable[filter.FlowRunFilter], taskRuns nullable.Nullable[filter.TaskRunFilter], deployments nullable.Nullable[filter.DeploymentFilter]) filter.TaskRunFilterSet {
	return filter.TaskRunFilterSet{
		Flows:       present(flows),
		FlowRuns:    present(flowRuns),
		TaskRuns:    present(taskRuns),
		Deployments: present(deployments),
	}
}

func taskRunSort(s *api.TaskRunSort) string {
	if s == nil {
		return "ID_DESC"
	}
	return string(*s)
}

func (h *handlers) ReadTaskRuns(ctx context.Context, req api.ReadTaskRunsRequestObject) (api.ReadTaskRunsResponseObject, error) {
	b := req.Body
	if b == nil {
		b = &api.ReadTaskRunsJSONRequestBody{}
	}
	limit, err := h.limit(present(b.Limit))
	if err != nil {
		return nil, err
	}
	offset := orDefault(present(b.Offset), 0)
	if offset < 0 {
		return nil, errUnprocessable("Invalid offset: must be greater than or equal to 0.")
	}
	trs, err := h.store.ReadTaskRuns(ctx, store.TaskRunQuery{
		Filter: taskRunFilterSet(b.Flows, b.FlowRuns, b.TaskRuns, b.Deployments),
		Sort:   taskRunSort(present(b.Sort)),
		Limit:  limit,
		Offset: offset,
	})
	if err != nil {
		return nil, err
	}
	out, err := taskRunsBodyOut(trs, store.Now())
	if err != nil {
		return nil, err
	}
	return jsonAnswer{status: http.StatusOK, body: out}, nil
}

func (h *handlers) CountTaskRuns(ctx context.Context, req api.CountTaskRunsRequestObject) (api.CountTaskRunsResponseObject, error) {
	var set filter.TaskRunFilterSet
	if b := req.Body; b != nil {
		set = taskRunFilterSet(b.Flows, b.FlowRuns, b.TaskRuns, b.Deployments)
	}
	n, err := h.store.CountTaskRuns(ctx, set)
	if err != nil {
		return nil, err
	}
	return api.CountTaskRuns200JSONResponse(n), nil
}

func (h *handlers) PaginateTaskRuns(ctx context.Context, req api.PaginateTaskRunsRequestObject) (api.PaginateTaskRunsResponseObject, error) {
	b := req.Body
	if b == nil {
		b = &api.PaginateTaskRunsJSONRequestBody{}
	}
	limit, err := h.limit(present(b.Limit))
	if err != nil {
		return nil, err
	}
	page := orDefault(present(b.Page), 1)
	if page < 1 {
		return nil, errUnprocessable("Invalid page: must be greater than or equal to 1.")
	}
	set := taskRunFilterSet(b.Flows, b.FlowRuns, b.TaskRuns, b.Deployments)
	trs, err := h.store.ReadTaskRuns(ctx, store.TaskRunQuery{Filter: set, Sort: taskRunSort(present(b.Sort)), Limit: limit, Offset: (page - 1) * limit})
	if err != nil {
		return nil, err
	}
	count, err := h.store.CountTaskRuns(ctx, set)
	if err != nil {
		return nil, err
	}
	now := store.Now()
	results := make([]api.TaskRunResponse, len(trs))
	for i, tr := range trs {
		if results[i], err = taskRunResponseOut(tr, now); err != nil {
			return nil, err
		}
	}
	return api.PaginateTaskRuns200JSONResponse{
		Results: results,
		Count:   int(count),
		Limit:   limit,
		Pages:   pages(int(count), limit),
		Page:    page,
	}, nil
}

func (h *handlers) TaskRunHistory(ctx context.Context, req api.TaskRunHistoryRequestObject) (api.TaskRunHistoryResponseObject, error) {
	b := req.Body
	start, end, secs := present(b.HistoryStart), present(b.HistoryEnd), present(b.HistoryIntervalSeconds)
	if start == nil || end == nil || secs == nil {
		return nil, errUnprocessable("history_start, history_end and history_interval_seconds are required.")
	}
	if math.IsNaN(float64(*secs)) || *secs < 1 {
		return nil, errUnprocessable("History interval must not be less than 1 second.")
	}
	q := store.TaskRunHistoryQuery{
		Start:    start.Time,
		End:      end.Time,
		Interval: time.Duration(float64(*secs) * float64(time.Second)),
		Filter:   taskRunFilterSet(b.Flows, b.FlowRuns, b.TaskRuns, b.Deployments),
	}
	hist, err := h.store.TaskRunHistory(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make(api.TaskRunHistory200JSONResponse, len(hist))
	for i, iv := range hist {
		states := make([]api.HistoryResponseState, len(iv.States))
		for j, s := range iv.States {
			states[j] = api.HistoryResponseState{
				StateType:            api.StateType(s.StateType),
				StateName:            s.StateName,
				CountRuns:            s.CountRuns,
				SumEstimatedRunTime:  s.SumEstimatedRunTime,
				SumEstimatedLateness: s.SumEstimatedLateness,
			}
		}
		out[i] = api.HistoryResponse{
			IntervalStart: openapi.Time{Time: iv.Start},
			IntervalEnd:   openapi.Time{Time: iv.End},
			States:        states,
		}
	}
	return out, nil
}

func (h *handlers) UpdateTaskRun(ctx context.Context, req api.UpdateTaskRunRequestObject) (api.UpdateTaskRunResponseObject, error) {
	var in store.TaskRunUpdate
	if req.Body != nil {
		in.Name = runRename(req.Body.Name)
	}
	if err := h.store.UpdateTaskRun(ctx, req.Id, in); err != nil {
		return nil, notFoundAs(err, "Task run not found")
	}
	return api.UpdateTaskRun204Response{}, nil
}

func (h *handlers) DeleteTaskRun(ctx context.Context, req api.DeleteTaskRunRequestObject) (api.DeleteTaskRunResponseObject, error) {
	if err := h.store.DeleteTaskRun(ctx, req.Id); err != nil {
		return nil, notFoundAs(err, "Task not found")
	}
	return api.DeleteTaskRun204Response{}, nil
}
