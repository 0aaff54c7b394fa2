package orchestration

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
)

// t0 is "now" in every test; states default to a minute earlier.
var t0 = time.Date(2024, 1, 22, 15, 30, 45, 123456000, time.UTC)

type cacheEntry struct {
	key        string
	expiration *time.Time
	stateID    uuid.UUID
}

type stateChange struct {
	run       uuid.UUID
	initial   *State
	validated *State
}

// fakeEnv is an in-memory Env: a few flow runs with states, a state cache,
// flow run inputs, and records of everything the rules asked it to do.
type fakeEnv struct {
	flowRuns   map[uuid.UUID]*FlowRun
	flowStates map[uuid.UUID]*State
	states     map[uuid.UUID]*State // cached states by id
	cache      []cacheEntry
	timestamps map[time.Time]bool // existing flow run state timestamps
	inputs     map[string]bool
	parentSets map[uuid.UUID][]*State
	changes    []stateChange
	enqueued   []uuid.UUID
	retried    []bool
	flowReads  int
	failOn     string // name of the method that fails
	failErr    error
}

func newFakeEnv() *fakeEnv {
	return &fakeEnv{
		flowRuns:   map[uuid.UUID]*FlowRun{},
		flowStates: map[uuid.UUID]*State{},
		states:     map[uuid.UUID]*State{},
		timestamps: map[time.Time]bool{},
		inputs:     map[string]bool{},
		parentSets: map[uuid.UUID][]*State{},
		failErr:    errors.New("database is down"),
	}
}

func (e *fakeEnv) fail(method string) error {
	if e.failOn == method {
		return e.failErr
	}
	return nil
}

func (e *fakeEnv) addFlowRun(runCount int, state *State) *FlowRun {
	fr := &FlowRun{RunCore: RunCore{ID: uuid.New(), RunCount: runCount}}
	e.flowRuns[fr.ID] = fr
	e.flowStates[fr.ID] = state
	return fr
}

func (e *fakeEnv) ReadFlowRun(_ context.Context, id uuid.UUID) (*FlowRun, *State, error) {
	e.flowReads++
	if err := e.fail("ReadFlowRun"); err != nil {
		return nil, nil, err
	}
	fr, ok := e.flowRuns[id]
	if !ok {
		return nil, nil, nil
	}
	return fr, e.flowStates[id], nil
}

func (e *fakeEnv) ReadCachedState(_ context.Context, key string, now time.Time) (*State, error) {
	if err := e.fail("ReadCachedState"); err != nil {
		return nil, err
	}
	for i := len(e.cache) - 1; i >= 0; i-- {
		c := e.cache[i]
		if c.key == key && (c.expiration == nil || c.expiration.After(now)) {
			return e.states[c.stateID].Clone(), nil
		}
	}
	return nil, nil
}

func (e *fakeEnv) InsertStateCache(_ context.Context, key string, exp *time.Time, id uuid.UUID) error {
	if err := e.fail("InsertStateCache"); err != nil {
		return err
	}
	e.cache = append(e.cache, cacheEntry{key, exp, id})
	return nil
}

func (e *fakeEnv) FlowRunStateTimestampExists(_ context.Context, _ uuid.UUID, ts time.Time) (bool, error) {
	if err := e.fail("FlowRunStateTimestampExists"); err != nil {
		return false, err
	}
	return e.timestamps[ts], nil
}

func (e *fakeEnv) DeleteFlowRunInput(_ context.Context, _ uuid.UUID, key string) error {
	if err := e.fail("DeleteFlowRunInput"); err != nil {
		return err
	}
	delete(e.inputs, key)
	return nil
}

func (e *fakeEnv) SetParentTaskRunState(_ context.Context, id uuid.UUID, s *State) error {
	if err := e.fail("SetParentTaskRunState"); err != nil {
		return err
	}
	e.parentSets[id] = append(e.parentSets[id], s)
	return nil
}

func (e *fakeEnv) FlowRunStateChanged(_ context.Context, run *FlowRun, ini, val *State) error {
	if err := e.fail("FlowRunStateChanged"); err != nil {
		return err
	}
	e.changes = append(e.changes, stateChange{run.ID, ini, val})
	return nil
}

func (e *fakeEnv) EnqueueBackgroundTaskRun(_ context.Context, run *TaskRun, retry bool) error {
	if err := e.fail("EnqueueBackgroundTaskRun"); err != nil {
		return err
	}
	e.enqueued = append(e.enqueued, run.ID)
	e.retried = append(e.retried, retry)
	return nil
}

// fakeLimiter scripts the concurrency answers and records the calls.
type fakeLimiter struct {
	slot       DeploymentSlot
	renewal    LeaseRenewal
	fullCancel bool
	taskSlots  TaskSlots
	err        error

	acquired, released, revoked []string
	releasedLeases              []*uuid.UUID
	taskAcquired, taskReleased  int
}

func (l *fakeLimiter) AcquireDeploymentSlot(context.Context, *FlowRun) (DeploymentSlot, error) {
	l.acquired = append(l.acquired, "deployment")
	return l.slot, l.err
}

func (l *fakeLimiter) ReleaseDeploymentSlot(_ context.Context, _ *FlowRun, lease *uuid.UUID) error {
	l.released = append(l.released, "deployment")
	l.releasedLeases = append(l.releasedLeases, lease)
	return l.err
}

func (l *fakeLimiter) RenewDeploymentLease(context.Context, *FlowRun, uuid.UUID) (LeaseRenewal, error) {
	return l.renewal, l.err
}

func (l *fakeLimiter) RevokeDeploymentLease(_ context.Context, id uuid.UUID) error {
	l.revoked = append(l.revoked, id.String())
	return l.err
}

func (l *fakeLimiter) DeploymentFullWithCancelNew(context.Context, *FlowRun) (bool, error) {
	return l.fullCancel, l.err
}

func (l *fakeLimiter) AcquireTaskSlots(context.Context, *TaskRun) (TaskSlots, error) {
	l.taskAcquired++
	return l.taskSlots, l.err
}

func (l *fakeLimiter) ReleaseTaskSlots(context.Context, *TaskRun) error {
	l.taskReleased++
	return l.err
}

// st builds a state of type t, timestamped a minute before t0, changed by
// the options.
func st(t StateType, opts ...func(*State)) *State {
	s := NewState(t, "", t0.Add(-time.Minute))
	for _, o := range opts {
		o(s)
	}
	return s
}

// stp is st for a proposed state (timestamped t0), or nil for NoState.
func stp(t StateType, opts ...func(*State)) *State {
	if t == NoState {
		return nil
	}
	s := NewState(t, "", t0)
	for _, o := range opts {
		o(s)
	}
	return s
}

func named(n string) func(*State) { return func(s *State) { s.Name = n } }

func withData(raw string) func(*State) {
	return func(s *State) { s.Data = json.RawMessage(raw) }
}

func scheduledAt(at time.Time) func(*State) {
	return func(s *State) { s.StateDetails.ScheduledTime = &at }
}

func initialOf(t StateType, opts ...func(*State)) *State {
	if t == NoState {
		return nil
	}
	return st(t, opts...)
}

// runFlow orchestrates a flow run transition with only the given rules
// (no global transforms), so a rule can be tested on its own.
func runFlow(t *testing.T, env *fakeEnv, run *FlowRun, ini, pro *State, opts Options, rules ...*Rule) (Result, error) {
	t.Helper()
	if opts.Now.IsZero() {
		opts.Now = t0
	}
	c := newContext(context.Background(), env, opts, ini, *pro)
	c.FlowRun, c.Run = run, &run.RunCore
	return c.orchestrate(&Policy{Rules: rules}, &Policy{})
}

// runTask is runFlow for task runs.
func runTask(t *testing.T, env *fakeEnv, run *TaskRun, ini, pro *State, opts Options, rules ...*Rule) (Result, error) {
	t.Helper()
	if opts.Now.IsZero() {
		opts.Now = t0
	}
	c := newContext(context.Background(), env, opts, ini, *pro)
	c.TaskRun, c.Run = run, &run.RunCore
	return c.orchestrate(&Policy{Rules: rules}, &Policy{})
}

func newFlowRun() *FlowRun { return &FlowRun{RunCore: RunCore{ID: uuid.New()}} }
func newTaskRun() *TaskRun { return &TaskRun{RunCore: RunCore{ID: uuid.New()}} }

// ok fails the test on an orchestration error: ok(t)(runFlow(...)).
func ok(t *testing.T) func(Result, error) Result {
	t.Helper()
	return func(res Result, err error) Result {
		t.Helper()
		if err != nil {
			t.Fatalf("orchestrate: %v", err)
		}
		return res
	}
}

// expect checks status, the answered state's type and whether a new state
// is written.
func expect(t *testing.T, res Result, status SetStateStatus, typ StateType, written bool) {
	t.Helper()
	if res.Status != status {
		t.Errorf("status = %s (%v), want %s", res.Status, reasonOf(res), status)
	}
	if got := TypeOf(res.State); got != typ {
		t.Errorf("state type = %q, want %q", got, typ)
	}
	if (res.NewState != nil) != written {
		t.Errorf("new state written = %v, want %v", res.NewState != nil, written)
	}
}

func reasonOf(res Result) string {
	if res.Details.Reason == nil {
		return ""
	}
	return *res.Details.Reason
}
