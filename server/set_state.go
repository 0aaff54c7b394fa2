package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/prefect-go/prefect-server/gen/api"
	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// requestMeta is what orchestration reads from request headers: the
// X-PREFECT-API-VERSION (pause bookkeeping depends on it) and the client's
// Prefect version from its User-Agent (deployment concurrency leases).
type requestMeta struct {
	apiVersion    string
	clientVersion string
	base          string // scheme://host the client used
}

type requestMetaKey struct{}

// clientUserAgent is Prefect's PREFECT_CLIENT_USER_AGENT_PATTERN.
var clientUserAgent = regexp.MustCompile(`^prefect/(\d+\.\d+\.\d+(?:[a-z.+0-9]+)?) \(API \S+\)$`)

// withRequestMeta stores the orchestration-relevant headers and the base
// URL in the request context, where the strict handlers (which never see the request) read
// them back with metaFrom.
func withRequestMeta(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := requestMeta{apiVersion: r.Header.Get("X-Prefect-Api-Version")}
		if r.Host != "" {
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			m.base = scheme + "://" + r.Host
		}
		if sub := clientUserAgent.FindStringSubmatch(r.Header.Get("User-Agent")); sub != nil {
			m.clientVersion = sub[1]
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestMetaKey{}, m)))
	})
}

func metaFrom(ctx context.Context) requestMeta {
	m, _ := ctx.Value(requestMetaKey{}).(requestMeta)
	return m
}

// orchestrationOptions are the engine parameters of one request. Now stays
// zero so the engine stamps states when it holds the run's lock: timestamps
// then follow the order in which transitions commit.
func orchestrationOptions(ctx context.Context, force bool) orchestration.Options {
	m := metaFrom(ctx)
	return orchestration.Options{Force: force, APIVersion: m.apiVersion, ClientVersion: m.clientVersion}
}

// stateIn turns a StateCreate into the proposed state. Id and timestamp stay
// unset: the engine assigns them.
func stateIn(in api.StateCreate) (orchestration.State, error) {
	st := orchestration.State{Type: orchestration.StateType(in.Type)}
	if !st.Type.Valid() {
		return st, errUnprocessable(fmt.Sprintf("Invalid state type %q", in.Type))
	}
	if n := present(in.Name); n != nil {
		st.Name = *n
	}
	st.Message = present(in.Message)
	if in.Data.IsSpecified() && !in.Data.IsNull() {
		b, err := json.Marshal(in.Data.MustGet())
		if err != nil {
			return st, errUnprocessable(fmt.Sprintf("Invalid state data: %v", err))
		}
		st.Data = b
	}
	if d := in.StateDetails; d != nil {
		// The generated details carry Prefect's field names; JSON moves them
		// across without a field-by-field copy that could drift.
		b, err := json.Marshal(d)
		if err != nil {
			return st, errUnprocessable(fmt.Sprintf("Invalid state details: %v", err))
		}
		if err := json.Unmarshal(b, &st.StateDetails); err != nil {
			return st, errUnprocessable(fmt.Sprintf("Invalid state details: %v", err))
		}
	}
	return st, nil
}

// stateDetailsJSON is Prefect's StateDetails as served.
type stateDetailsJSON struct {
	FlowRunID                    *uuid.UUID        `json:"flow_run_id"`
	TaskRunID                    *uuid.UUID        `json:"task_run_id"`
	ChildFlowRunID               *uuid.UUID        `json:"child_flow_run_id"`
	ScheduledTime                *openapi.Time     `json:"scheduled_time"`
	CacheKey                     *string           `json:"cache_key"`
	CacheExpiration              *openapi.Time     `json:"cache_expiration"`
	Deferred                     *bool             `json:"deferred"`
	UntrackableResult            bool              `json:"untrackable_result"`
	PauseTimeout                 *openapi.Time     `json:"pause_timeout"`
	PauseReschedule              bool              `json:"pause_reschedule"`
	PauseKey                     *string           `json:"pause_key"`
	RunInputKeyset               map[string]string `json:"run_input_keyset"`
	RefreshCache                 *bool             `json:"refresh_cache"`
	Retriable                    *bool             `json:"retriable"`
	TransitionID                 *uuid.UUID        `json:"transition_id"`
	TaskParametersID             *uuid.UUID        `json:"task_parameters_id"`
	Traceparent                  *string           `json:"traceparent"`
	DeploymentConcurrencyLeaseID *uuid.UUID        `json:"deployment_concurrency_lease_id"`
}

// stateJSON is Prefect's State as served.
type stateJSON struct {
	ID           uuid.UUID        `json:"id"`
	Type         string           `json:"type"`
	Name         string           `json:"name"`
	Timestamp    openapi.Time     `json:"timestamp"`
	Message      *string          `json:"message"`
	Data         json.RawMessage  `json:"data"`
	StateDetails stateDetailsJSON `json:"state_details"`
}

func optTime(t *time.Time) *openapi.Time {
	if t == nil {
		return nil
	}
	return &openapi.Time{Time: *t}
}

// stateOut renders a state; nil renders as JSON null.
func stateOut(s *orchestration.State) *stateJSON {
	if s == nil {
		return nil
	}
	d := s.StateDetails
	out := &stateJSON{
		ID: s.ID, Type: string(s.Type), Name: s.Name, Timestamp: openapi.Time{Time: s.Timestamp}, Message: s.Message,
		Data: s.Data,
		StateDetails: stateDetailsJSON{
			FlowRunID: d.FlowRunID, TaskRunID: d.TaskRunID, ChildFlowRunID: d.ChildFlowRunID,
			ScheduledTime: optTime(d.ScheduledTime), CacheKey: d.CacheKey, CacheExpiration: optTime(d.CacheExpiration),
			Deferred: d.Deferred, UntrackableResult: d.UntrackableResult,
			PauseTimeout: optTime(d.PauseTimeout), PauseReschedule: d.PauseReschedule, PauseKey: d.PauseKey,
			RunInputKeyset: d.RunInputKeyset, RefreshCache: d.RefreshCache, Retriable: d.Retriable,
			TransitionID: d.TransitionID, TaskParametersID: d.TaskParametersID, Traceparent: d.Traceparent,
			DeploymentConcurrencyLeaseID: d.DeploymentConcurrencyLeaseID,
		},
	}
	if len(out.Data) == 0 {
		out.Data = json.RawMessage("null")
	}
	return out
}

// orchestrationResultJSON is Prefect's OrchestrationResult.
type orchestrationResultJSON struct {
	State   *stateJSON            `json:"state"`
	Status  string                `json:"status"`
	Details orchestration.Details `json:"details"`
}

func resultOut(r orchestration.Result) orchestrationResultJSON {
	if r.Status == "" {
		r.Status = orchestration.Accept
		r.Details.Status = orchestration.Accept
	}
	return orchestrationResultJSON{State: stateOut(r.State), Status: string(r.Status), Details: r.Details}
}

// setStateAnswer answers set_state and resume: 201 when a new state was
// written for this request, else 200, as Prefect's routes.
type setStateAnswer struct {
	status int
	body   orchestrationResultJSON
}

func (a setStateAnswer) write(w http.ResponseWriter) error {
	writeJSON(w, a.status, a.body)
	return nil
}

func (a setStateAnswer) VisitSetFlowRunStateResponse(w http.ResponseWriter) error { return a.write(w) }
func (a setStateAnswer) VisitSetTaskRunStateResponse(w http.ResponseWriter) error { return a.write(w) }
func (a setStateAnswer) VisitResumeFlowRunResponse(w http.ResponseWriter) error   { return a.write(w) }

// objectNotFound is Prefect's ObjectNotFoundError handler: 404 with an
// exception_message rather than a detail.
type objectNotFound struct{ msg string }

func (o objectNotFound) write(w http.ResponseWriter) error {
	writeJSON(w, http.StatusNotFound, map[string]string{"exception_message": o.msg})
	return nil
}

func (o objectNotFound) VisitSetFlowRunStateResponse(w http.ResponseWriter) error { return o.write(w) }
func (o objectNotFound) VisitSetTaskRunStateResponse(w http.ResponseWriter) error { return o.write(w) }
func (o objectNotFound) VisitUpdateFlowRunLabelsResponse(w http.ResponseWriter) error {
	return o.write(w)
}
func (o objectNotFound) VisitReadFlowRunGraphV1Response(w http.ResponseWriter) error {
	return o.write(w)
}
func (o objectNotFound) VisitReadFlowRunGraphV2Response(w http.ResponseWriter) error {
	return o.write(w)
}

// afterTransition carries out what a committed transition asked for: the
// prefect.flow-run.<State> events go to the broker. A failure here cannot
// undo the committed state, so it is logged, as Prefect's event client does.
func (h *handlers) afterTransition(ctx context.Context, eff store.Effects) {
	if len(eff.Events) == 0 {
		return
	}
	// The request may be finishing; the events must still go out.
	ctx = context.WithoutCancel(ctx)
	if err := h.publishEvents(ctx, eff.Events); err != nil {
		h.log.ErrorContext(ctx, "publishing state change events failed", "error", err)
	}
}

func bodyState(n nullable.Nullable[api.StateCreate]) (orchestration.State, error) {
	s := present(n)
	if s == nil {
		return orchestration.State{}, errUnprocessable("state is required")
	}
	return stateIn(*s)
}

func (h *handlers) SetFlowRunState(ctx context.Context, req api.SetFlowRunStateRequestObject) (api.SetFlowRunStateResponseObject, error) {
	start := time.Now()
	if req.Body == nil {
		return nil, errUnprocessable("state is required")
	}
	st, err := bodyState(req.Body.State)
	if err != nil {
		return nil, err
	}
	force := orDefault(present(req.Body.Force), false)
	res, err := h.store.SetFlowRunState(ctx, req.Id, st, orchestrationOptions(ctx, force))
	if errors.Is(err, store.ErrNotFound) {
		return objectNotFound{fmt.Sprintf("Flow run with id %s not found", req.Id)}, nil
	}
	if err != nil {
		return nil, err
	}
	h.afterTransition(ctx, res.Effects)
	return setStateAnswer{orchestration.StatusCode(res.Result, start), resultOut(res.Result)}, nil
}

func (h *handlers) SetTaskRunState(ctx context.Context, req api.SetTaskRunStateRequestObject) (api.SetTaskRunStateResponseObject, error) {
	start := time.Now()
	if req.Body == nil {
		return nil, errUnprocessable("state is required")
	}
	st, err := bodyState(req.Body.State)
	if err != nil {
		return nil, err
	}
	force := orDefault(present(req.Body.Force), false)
	res, err := h.store.SetTaskRunState(ctx, req.Id, st, orchestrationOptions(ctx, force))
	if errors.Is(err, store.ErrNotFound) {
		return objectNotFound{fmt.Sprintf("Task run with id %s not found", req.Id)}, nil
	}
	if err != nil {
		return nil, err
	}
	h.afterTransition(ctx, res.Effects)
	return setStateAnswer{orchestration.StatusCode(res.Result, start), resultOut(res.Result)}, nil
}

// bulkSetStateAnswer is FlowRunBulkSetStateResponse.
type bulkSetStateAnswer struct {
	Results []bulkSetStateResult `json:"results"`
}

type bulkSetStateResult struct {
	FlowRunID uuid.UUID             `json:"flow_run_id"`
	State     *stateJSON            `json:"state"`
	Status    string                `json:"status"`
	Details   orchestration.Details `json:"details"`
}

func (a bulkSetStateAnswer) VisitBulkSetFlowRunStateResponse(w http.ResponseWriter) error {
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (h *handlers) BulkSetFlowRunState(ctx context.Context, req api.BulkSetFlowRunStateRequestObject) (api.BulkSetFlowRunStateResponseObject, error) {
	if req.Body == nil {
		return nil, errUnprocessable("state is required")
	}
	b := req.Body
	st, err := bodyState(b.State)
	if err != nil {
		return nil, err
	}
	limit := orDefault(present(b.Limit), bulkOperationLimit)
	if limit < 1 || limit > bulkOperationLimit {
		return nil, errUnprocessable(fmt.Sprintf("limit must be between 1 and %d", bulkOperationLimit))
	}
	force := orDefault(present(b.Force), false)
	runs, err := h.store.ReadFlowRuns(ctx, store.FlowRunQuery{Filter: filter.FlowRunFilterSet{FlowRuns: present(b.FlowRuns)}, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := bulkSetStateAnswer{Results: []bulkSetStateResult{}}
	// One transaction per run, in order, as Prefect: a failing run answers
	// ABORT with the error and the others still go through.
	for _, run := range runs {
		res, err := h.store.SetFlowRunState(ctx, run.ID, st, orchestrationOptions(ctx, force))
		if err != nil {
			reason := err.Error()
			if errors.Is(err, store.ErrNotFound) {
				reason = fmt.Sprintf("Flow run with id %s not found", run.ID)
			}
			out.Results = append(out.Results, bulkSetStateResult{FlowRunID: run.ID, Status: string(orchestration.Abort),
				Details: orchestration.Details{Status: orchestration.Abort, Reason: &reason}})
			continue
		}
		h.afterTransition(ctx, res.Effects)
		r := resultOut(res.Result)
		out.Results = append(out.Results, bulkSetStateResult{FlowRunID: run.ID, State: r.State, Status: r.Status, Details: r.Details})
	}
	return out, nil
}

// notPausedAnswer is resume's answer for a run that is not paused.
func resumeAnswer(status orchestration.SetStateStatus, state *orchestration.State, reason string) setStateAnswer {
	d := orchestration.Details{Status: status, Reason: &reason}
	if status == orchestration.Reject {
		// Prefect answers these rejections with StateAbortDetails.
		d.Status = orchestration.Abort
	}
	return setStateAnswer{http.StatusOK, orchestrationResultJSON{State: stateOut(state), Status: string(status), Details: d}}
}

func (h *handlers) ResumeFlowRun(ctx context.Context, req api.ResumeFlowRunRequestObject) (api.ResumeFlowRunResponseObject, error) {
	start := time.Now()
	run, err := h.store.ReadFlowRun(ctx, req.Id)
	if err != nil {
		return nil, notFoundAs(err, "Flow run not found")
	}
	state := run.State
	if state == nil || state.Type != orchestration.Paused {
		return setStateAnswer{http.StatusOK, orchestrationResultJSON{Status: string(orchestration.Abort),
			Details: orchestration.Details{Status: orchestration.Abort, Reason: ptrTo("Cannot resume a flow run that is not paused.")}}}, nil
	}
	var runInput map[string]any
	if req.Body != nil {
		if p := present(req.Body.RunInput); p != nil {
			runInput = *p
		}
	}
	keyset := state.StateDetails.RunInputKeyset
	if len(keyset) > 0 {
		if runInput == nil {
			runInput = map[string]any{}
		}
		schemaRow, err := h.store.ReadFlowRunInput(ctx, run.ID, keyset["schema"])
		if errors.Is(err, store.ErrNotFound) {
			return resumeAnswer(orchestration.Reject, state, "Run input schema not found."), nil
		}
		if err != nil {
			return nil, err
		}
		if reason := validateRunInput(schemaRow.Value, runInput); reason != "" {
			return resumeAnswer(orchestration.Reject, state, reason), nil
		}
	}
	proposed := orchestration.State{Type: orchestration.Running}
	if state.StateDetails.PauseReschedule {
		now := time.Now().UTC()
		proposed = orchestration.State{Type: orchestration.Scheduled, Name: "Resuming", StateDetails: orchestration.StateDetails{ScheduledTime: &now}}
	}
	var input *store.FlowRunInput
	if len(keyset) > 0 && len(runInput) > 0 {
		value, err := json.Marshal(runInput)
		if err != nil {
			return nil, errUnprocessable(fmt.Sprintf("run_input: %v", err))
		}
		input = &store.FlowRunInput{FlowRunID: run.ID, Key: keyset["response"], Value: string(value)}
	}
	res, err := h.store.ResumeFlowRun(ctx, run.ID, proposed, orchestrationOptions(ctx, false), input)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNotFound("Flow run not found")
	}
	if err != nil {
		return nil, err
	}
	h.afterTransition(ctx, res.Effects)
	return setStateAnswer{orchestration.StatusCode(res.Result, start), resultOut(res.Result)}, nil
}

// validateRunInput checks resume input against the JSON schema the paused
// flow stored; the answer is Prefect's rejection reason, "" when valid.
func validateRunInput(schemaJSON string, input map[string]any) string {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schemaJSON))
	if err != nil {
		return "Run input schema is not valid JSON."
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("run-input-schema.json", doc); err != nil {
		return "Run input schema is not valid JSON."
	}
	sch, err := c.Compile("run-input-schema.json")
	if err != nil {
		return fmt.Sprintf("Invalid schema: %v", err)
	}
	// Validate the input as JSON decodes it, so numbers are the validator's.
	raw, err := json.Marshal(input)
	if err != nil {
		return fmt.Sprintf("Reason: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(string(raw)))
	if err != nil {
		return fmt.Sprintf("Reason: %v", err)
	}
	if err := sch.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) && len(ve.Causes) > 0 {
			return fmt.Sprintf("Reason: %v", ve.Causes[0])
		}
		return fmt.Sprintf("Reason: %v", err)
	}
	return ""
}

func ptrTo[T any](v T) *T { return &v }
