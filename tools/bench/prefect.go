package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// This file holds the Prefect-shaped pieces the workloads share: the events
// websocket the 3.9.1 client writes task runs to, the task-run events it
// sends, and the set_state and flow-run bodies it posts.

// prefectTime formats a timestamp the way the client serializes them.
func prefectTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z")
}

// eventSocket is one client connection to /api/events/in. The 3.9.1 client
// keeps one per process and writes one Event JSON per text frame; the
// server answers nothing per event, so a write that returns is an event the
// server has accepted off the wire.
type eventSocket struct {
	conn *websocket.Conn
}

// eventsInURL turns the API base URL into the websocket URL of /events/in.
func eventsInURL(base string) string {
	u := strings.TrimSuffix(base, "/") + "/events/in"
	if rest, ok := strings.CutPrefix(u, "https://"); ok {
		return "wss://" + rest
	}
	return "ws://" + strings.TrimPrefix(u, "http://")
}

// dialEvents opens the socket and performs the client's handshake: the
// "prefect" subprotocol, then {"type":"auth","token":null} answered with
// {"type":"auth_success"}.
func dialEvents(ctx context.Context, c *Client) (*eventSocket, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(dctx, eventsInURL(c.base), &websocket.DialOptions{
		HTTPClient:   c.http,
		Subprotocols: []string{"prefect"},
		HTTPHeader:   http.Header{"X-PREFECT-API-VERSION": []string{apiVersion}},
	})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial /events/in: status %d: %w", resp.StatusCode, err)
		}
		return nil, fmt.Errorf("dial /events/in: %w", err)
	}
	if err := conn.Write(dctx, websocket.MessageText, []byte(`{"type":"auth","token":null}`)); err != nil {
		conn.CloseNow()
		return nil, fmt.Errorf("/events/in auth: %w", err)
	}
	_, msg, err := conn.Read(dctx)
	if err != nil {
		conn.CloseNow()
		return nil, fmt.Errorf("/events/in auth answer: %w", err)
	}
	var ans struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(msg, &ans); err != nil || ans.Type != "auth_success" {
		conn.CloseNow()
		return nil, fmt.Errorf("/events/in auth answered %q, want auth_success", msg)
	}
	// The server pings; a websocket answers pings only while something
	// reads it, and a server whose pings go unanswered closes the socket.
	// Nothing else arrives after auth_success, so a background reader that
	// handles control frames is all the socket needs.
	conn.CloseRead(context.WithoutCancel(ctx))
	return &eventSocket{conn: conn}, nil
}

// send writes one event per frame, as the client does.
func (s *eventSocket) send(ctx context.Context, events ...[]byte) error {
	for _, e := range events {
		if err := s.conn.Write(ctx, websocket.MessageText, e); err != nil {
			return err
		}
	}
	return nil
}

func (s *eventSocket) close() {
	if s != nil {
		_ = s.conn.Close(websocket.StatusNormalClosure, "")
	}
}

// flowRunRef is what task-run events name as their flow run and flow.
type flowRunRef struct {
	ID, Name, FlowID, FlowName string
}

// taskRunSpec describes one task run whose events a workload sends.
type taskRunSpec struct {
	ID         string
	Name       string
	TaskKey    string
	DynamicKey string
	Tags       []string
	FlowRun    flowRunRef
}

func newTaskRunSpec(fr flowRunRef, taskKey string, index int, tags []string) taskRunSpec {
	dyn := uuid.NewString()
	return taskRunSpec{
		ID:         uuid.Must(uuid.NewV7()).String(),
		Name:       fmt.Sprintf("%s-%s", strings.SplitN(taskKey, "-", 2)[0], dyn[:3]),
		TaskKey:    taskKey,
		DynamicKey: fmt.Sprintf("%s-%d", dyn, index),
		Tags:       tags,
		FlowRun:    fr,
	}
}

// stateName maps a state type to the default name the client gives it.
var stateName = map[string]string{
	"SCHEDULED": "Scheduled", "PENDING": "Pending", "RUNNING": "Running",
	"COMPLETED": "Completed", "FAILED": "Failed", "CANCELLED": "Cancelled",
	"CRASHED": "Crashed", "PAUSED": "Paused", "CANCELLING": "Cancelling",
}

// taskRunEvent builds the event the 3.9.1 task engine emits for a state
// change (prefect/utilities/engine emit_task_run_state_change_event plus the
// flow-run and flow resources emit_event relates from the run context).
// from is "" for the first state. The event id doubles as the state id on
// the server, as in the client.
func taskRunEvent(tr taskRunSpec, from, to string, at, expected time.Time, started *time.Time, runCount int, follows string) (id string, frame []byte, err error) {
	id = uuid.Must(uuid.NewV7()).String()
	var initial any
	var intendedFrom any
	if from != "" {
		intendedFrom = from
		initial = map[string]any{
			"type": from, "name": stateName[from], "message": "", "state_details": map[string]any{},
		}
	}
	details := map[string]any{}
	if to == "COMPLETED" {
		details["untrackable_result"] = true
	}
	taskRun := map[string]any{
		"name":        tr.Name,
		"task_key":    tr.TaskKey,
		"dynamic_key": tr.DynamicKey,
		"empirical_policy": map[string]any{
			"max_retries": 0, "retry_delay_seconds": 0.0, "retries": 0, "retry_delay": 0,
		},
		"tags":                tagsOrEmpty(tr.Tags),
		"labels":              map[string]any{},
		"task_inputs":         map[string]any{"x": []any{}},
		"run_count":           runCount,
		"flow_run_run_count":  runCount,
		"expected_start_time": prefectTime(expected),
		"total_run_time":      0.0,
	}
	if started != nil {
		taskRun["start_time"] = prefectTime(*started)
		if to == "COMPLETED" || to == "FAILED" {
			taskRun["end_time"] = prefectTime(at)
			taskRun["total_run_time"] = at.Sub(*started).Seconds()
		}
	}
	related := make([]map[string]string, 0, len(tr.Tags)+2)
	for _, t := range tr.Tags {
		related = append(related, map[string]string{"prefect.resource.id": "prefect.tag." + t, "prefect.resource.role": "tag"})
	}
	related = append(related,
		map[string]string{
			"prefect.resource.id":   "prefect.flow-run." + tr.FlowRun.ID,
			"prefect.resource.name": tr.FlowRun.Name, "prefect.resource.role": "flow-run",
		},
		map[string]string{
			"prefect.resource.id":   "prefect.flow." + tr.FlowRun.FlowID,
			"prefect.resource.name": tr.FlowRun.FlowName, "prefect.resource.role": "flow",
		})
	var followsV any
	if follows != "" {
		followsV = follows
	}
	ev := map[string]any{
		"occurred": prefectTime(at),
		"event":    "prefect.task-run." + stateName[to],
		"resource": map[string]string{
			"prefect.resource.id":     "prefect.task-run." + tr.ID,
			"prefect.resource.name":   tr.Name,
			"prefect.run-count":       fmt.Sprint(runCount),
			"prefect.state-message":   "",
			"prefect.state-name":      stateName[to],
			"prefect.state-timestamp": at.UTC().Format("2006-01-02T15:04:05.000000+00:00"),
			"prefect.state-type":      to,
			"prefect.orchestration":   "client",
		},
		"related": related,
		"payload": map[string]any{
			"intended":      map[string]any{"from": intendedFrom, "to": to},
			"initial_state": initial,
			"validated_state": map[string]any{
				"type": to, "name": stateName[to], "message": "", "state_details": details, "data": nil,
			},
			"task_run": taskRun,
		},
		"id":      id,
		"follows": followsV,
	}
	frame, err = json.Marshal(ev)
	return id, frame, err
}

func tagsOrEmpty(t []string) []string {
	if t == nil {
		return []string{}
	}
	return t
}

// taskRunLifecycleEvents is what one successful task run sends: Pending,
// Running and Completed, each following the previous one.
func taskRunLifecycleEvents(tr taskRunSpec, now time.Time) ([][]byte, error) {
	expected := now
	started := now.Add(100 * time.Microsecond)
	done := started.Add(time.Millisecond)
	id1, pending, err := taskRunEvent(tr, "", "PENDING", expected, expected, nil, 0, "")
	if err != nil {
		return nil, err
	}
	id2, running, err := taskRunEvent(tr, "PENDING", "RUNNING", started, expected, &started, 1, id1)
	if err != nil {
		return nil, err
	}
	_, completed, err := taskRunEvent(tr, "RUNNING", "COMPLETED", done, expected, &started, 1, id2)
	if err != nil {
		return nil, err
	}
	return [][]byte{pending, running, completed}, nil
}

// setStateBody is the client's set_state request (to_state_create output).
func setStateBody(stateType string) map[string]any {
	return map[string]any{
		"state": map[string]any{
			"type": stateType, "name": stateName[stateType], "message": nil,
			"state_details": map[string]any{}, "data": nil,
		},
		"force": false,
	}
}

// orchestrationResult is the part of a set_state answer workloads check.
type orchestrationResult struct {
	Status string `json:"status"`
	State  struct {
		Type string `json:"type"`
	} `json:"state"`
	Details struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"details"`
}

// setFlowRunState proposes a state that must be accepted as a new state.
func setFlowRunState(ctx context.Context, c *Client, op, runID, stateType string) error {
	var res orchestrationResult
	_, err := c.Do(ctx, Request{
		Op: op, Method: "POST", Path: "/flow_runs/" + runID + "/set_state",
		Body: setStateBody(stateType), Expect: []int{201}, Out: &res,
		Check: func(int) error {
			if res.Status != "ACCEPT" || res.State.Type != stateType {
				return fmt.Errorf("set_state %s answered %s (%s %s) with state %s", stateType, res.Status, res.Details.Type, res.Details.Reason, res.State.Type)
			}
			return nil
		},
	})
	return err
}

// flowRunBody is the part of a flow run workloads read back.
type flowRunBody struct {
	ID                string   `json:"id"`
	Name              string   `json:"name"`
	FlowID            string   `json:"flow_id"`
	Tags              []string `json:"tags"`
	StateType         string   `json:"state_type"`
	ExpectedStartTime *string  `json:"expected_start_time"`
}

// createFlowRun posts the client's FlowRunCreate with an initial state.
// A non-empty idempotencyKey makes a retry return the run a lost answer
// created (200) instead of a second one.
func createFlowRun(ctx context.Context, c *Client, op, flowID, flowName string, tags []string, stateType, idempotencyKey string) (flowRunRef, error) {
	state := map[string]any{
		"type": stateType, "name": stateName[stateType], "message": nil, "state_details": map[string]any{}, "data": nil,
	}
	if stateType == "SCHEDULED" {
		state["state_details"] = map[string]any{"scheduled_time": prefectTime(time.Now())}
	}
	body := map[string]any{
		"flow_id": flowID, "parameters": map[string]any{}, "context": map[string]any{},
		"tags": tagsOrEmpty(tags), "parent_task_run_id": nil, "state": state,
		"empirical_policy": map[string]any{"retries": 0, "retry_delay": 0},
	}
	expect := []int{201}
	if idempotencyKey != "" {
		body["idempotency_key"] = idempotencyKey
		expect = []int{200, 201}
	}
	var fr flowRunBody
	_, err := c.Do(ctx, Request{
		Op: op, Method: "POST", Path: "/flow_runs/", Body: body,
		Expect: expect, Out: &fr,
		Check: func(int) error {
			if fr.ID == "" || fr.FlowID != flowID || fr.StateType != stateType {
				return fmt.Errorf("created flow run %s of flow %s in %s, want flow %s in %s", fr.ID, fr.FlowID, fr.StateType, flowID, stateType)
			}
			return nil
		},
	})
	return flowRunRef{ID: fr.ID, Name: fr.Name, FlowID: flowID, FlowName: flowName}, err
}

// setupAttempts is what the Prefect client allows a request
// (PREFECT_CLIENT_MAX_RETRIES 5, plus the first try).
const setupAttempts = 6

// createFlowRunRetrying is createFlowRun for set-up data (prefills, runs to
// transition): it retries as the Prefect client does after a 503 from a busy
// database or a dropped connection, because set-up is not what is measured,
// and the idempotency key keeps the data exact. retries counts the retries.
func createFlowRunRetrying(ctx context.Context, c *Client, op, flowID, flowName string, tags []string, stateType, idempotencyKey string, retries *atomic.Int64) (flowRunRef, error) {
	var ref flowRunRef
	var err error
	for attempt := range setupAttempts {
		if attempt > 0 {
			retries.Add(1)
			select {
			case <-ctx.Done():
				return ref, ctx.Err()
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		if ref, err = createFlowRun(ctx, c, op, flowID, flowName, tags, stateType, idempotencyKey); err == nil {
			return ref, nil
		}
	}
	return ref, err
}

// createFlow posts a flow by name and returns its id (201 or 200 both fine:
// a rerun against the same database finds it).
func createFlow(ctx context.Context, c *Client, name string) (string, error) {
	var f flowBody
	_, err := c.Do(ctx, Request{
		Op: "create_flow", Method: "POST", Path: "/flows/",
		Body: map[string]any{"name": name}, Expect: []int{200, 201}, Out: &f,
	})
	if err == nil && f.ID == "" {
		err = errors.New("created flow has no id")
	}
	return f.ID, err
}

// countTaskRuns posts /task_runs/count with a filter body.
func countTaskRuns(ctx context.Context, c *Client, filter map[string]any) (int, error) {
	var n int
	_, err := c.Do(ctx, Request{
		Op: "count_task_runs", Method: "POST", Path: "/task_runs/count",
		Body: filter, Expect: []int{200}, Out: &n,
	})
	return n, err
}

// errGiveUp, wrapped in an error from a pollUntil callback, ends the
// polling at once instead of at the deadline.
var errGiveUp = errors.New("gave up")

// pollUntil calls f every interval until it reports done, ctx ends, the
// deadline passes or f gives up; it returns when done was first seen.
func pollUntil(ctx context.Context, deadline time.Duration, f func() (bool, error)) (time.Time, error) {
	end := time.Now().Add(deadline)
	var lastErr error
	for {
		done, err := f()
		if done {
			return time.Now(), nil
		}
		lastErr = err
		if errors.Is(err, errGiveUp) {
			return time.Time{}, err
		}
		if time.Now().After(end) {
			if lastErr != nil {
				return time.Time{}, fmt.Errorf("not done after %s: %w", deadline, lastErr)
			}
			return time.Time{}, fmt.Errorf("not done after %s", deadline)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
