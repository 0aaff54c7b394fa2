package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/prefect-go/prefect-server/gen/api"
	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// Prefect's PREFECT_API_MAX_FLOW_RUN_GRAPH_NODES and _ARTIFACTS defaults.
const (
	maxGraphNodes     = 10000
	maxGraphArtifacts = 10000
)

// flowRunJSON is Prefect's FlowRunResponse. Durations are float seconds,
// as Prefect serializes timedeltas.
type flowRunJSON struct {
	ID                       uuid.UUID                   `json:"id"`
	Created                  openapi.Time                `json:"created"`
	Updated                  openapi.Time                `json:"updated"`
	Name                     string                      `json:"name"`
	FlowID                   uuid.UUID                   `json:"flow_id"`
	StateID                  *uuid.UUID                  `json:"state_id"`
	DeploymentID             *uuid.UUID                  `json:"deployment_id"`
	DeploymentVersion        *string                     `json:"deployment_version"`
	WorkQueueID              *uuid.UUID                  `json:"work_queue_id"`
	WorkQueueName            *string                     `json:"work_queue_name"`
	FlowVersion              *string                     `json:"flow_version"`
	Parameters               map[string]any              `json:"parameters"`
	IdempotencyKey           *string                     `json:"idempotency_key"`
	Context                  map[string]any              `json:"context"`
	EmpiricalPolicy          orchestration.FlowRunPolicy `json:"empirical_policy"`
	Tags                     []string                    `json:"tags"`
	Labels                   map[string]any              `json:"labels"`
	ParentTaskRunID          *uuid.UUID                  `json:"parent_task_run_id"`
	StateType                *string                     `json:"state_type"`
	StateName                *string                     `json:"state_name"`
	RunCount                 int                         `json:"run_count"`
	ExpectedStartTime        *openapi.Time               `json:"expected_start_time"`
	NextScheduledStartTime   *openapi.Time               `json:"next_scheduled_start_time"`
	StartTime                *openapi.Time               `json:"start_time"`
	EndTime                  *openapi.Time               `json:"end_time"`
	TotalRunTime             float64                     `json:"total_run_time"`
	EstimatedRunTime         float64                     `json:"estimated_run_time"`
	EstimatedStartTimeDelta  float64                     `json:"estimated_start_time_delta"`
	AutoScheduled            bool                        `json:"auto_scheduled"`
	InfrastructureDocumentID *uuid.UUID                  `json:"infrastructure_document_id"`
	InfrastructurePID        *string                     `json:"infrastructure_pid"`
	CreatedBy                json.RawMessage             `json:"created_by"`
	WorkPoolID               *uuid.UUID                  `json:"work_pool_id"`
	WorkPoolName             *string                     `json:"work_pool_name"`
	State                    *stateJSON                  `json:"state"`
	JobVariables             map[string]any              `json:"job_variables"`
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func flowRunOut(r store.FlowRun, now time.Time) flowRunJSON {
	out := flowRunJSON{
		ID: r.ID, Created: openapi.Time{Time: r.Created}, Updated: openapi.Time{Time: r.Updated}, Name: r.Name,
		FlowID: r.FlowID, StateID: r.StateID, DeploymentID: r.DeploymentID, DeploymentVersion: r.DeploymentVersion,
		WorkQueueID: r.WorkQueueID, WorkQueueName: r.WorkQueueName, FlowVersion: r.FlowVersion, Parameters: r.Parameters,
		IdempotencyKey: r.IdempotencyKey, Context: r.Context, EmpiricalPolicy: r.EmpiricalPolicy, Tags: r.Tags,
		Labels: r.Labels, ParentTaskRunID: r.ParentTaskRunID, StateType: strOrNil(string(r.StateType)),
		StateName: strOrNil(r.StateName), RunCount: r.RunCount, ExpectedStartTime: optTime(r.ExpectedStartTime),
		NextScheduledStartTime: optTime(r.NextScheduledStartTime), StartTime: optTime(r.StartTime), EndTime: optTime(r.EndTime),
		TotalRunTime:             r.TotalRunTime.Seconds(),
		EstimatedRunTime:         r.EstimatedRunTime(now).Seconds(),
		EstimatedStartTimeDelta:  r.EstimatedStartTimeDelta(now).Seconds(),
		AutoScheduled:            r.AutoScheduled,
		InfrastructureDocumentID: r.InfrastructureDocumentID, InfrastructurePID: r.InfrastructurePID,
		CreatedBy: r.CreatedBy, WorkPoolID: r.WorkPoolID, WorkPoolName: r.WorkPoolName, State: stateOut(r.State),
		JobVariables: r.JobVariables,
	}
	if out.Labels == nil {
		out.Labels = map[string]any{}
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if out.EmpiricalPolicy.PauseKeys == nil {
		out.EmpiricalPolicy.PauseKeys = []string{}
	}
	if len(out.CreatedBy) == 0 {
		out.CreatedBy = json.RawMessage("null")
	}
	return out
}

func flowRunsOut(rs []store.FlowRun) []flowRunJSON {
	now := time.Now()
	out := make([]flowRunJSON, len(rs))
	for i, r := range rs {
		out[i] = flowRunOut(r, now)
	}
	return out
}

// jsonAnswer writes any body with a status; it satisfies the response
// interfaces of the flow run operations whose generated types cannot carry
// the exact shape (float64 durations, raw results).
type jsonAnswer struct {
	status int
	body   any
}

func (a jsonAnswer) write(w http.ResponseWriter) error {
	writeJSON(w, a.status, a.body)
	return nil
}

func (a jsonAnswer) VisitCreateFlowRunResponse(w http.ResponseWriter) error    { return a.write(w) }
func (a jsonAnswer) VisitReadFlowRunResponse(w http.ResponseWriter) error      { return a.write(w) }
func (a jsonAnswer) VisitReadFlowRunsResponse(w http.ResponseWriter) error     { return a.write(w) }
func (a jsonAnswer) VisitPaginateFlowRunsResponse(w http.ResponseWriter) error { return a.write(w) }
func (a jsonAnswer) VisitFlowRunHistoryResponse(w http.ResponseWriter) error   { return a.write(w) }
func (a jsonAnswer) VisitAverageFlowRunLatenessResponse(w http.ResponseWriter) error {
	return a.write(w)
}
func (a jsonAnswer) VisitReadFlowRunGraphV1Response(w http.ResponseWriter) error { return a.write(w) }
func (a jsonAnswer) VisitReadFlowRunGraphV2Response(w http.ResponseWriter) error { return a.write(w) }
func (a jsonAnswer) VisitFilterFlowRunInputResponse(w http.ResponseWriter) error { return a.write(w) }
func (a jsonAnswer) VisitReadFlowRunStateResponse(w http.ResponseWriter) error   { return a.write(w) }
func (a jsonAnswer) VisitReadFlowRunStatesResponse(w http.ResponseWriter) error  { return a.write(w) }
func (a jsonAnswer) VisitUpdateFlowRunResponse(w http.ResponseWriter) error      { return a.write(w) }

func flowRunPolicyIn(p *api.FlowRunPolicy) *orchestration.FlowRunPolicy {
	if p == nil {
		return nil
	}
	out := orchestration.FlowRunPolicy{PauseKeys: []string{}}
	if p.MaxRetries != nil {
		out.MaxRetries = *p.MaxRetries
	}
	if p.RetryDelaySeconds != nil {
		out.RetryDelaySeconds = *p.RetryDelaySeconds
	}
	out.Retries = present(p.Retries)
	out.RetryDelay = present(p.RetryDelay)
	if k := present(p.PauseKeys); k != nil {
		out.PauseKeys = *k
	}
	if r := present(p.Resuming); r != nil {
		out.Resuming = *r
	}
	if t := present(p.RetryType); t != nil {
		rt := orchestration.RetryType(*t)
		out.RetryType = &rt
	}
	// Prefect's FlowRunPolicy validator: the deprecated fields fill the new.
	if out.Retries == nil && out.MaxRetries != 0 {
		out.Retries = ptrTo(out.MaxRetries)
	}
	if out.RetryDelay == nil && out.RetryDelaySeconds != 0 {
		out.RetryDelay = ptrTo(int(out.RetryDelaySeconds))
	}
	return &out
}

func (h *handlers) CreateFlowRun(ctx context.Context, req api.CreateFlowRunRequestObject) (api.CreateFlowRunResponseObject, error) {
	if req.Body == nil {
		return nil, errUnprocessable("body is required")
	}
	b := req.Body
	in := store.FlowRunCreate{
		FlowID:                   b.FlowId,
		DeploymentID:             present(b.DeploymentId),
		FlowVersion:              present(b.FlowVersion),
		IdempotencyKey:           present(b.IdempotencyKey),
		InfrastructureDocumentID: present(b.InfrastructureDocumentId),
		ParentTaskRunID:          present(b.ParentTaskRunId),
		WorkPoolName:             present(b.WorkPoolName),
		WorkQueueName:            present(b.WorkQueueName),
		EmpiricalPolicy:          flowRunPolicyIn(b.EmpiricalPolicy),
		Tags:                     []string{},
	}
	if n := present(b.Name); n != nil {
		in.Name = *n // empty: the store generates one, as get_or_create_run_name
	}
	if b.Parameters != nil {
		in.Parameters = *b.Parameters
	}
	if b.Context != nil {
		in.Context = *b.Context
	}
	if b.Tags != nil {
		in.Tags = *b.Tags
	}
	if l := present(b.Labels); l != nil {
		in.Labels = *l
	}
	if jv := present(b.JobVariables); jv != nil {
		in.JobVariables = *jv
	} else {
		in.JobVariables = map[string]any{}
	}
	// The route gives a run without a state a Pending one.
	st := orchestration.State{Type: orchestration.Pending}
	if s := present(b.State); s != nil {
		var err error
		if st, err = stateIn(*s); err != nil {
			return nil, err
		}
	}
	in.State = &st
	out, err := h.store.CreateFlowRun(ctx, in, orchestrationOptions(ctx, true))
	if err != nil {
		var msg string
		if errors.Is(err, store.ErrNotFound) {
			// A work pool or queue named in the body does not exist.
			msg = strings.TrimSuffix(err.Error(), ": "+store.ErrNotFound.Error())
			return nil, errNotFound(msg)
		}
		return nil, err
	}
	h.afterTransition(ctx, out.Effects)
	status := http.StatusOK
	if out.Created {
		status = http.StatusCreated
	}
	return jsonAnswer{status, flowRunOut(out.Run, time.Now())}, nil
}

func (h *handlers) ReadFlowRun(ctx context.Context, req api.ReadFlowRunRequestObject) (api.ReadFlowRunResponseObject, error) {
	r, err := h.store.ReadFlowRun(ctx, req.Id)
	if err != nil {
		return nil, notFoundAs(err, "Flow run not found")
	}
	return jsonAnswer{http.StatusOK, flowRunOut(r, time.Now())}, nil
}

func flowRunSort(s *api.FlowRunSort) string {
	if s == nil {
		return ""
	}
	return string(*s)
}

func flowRunFilterSet(flows nullable.Nullable[filter.FlowFilter], flowRuns nullable.Nullable[filter.FlowRunFilter], taskRuns nullable.Nullable[filter.TaskRunFilter], deployments nullable.Nullable[filter.DeploymentFilter], workPools nullable.Nullable[filter.WorkPoolFilter], queues nullable.Nullable[filter.WorkQueueFilter]) filter.FlowRunFilterSet {
	return filter.FlowRunFilterSet{
		Flows: present(flows), FlowRuns: present(flowRuns), TaskRuns: present(taskRuns),
		Deployments: present(deployments), WorkPools: present(workPools), WorkPoolQueues: present(queues),
	}
}

func (h *handlers) ReadFlowRuns(ctx context.Context, req api.ReadFlowRunsRequestObject) (api.ReadFlowRunsResponseObject, error) {
	b := req.Body
	if b == nil {
		b = &api.ReadFlowRunsJSONRequestBody{}
	}
	limit, err := h.limit(present(b.Limit))
	if err != nil {
		return nil, err
	}
	offset := orDefault(present(b.Offset), 0)
	if offset < 0 {
		return nil, errUnprocessable("offset must be greater than or equal to 0")
	}
	rs, err := h.store.ReadFlowRuns(ctx, store.FlowRunQuery{
		Filter: flowRunFilterSet(b.Flows, b.FlowRuns, b.TaskRuns, b.Deployments, b.WorkPools, b.WorkPoolQueues),
		Sort:   flowRunSort(present(b.Sort)),
		Limit:  limit,
		Offset: offset,
	})
	if err != nil {
		return nil, err
	}
	return jsonAnswer{http.StatusOK, flowRunsOut(rs)}, nil
}

func (h *handlers) CountFlowRuns(ctx context.Context, req api.CountFlowRunsRequestObject) (api.CountFlowRunsResponseObject, error) {
	var set filter.FlowRunFilterSet
	if b := req.Body; b != nil {
		set = flowRunFilterSet(b.Flows, b.FlowRuns, b.TaskRuns, b.Deployments, b.WorkPools, b.WorkPoolQueues)
	}
	n, err := h.store.CountFlowRuns(ctx, set)
	if err != nil {
		return nil, err
	}
	return api.CountFlowRuns200JSONResponse(n), nil
}

type flowRunPageJSON struct {
	Results []flowRunJSON `json:"results"`
	Count   int64         `json:"count"`
	Limit   int           `json:"limit"`
	Pages   int           `json:"pages"`
	Page    int           `json:"page"`
}

func (h *handlers) PaginateFlowRuns(ctx context.Context, req api.PaginateFlowRunsRequestObject) (api.PaginateFlowRunsResponseObject, error) {
	b := req.Body
	if b == nil {
		b = &api.PaginateFlowRunsJSONRequestBody{}
	}
	limit, err := h.limit(present(b.Limit))
	if err != nil {
		return nil, err
	}
	page := orDefault(present(b.Page), 1)
	if page < 1 {
		return nil, errUnprocessable("page must be greater than or equal to 1")
	}
	set := flowRunFilterSet(b.Flows, b.FlowRuns, b.TaskRuns, b.Deployments, b.WorkPools, b.WorkPoolQueues)
	rs, err := h.store.ReadFlowRuns(ctx, store.FlowRunQuery{Filter: set, Sort: flowRunSort(present(b.Sort)), Limit: limit, Offset: (page - 1) * limit})
	if err != nil {
		return nil, err
	}
	count, err := h.store.CountFlowRuns(ctx, set)
	if err != nil {
		return nil, err
	}
	return jsonAnswer{http.StatusOK, flowRunPageJSON{Results: flowRunsOut(rs), Count: count, Limit: limit, Pages: pages(int(count), limit), Page: page}}, nil
}

type historyStateJSON struct {
	StateType            string  `json:"state_type"`
	StateName            string  `json:"state_name"`
	CountRuns            int     `json:"count_runs"`
	SumEstimatedRunTime  float64 `json:"sum_estimated_run_time"`
	SumEstimatedLateness float64 `json:"sum_estimated_lateness"`
}

type historyJSON struct {
	IntervalStart openapi.Time       `json:"interval_start"`
	IntervalEnd   openapi.Time       `json:"interval_end"`
	States        []historyStateJSON `json:"states"`
}

func historyOut(hs []store.HistoryInterval) []historyJSON {
	out := make([]historyJSON, len(hs))
	for i, iv := range hs {
		states := make([]historyStateJSON, len(iv.States))
		for j, s := range iv.States {
			states[j] = historyStateJSON{StateType: string(s.StateType), StateName: s.StateName, CountRuns: s.CountRuns,
				SumEstimatedRunTime: s.SumEstimatedRunTime, SumEstimatedLateness: s.SumEstimatedLateness}
		}
		out[i] = historyJSON{IntervalStart: openapi.Time{Time: iv.Start}, IntervalEnd: openapi.Time{Time: iv.End}, States: states}
	}
	return out
}

func (h *handlers) FlowRunHistory(ctx context.Context, req api.FlowRunHistoryRequestObject) (api.FlowRunHistoryResponseObject, error) {
	b := req.Body
	if b == nil {
		return nil, errUnprocessable("history_start, history_end and history_interval_seconds are required")
	}
	start, end, secs := present(b.HistoryStart), present(b.HistoryEnd), present(b.HistoryIntervalSeconds)
	if start == nil || end == nil || secs == nil {
		return nil, errUnprocessable("history_start, history_end and history_interval_seconds are required")
	}
	if *secs < 1 {
		return nil, errUnprocessable("History interval must not be less than 1 second.")
	}
	q := store.HistoryQuery{
		Start:    start.Time.UTC(),
		End:      end.Time.UTC(),
		Interval: time.Duration(math.Round(float64(*secs)*1e6)) * time.Microsecond,
		Filter:   flowRunFilterSet(b.Flows, b.FlowRuns, b.TaskRuns, b.Deployments, b.WorkPools, b.WorkQueues),
	}
	hist, err := h.store.FlowRunHistory(ctx, q)
	if err != nil {
		return nil, err
	}
	return jsonAnswer{http.StatusOK, historyOut(hist)}, nil
}

func (h *handlers) AverageFlowRunLateness(ctx context.Context, req api.AverageFlowRunLatenessRequestObject) (api.AverageFlowRunLatenessResponseObject, error) {
	var set filter.FlowRunFilterSet
	if b := req.Body; b != nil {
		set = flowRunFilterSet(b.Flows, b.FlowRuns, b.TaskRuns, b.Deployments, b.WorkPools, b.WorkPoolQueues)
	}
	avg, err := h.store.FlowRunLateness(ctx, set)
	if err != nil {
		return nil, err
	}
	return jsonAnswer{http.StatusOK, avg}, nil
}

func (h *handlers) UpdateFlowRun(ctx context.Context, req api.UpdateFlowRunRequestObject) (api.UpdateFlowRunResponseObject, error) {
	if req.Body == nil {
		return nil, errUnprocessable("body is required")
	}
	b := req.Body
	var in store.FlowRunUpdate
	in.Name = runRename(b.Name)
	if b.FlowVersion.IsSpecified() {
		v := present(b.FlowVersion)
		in.FlowVersion = &v
	}
	if b.InfrastructurePid.IsSpecified() {
		v := present(b.InfrastructurePid)
		in.InfrastructurePID = &v
	}
	if b.Parameters != nil {
		in.Parameters = b.Parameters
	}
	if b.Tags != nil {
		in.Tags = b.Tags
	}
	in.EmpiricalPolicy = flowRunPolicyIn(b.EmpiricalPolicy)
	if jv := present(b.JobVariables); jv != nil {
		// Prefect only lets a scheduled run of a deployment change them.
		run, err := h.store.ReadFlowRun(ctx, req.Id)
		if err != nil {
			return nil, notFoundAs(err, "Flow run not found")
		}
		switch {
		case run.State == nil:
			return jsonAnswer{http.StatusBadRequest, detail{"Flow run state is required to update job variables but none exists"}}, nil
		case run.State.Type != orchestration.Scheduled:
			return jsonAnswer{http.StatusBadRequest, detail{fmt.Sprintf("Job variables for a flow run in state %s cannot be updated", run.State.Type)}}, nil
		case run.DeploymentID == nil:
			return jsonAnswer{http.StatusBadRequest, detail{"A deployment for the flow run could not be found"}}, nil
		}
		in.JobVariables = jv
	}
	if err := h.store.UpdateFlowRun(ctx, req.Id, in); err != nil {
		return nil, notFoundAs(err, "Flow run not found")
	}
	return api.UpdateFlowRun204Response{}, nil
}

func (h *handlers) UpdateFlowRunLabels(ctx context.Context, req api.UpdateFlowRunLabelsRequestObject) (api.UpdateFlowRunLabelsResponseObject, error) {
	labels := map[string]any{}
	if req.Body != nil {
		labels = *req.Body
	}
	if err := h.store.UpdateFlowRunLabels(ctx, req.Id, labels); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return objectNotFound{fmt.Sprintf("Flow run with id %s not found", req.Id)}, nil
		}
		return nil, err
	}
	return api.UpdateFlowRunLabels204Response{}, nil
}

func (h *handlers) DeleteFlowRun(ctx context.Context, req api.DeleteFlowRunRequestObject) (api.DeleteFlowRunResponseObject, error) {
	if err := h.store.DeleteFlowRun(ctx, req.Id); err != nil {
		return nil, notFoundAs(err, "Flow run not found")
	}
	return api.DeleteFlowRun204Response{}, nil
}

func (h *handlers) BulkDeleteFlowRuns(ctx context.Context, req api.BulkDeleteFlowRunsRequestObject) (api.BulkDeleteFlowRunsResponseObject, error) {
	limit := bulkOperationLimit
	var set filter.FlowRunFilterSet
	if b := req.Body; b != nil {
		limit = orDefault(present(b.Limit), limit)
		set.FlowRuns = present(b.FlowRuns)
	}
	if limit < 1 || limit > bulkOperationLimit {
		return nil, errUnprocessable(fmt.Sprintf("limit must be between 1 and %d", bulkOperationLimit))
	}
	ids, err := h.store.BulkDeleteFlowRuns(ctx, set, limit)
	if err != nil {
		return nil, err
	}
	return api.BulkDeleteFlowRuns200JSONResponse{Deleted: &ids}, nil
}

// dependencyJSON is graph v1's DependencyResult.
type dependencyJSON struct {
	ID                   uuid.UUID         `json:"id"`
	Name                 string            `json:"name"`
	UpstreamDependencies []json.RawMessage `json:"upstream_dependencies"`
	State                *stateJSON        `json:"state"`
	ExpectedStartTime    *openapi.Time     `json:"expected_start_time"`
	StartTime            *openapi.Time     `json:"start_time"`
	EndTime              *openapi.Time     `json:"end_time"`
	TotalRunTime         float64           `json:"total_run_time"`
	EstimatedRunTime     float64           `json:"estimated_run_time"`
	UntrackableResult    bool              `json:"untrackable_result"`
}

func (h *handlers) ReadFlowRunGraphV1(ctx context.Context, req api.ReadFlowRunGraphV1RequestObject) (api.ReadFlowRunGraphV1ResponseObject, error) {
	deps, err := h.store.ReadFlowRunGraphV1(ctx, req.Id)
	if errors.Is(err, store.ErrNotFound) {
		return objectNotFound{fmt.Sprintf("Flow run with id %s not found", req.Id)}, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]dependencyJSON, len(deps))
	for i, d := range deps {
		out[i] = dependencyJSON{ID: d.ID, Name: d.Name, UpstreamDependencies: d.UpstreamDependencies, State: stateOut(d.State),
			ExpectedStartTime: optTime(d.ExpectedStartTime), StartTime: optTime(d.StartTime), EndTime: optTime(d.EndTime),
			TotalRunTime: d.TotalRunTime.Seconds(), EstimatedRunTime: d.EstimatedRunTime.Seconds(), UntrackableResult: d.UntrackableResult}
		if out[i].UpstreamDependencies == nil {
			out[i].UpstreamDependencies = []json.RawMessage{}
		}
	}
	return jsonAnswer{http.StatusOK, out}, nil
}

type graphEdgeJSON struct {
	ID uuid.UUID `json:"id"`
}

type graphArtifactJSON struct {
	ID       uuid.UUID       `json:"id"`
	Created  openapi.Time    `json:"created"`
	Key      *string         `json:"key"`
	Type     *string         `json:"type"`
	IsLatest bool            `json:"is_latest"`
	Data     json.RawMessage `json:"data"`
}

type graphNodeJSON struct {
	Kind          string              `json:"kind"`
	ID            uuid.UUID           `json:"id"`
	Label         string              `json:"label"`
	StateType     string              `json:"state_type"`
	StartTime     openapi.Time        `json:"start_time"`
	EndTime       *openapi.Time       `json:"end_time"`
	Parents       []graphEdgeJSON     `json:"parents"`
	Children      []graphEdgeJSON     `json:"children"`
	Encapsulating []graphEdgeJSON     `json:"encapsulating"`
	Artifacts     []graphArtifactJSON `json:"artifacts"`
}

type graphStateJSON struct {
	ID        uuid.UUID    `json:"id"`
	Timestamp openapi.Time `json:"timestamp"`
	Type      string       `json:"type"`
	Name      string       `json:"name"`
}

type graphJSON struct {
	StartTime   *openapi.Time       `json:"start_time"`
	EndTime     *openapi.Time       `json:"end_time"`
	RootNodeIDs []uuid.UUID         `json:"root_node_ids"`
	Nodes       [][2]any            `json:"nodes"`
	Artifacts   []graphArtifactJSON `json:"artifacts"`
	States      []graphStateJSON    `json:"states"`
}

func edgesOut(ids []uuid.UUID) []graphEdgeJSON {
	out := make([]graphEdgeJSON, len(ids))
	for i, id := range ids {
		out[i] = graphEdgeJSON{id}
	}
	return out
}

func artifactsOut(as []store.GraphArtifact) []graphArtifactJSON {
	out := make([]graphArtifactJSON, len(as))
	for i, a := range as {
		out[i] = graphArtifactJSON{ID: a.ID, Created: openapi.Time{Time: a.Created}, Key: a.Key, Type: a.Type, IsLatest: a.IsLatest, Data: a.Data}
		if len(out[i].Data) == 0 {
			out[i].Data = json.RawMessage("null")
		}
	}
	return out
}

func (h *handlers) ReadFlowRunGraphV2(ctx context.Context, req api.ReadFlowRunGraphV2RequestObject) (api.ReadFlowRunGraphV2ResponseObject, error) {
	var since time.Time
	if req.Params.Since != nil {
		since = req.Params.Since.Time.UTC()
	}
	g, err := h.store.ReadFlowRunGraphV2(ctx, req.Id, since, maxGraphNodes, maxGraphArtifacts)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return objectNotFound{fmt.Sprintf("Flow run %s not found", req.Id)}, nil
	case errors.Is(err, store.ErrGraphTooLarge):
		return jsonAnswer{http.StatusBadRequest, detail{fmt.Sprintf("The graph of flow run %s has more than %d nodes.", req.Id, maxGraphNodes)}}, nil
	case err != nil:
		return nil, err
	}
	out := graphJSON{StartTime: optTime(g.StartTime), EndTime: optTime(g.EndTime), RootNodeIDs: g.RootNodeIDs,
		Nodes: make([][2]any, len(g.Nodes)), Artifacts: artifactsOut(g.Artifacts), States: make([]graphStateJSON, len(g.States))}
	if out.RootNodeIDs == nil {
		out.RootNodeIDs = []uuid.UUID{}
	}
	for i, n := range g.Nodes {
		out.Nodes[i] = [2]any{n.ID, graphNodeJSON{Kind: n.Kind, ID: n.ID, Label: n.Label, StateType: string(n.StateType),
			StartTime: openapi.Time{Time: n.StartTime}, EndTime: optTime(n.EndTime), Parents: edgesOut(n.Parents),
			Children: edgesOut(n.Children), Encapsulating: edgesOut(n.Encapsulating), Artifacts: artifactsOut(n.Artifacts)}}
	}
	for i, s := range g.States {
		out.States[i] = graphStateJSON{ID: s.ID, Timestamp: openapi.Time{Time: s.Timestamp}, Type: string(s.Type), Name: s.Name}
	}
	return jsonAnswer{http.StatusOK, out}, nil
}

type inputCreated struct{}

// VisitCreateFlowRunInputResponse answers 201 with the route's None body.
func (inputCreated) VisitCreateFlowRunInputResponse(w http.ResponseWriter) error {
	writeJSON(w, http.StatusCreated, nil)
	return nil
}

func (h *handlers) CreateFlowRunInput(ctx context.Context, req api.CreateFlowRunInputRequestObject) (api.CreateFlowRunInputResponseObject, error) {
	if req.Body == nil {
		return nil, errUnprocessable("key and value are required")
	}
	key, value := present(req.Body.Key), present(req.Body.Value)
	if key == nil || value == nil {
		return nil, errUnprocessable("key and value are required")
	}
	_, err := h.store.CreateFlowRunInput(ctx, store.FlowRunInput{FlowRunID: req.Id, Key: *key, Value: *value, Sender: present(req.Body.Sender)})
	switch {
	case errors.Is(err, store.ErrConflict):
		return nil, errConflict("A flow run input with this key already exists.")
	case errors.Is(err, store.ErrNotFound):
		return nil, errNotFound("Flow run not found")
	case err != nil:
		return nil, err
	}
	return inputCreated{}, nil
}

type flowRunInputJSON struct {
	ID        uuid.UUID    `json:"id"`
	Created   openapi.Time `json:"created"`
	Updated   openapi.Time `json:"updated"`
	FlowRunID uuid.UUID    `json:"flow_run_id"`
	Key       string       `json:"key"`
	Value     string       `json:"value"`
	Sender    *string      `json:"sender"`
}

func (h *handlers) FilterFlowRunInput(ctx context.Context, req api.FilterFlowRunInputRequestObject) (api.FilterFlowRunInputResponseObject, error) {
	if req.Body == nil {
		return nil, errUnprocessable("prefix is required")
	}
	prefix := present(req.Body.Prefix)
	if prefix == nil {
		return nil, errUnprocessable("prefix is required")
	}
	limit := orDefault(present(req.Body.Limit), 1)
	var exclude []string
	if e := present(req.Body.ExcludeKeys); e != nil {
		exclude = *e
	}
	if limit <= 0 {
		// SQL LIMIT 0 (or a negative one on PostgreSQL, an error there)
		// matches nothing.
		return jsonAnswer{http.StatusOK, []flowRunInputJSON{}}, nil
	}
	ins, err := h.store.FilterFlowRunInputs(ctx, req.Id, *prefix, limit, exclude)
	if err != nil {
		return nil, err
	}
	out := make([]flowRunInputJSON, len(ins))
	for i, in := range ins {
		out[i] = flowRunInputJSON{ID: in.ID, Created: openapi.Time{Time: in.Created}, Updated: openapi.Time{Time: in.Updated},
			FlowRunID: in.FlowRunID, Key: in.Key, Value: in.Value, Sender: in.Sender}
	}
	return jsonAnswer{http.StatusOK, out}, nil
}

// plainText answers Prefect's PlainTextResponse.
type plainText string

func (p plainText) VisitReadFlowRunInputResponse(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write([]byte(p))
	return err
}

func (h *handlers) ReadFlowRunInput(ctx context.Context, req api.ReadFlowRunInputRequestObject) (api.ReadFlowRunInputResponseObject, error) {
	in, err := h.store.ReadFlowRunInput(ctx, req.Id, req.Key)
	if err != nil {
		return nil, notFoundAs(err, "Flow run input not found")
	}
	return plainText(in.Value), nil
}

func (h *handlers) DeleteFlowRunInput(ctx context.Context, req api.DeleteFlowRunInputRequestObject) (api.DeleteFlowRunInputResponseObject, error) {
	if err := h.store.DeleteFlowRunInput(ctx, req.Id, req.Key); err != nil {
		return nil, notFoundAs(err, "Flow run input not found")
	}
	return api.DeleteFlowRunInput204Response{}, nil
}
