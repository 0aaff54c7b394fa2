package orchestration

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// recorder builds rules that log their hooks, to check the life cycle.
type recorder struct{ log []string }

func (r *recorder) rule(name string, from, to StateSet, before func(c *Context, f *Firing)) *Rule {
	return &Rule{
		Name: name, From: from, To: to,
		Before: func(c *Context, f *Firing) error {
			r.log = append(r.log, name+".before")
			if before != nil {
				before(c, f)
			}
			return nil
		},
		After:   func(c *Context, f *Firing) error { r.log = append(r.log, name+".after"); return nil },
		Cleanup: func(c *Context, f *Firing) error { r.log = append(r.log, name+".cleanup"); return nil },
	}
}

func TestRuleLifeCycle(t *testing.T) {
	tests := []struct {
		name   string
		rules  func(r *recorder) []*Rule
		want   []string
		status SetStateStatus
		typ    StateType
	}{
		{
			name: "exits in reverse order",
			rules: func(r *recorder) []*Rule {
				return []*Rule{r.rule("a", AllStates, AllStates, nil), r.rule("b", AllStates, AllStates, nil)}
			},
			want:   []string{"a.before", "b.before", "b.after", "a.after"},
			status: Accept, typ: Running,
		},
		{
			name: "rules for other transitions are not compiled",
			rules: func(r *recorder) []*Rule {
				return []*Rule{r.rule("a", StateSet{Scheduled}, AllStates, nil), r.rule("b", AllStates, StateSet{Failed}, nil)}
			},
			want:   nil,
			status: Accept, typ: Running,
		},
		{
			name: "a later rule changing the type fizzles earlier rules",
			rules: func(r *recorder) []*Rule {
				return []*Rule{
					r.rule("a", AllStates, AllStates, nil),
					r.rule("b", AllStates, StateSet{Running}, func(c *Context, f *Firing) {
						f.Reject(NewState(Completed, "", c.Now), "no")
					}),
					r.rule("c", AllStates, AllStates, nil),
				}
			},
			// b rejected into a type outside its To set: invalid on exit;
			// c was compiled for PENDING->RUNNING: invalid on entry.
			want:   []string{"a.before", "b.before", "a.cleanup"},
			status: Reject, typ: Completed,
		},
		{
			name: "a rule rejecting into a type it governs still runs after",
			rules: func(r *recorder) []*Rule {
				return []*Rule{r.rule("a", AllStates, AllStates, func(c *Context, f *Firing) {
					f.Reject(nil, "no")
				})}
			},
			want:   []string{"a.before", "a.after"},
			status: Reject, typ: Pending,
		},
		{
			name: "renaming does not fizzle",
			rules: func(r *recorder) []*Rule {
				return []*Rule{
					r.rule("a", AllStates, AllStates, nil),
					r.rule("b", AllStates, AllStates, func(c *Context, f *Firing) { f.Rename("Other") }),
				}
			},
			want:   []string{"a.before", "b.before", "b.after", "a.after"},
			status: Accept, typ: Running,
		},
		{
			name: "delay nullifies the transition",
			rules: func(r *recorder) []*Rule {
				return []*Rule{
					r.rule("a", AllStates, StateSet{Running}, nil),
					r.rule("b", AllStates, StateSet{Running}, func(c *Context, f *Firing) { f.Delay(3, "later") }),
					r.rule("c", AllStates, StateSet{Running}, nil),
				}
			},
			want:   []string{"a.before", "b.before", "a.cleanup"},
			status: Wait, typ: Pending,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{}
			res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Pending), stp(Running), Options{}, tt.rules(r)...))
			if !slices.Equal(r.log, tt.want) {
				t.Errorf("hooks = %v, want %v", r.log, tt.want)
			}
			if res.Status != tt.status || TypeOf(res.State) != tt.typ {
				t.Errorf("got %s %s, want %s %s", res.Status, TypeOf(res.State), tt.status, tt.typ)
			}
		})
	}
}

func TestBeforeErrorAbortsAndCleansUp(t *testing.T) {
	r := &recorder{}
	boom := errors.New("boom")
	failing := &Rule{Name: "failing", From: AllStates, To: AllStates,
		Before: func(c *Context, f *Firing) error { return boom }}
	run := newFlowRun()
	_, err := runFlow(t, newFakeEnv(), run, st(Pending), stp(Running), Options{},
		r.rule("a", AllStates, AllStates, nil), failing, SetRunStateType)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if !slices.Equal(r.log, []string{"a.before", "a.cleanup"}) {
		t.Errorf("hooks = %v", r.log)
	}
	if run.StateType != NoState {
		t.Errorf("transforms must not record a nullified transition, got %s", run.StateType)
	}
}

func TestRejectWithoutStateWhenRunHasNoState(t *testing.T) {
	rule := &Rule{Name: "r", From: AllStates, To: AllStates,
		Before: func(c *Context, f *Firing) error { f.Reject(nil, "no"); return nil }}
	_, err := runFlow(t, newFakeEnv(), newFlowRun(), nil, stp(Pending), Options{}, rule)
	if !errors.Is(err, errRejectWithoutState) {
		t.Fatalf("err = %v", err)
	}
}

func TestUniversalErrorStopsOrchestration(t *testing.T) {
	env := newFakeEnv()
	env.failOn = "FlowRunStateTimestampExists"
	r := &recorder{}
	_, err := runFlow(t, env, newFlowRun(), st(Pending), stp(Running), Options{},
		r.rule("a", AllStates, AllStates, nil), EnsureFlowRunStateTimestampIsUnique, r.rule("b", AllStates, AllStates, nil))
	if !errors.Is(err, env.failErr) {
		t.Fatalf("err = %v", err)
	}
	// a still exits (as Prefect's exit stack does); b never entered
	if !slices.Equal(r.log, []string{"a.before", "a.after"}) {
		t.Errorf("hooks = %v", r.log)
	}
}

func TestAfterErrorIsReturnedAfterAllExits(t *testing.T) {
	r := &recorder{}
	boom := errors.New("boom")
	failing := &Rule{Name: "failing", From: AllStates, To: AllStates,
		After: func(c *Context, f *Firing) error { return boom }}
	_, err := runFlow(t, newFakeEnv(), newFlowRun(), st(Pending), stp(Running), Options{},
		r.rule("a", AllStates, AllStates, nil), failing)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if !slices.Equal(r.log, []string{"a.before", "a.after"}) {
		t.Errorf("hooks = %v", r.log)
	}
}

func TestOrchestrateDoesNotMutateInputs(t *testing.T) {
	ini := st(Scheduled)
	pro := *stp(Pending)
	pro.StateDetails.ScheduledTime = nil
	run := newFlowRun()
	res := ok(t)(OrchestrateFlowRun(context.Background(), newFakeEnv(), run, ini, pro, Options{Now: t0}))
	if pro.StateDetails.ScheduledTime != nil || pro.StateDetails.FlowRunID != nil {
		t.Error("proposed argument was mutated")
	}
	if res.NewState.StateDetails.ScheduledTime == nil || !res.NewState.StateDetails.ScheduledTime.Equal(*ini.StateDetails.ScheduledTime) {
		t.Error("scheduled time not copied to the new state")
	}
	if run.StateID == nil || *run.StateID != res.NewState.ID {
		t.Error("run must point at the new state")
	}
}

func TestPolicySelection(t *testing.T) {
	ctx := context.Background()
	// RUNNING -> PENDING is aborted by CoreFlowPolicy but forced through
	// by MinimalFlowPolicy.
	res := ok(t)(OrchestrateFlowRun(ctx, newFakeEnv(), newFlowRun(), st(Running), *stp(Pending), Options{Now: t0}))
	expect(t, res, Abort, Running, false)
	res = ok(t)(OrchestrateFlowRun(ctx, newFakeEnv(), newFlowRun(), st(Running), *stp(Pending), Options{Now: t0, Force: true}))
	expect(t, res, Accept, Pending, true)

	// A custom policy is used when not forced.
	res = ok(t)(OrchestrateFlowRun(ctx, newFakeEnv(), newFlowRun(), st(Running), *stp(Pending), Options{Now: t0, Policy: &MarkLateRunsPolicy}))
	expect(t, res, Accept, Pending, true)

	// Task runs: a deferred state uses BackgroundTaskPolicy even when
	// forced, whose PreventPendingTransitions aborts RUNNING -> PENDING.
	deferred := *stp(Pending, func(s *State) { s.StateDetails.Deferred = ptr(true) })
	res = ok(t)(OrchestrateTaskRun(ctx, newFakeEnv(), newTaskRun(), st(Running), deferred, Options{Now: t0, Force: true}))
	expect(t, res, Abort, Running, false)
	res = ok(t)(OrchestrateTaskRun(ctx, newFakeEnv(), newTaskRun(), st(Completed, withData(`{"type":"reference"}`)), *stp(Running), Options{Now: t0, Force: true}))
	expect(t, res, Accept, Running, true)
	res = ok(t)(OrchestrateTaskRun(ctx, newFakeEnv(), newTaskRun(), st(Completed, withData(`{"type":"reference"}`)), *stp(Running), Options{Now: t0}))
	expect(t, res, Reject, Completed, false)
	res = ok(t)(OrchestrateTaskRun(ctx, newFakeEnv(), newTaskRun(), st(Completed, withData(`{"type":"reference"}`)), *stp(Running), Options{Now: t0, Policy: &MinimalTaskPolicy}))
	expect(t, res, Accept, Running, true)
}

func TestStatusCode(t *testing.T) {
	ctx := context.Background()
	start := t0
	res := ok(t)(OrchestrateFlowRun(ctx, newFakeEnv(), newFlowRun(), st(Pending), *stp(Running), Options{Now: start}))
	if got := StatusCode(res, start); got != http.StatusCreated {
		t.Errorf("accepted: %d", got)
	}
	res = ok(t)(OrchestrateFlowRun(ctx, newFakeEnv(), newFlowRun(), st(Running), *stp(Pending), Options{Now: start}))
	if got := StatusCode(res, start); got != http.StatusOK {
		t.Errorf("aborted: %d", got)
	}
	// a rejection that answers with a new state (AwaitingRetry) is a 201
	run := newFlowRun()
	run.RunCount = 1
	run.EmpiricalPolicy.Retries = ptr(1)
	res = ok(t)(OrchestrateFlowRun(ctx, newFakeEnv(), run, st(Running), *stp(Failed), Options{Now: start}))
	if res.Status != Reject || StatusCode(res, start) != http.StatusCreated {
		t.Errorf("retry: %s %d", res.Status, StatusCode(res, start))
	}
	if StatusCode(Result{}, start) != http.StatusOK {
		t.Error("no state must be 200")
	}
}

func TestDetailsJSON(t *testing.T) {
	reason := "why"
	tests := []struct {
		d    Details
		want string
	}{
		{Details{Status: Accept}, `{"type":"accept_details"}`},
		{Details{}, `{"type":"accept_details"}`},
		{Details{Status: Reject, Reason: &reason}, `{"type":"reject_details","reason":"why"}`},
		{Details{Status: Abort}, `{"type":"abort_details","reason":null}`},
		{Details{Status: Wait, DelaySeconds: 5, Reason: &reason}, `{"type":"wait_details","delay_seconds":5,"reason":"why"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.d)
		if err != nil || string(b) != tt.want {
			t.Errorf("%+v: %s %v, want %s", tt.d, b, err, tt.want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"0.8.4", "0.8.4", 0},
		{"0.8.3", "0.8.4", -1},
		{"0.8.10", "0.8.4", 1},
		{"0.9", "0.8.4", 1},
		{"3.4.11", "3.4.11", 0},
		{"3.9.1", "3.4.11", 1},
		{"3.4.10", "3.4.11", -1},
		{"3.4.11rc1", "3.4.11", -1},
		{"3.4.11.dev2", "3.4.11", -1},
		{"3.4.11.post1", "3.4.11", 1},
		{"3.4.11+abc", "3.4.11", 1},
		{"v3.5", "3.4.11", 1},
		{"garbage", "3.4.11", -1},
		{"3.4.11", "garbage", 1},
		{"x", "y", 0},
	}
	for _, tt := range tests {
		got := compareVersions(tt.a, tt.b)
		if (got > 0) != (tt.want > 0) || (got < 0) != (tt.want < 0) {
			t.Errorf("compare(%q, %q) = %d, want sign %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestNormalizeState(t *testing.T) {
	s := &State{Type: Scheduled, Timestamp: t0.Add(123 * time.Nanosecond)}
	NormalizeState(s, t0)
	if s.ID == uuid.Nil || s.Name != "Scheduled" || !s.Timestamp.Equal(t0) ||
		s.StateDetails.ScheduledTime == nil || !s.StateDetails.ScheduledTime.Equal(t0) {
		t.Errorf("normalized = %+v", s)
	}
	if s.ID.Version() != 7 {
		t.Errorf("state ids are uuid7, got v%d", s.ID.Version())
	}
	named := &State{Type: Pending, Name: "Submitting"}
	NormalizeState(named, t0)
	if named.Name != "Submitting" || !named.Timestamp.Equal(t0) || named.StateDetails.ScheduledTime != nil {
		t.Errorf("normalized = %+v", named)
	}
	for _, typ := range StateTypes {
		if !typ.Valid() || strings.ToUpper(typ.DefaultName()) != string(typ) {
			t.Errorf("%s: default name %q", typ, typ.DefaultName())
		}
	}
	if NoState.Valid() || NoState.DefaultName() != "" {
		t.Error("NoState is not a state")
	}
}

func TestStateCloneIsDeep(t *testing.T) {
	s := st(Paused, withData(`{"a":1}`), func(s *State) {
		s.Message = ptr("m")
		s.StateDetails.RunInputKeyset = map[string]string{"k": "v"}
		s.StateDetails.CacheKey = ptr("key")
		s.StateDetails.PauseTimeout = ptr(t0.Add(time.Hour))
	})
	c := s.Clone()
	c.Data[2] = 'b'
	*c.Message = "x"
	c.StateDetails.RunInputKeyset["k"] = "w"
	*c.StateDetails.CacheKey = "other"
	*c.StateDetails.PauseTimeout = t0
	if s.StateDetails.PauseTimeout.Equal(t0) || string(s.Data) != `{"a":1}` || *s.Message != "m" || s.StateDetails.RunInputKeyset["k"] != "v" || *s.StateDetails.CacheKey != "key" {
		t.Errorf("clone shares memory with the original: %+v", s)
	}
	if (*State)(nil).Clone() != nil {
		t.Error("nil clone")
	}
	f := s.FreshCopy(t0)
	if f.ID == s.ID || !f.Timestamp.Equal(t0) || f.Name != s.Name {
		t.Errorf("fresh copy = %+v", f)
	}
}

func TestHasPersistedResult(t *testing.T) {
	tests := map[string]bool{
		``:                                     false,
		`null`:                                 false,
		`{}`:                                   false,
		`[1]`:                                  false,
		`"text"`:                               false,
		`{"type":"unpersisted"}`:               false,
		`{"type":"reference","storage_key":1}`: true,
		`{"storage_key":"x"}`:                  true,
		`{"type":5}`:                           true,
	}
	for raw, want := range tests {
		if got := HasPersistedResult(json.RawMessage(raw)); got != want {
			t.Errorf("%s: %v, want %v", raw, got, want)
		}
	}
}

func TestRetryDelayJSON(t *testing.T) {
	tests := []struct {
		in, out string
		want    RetryDelay
	}{
		{`null`, `null`, RetryDelay{}},
		{`5`, `5`, RetryDelay{Seconds: []float64{5}}},
		{`2.5`, `2.5`, RetryDelay{Seconds: []float64{2.5}}},
		{`[1, 2, 3]`, `[1,2,3]`, RetryDelay{Seconds: []float64{1, 2, 3}, IsList: true}},
		{`[]`, `[]`, RetryDelay{Seconds: []float64{}, IsList: true}},
	}
	for _, tt := range tests {
		var d RetryDelay
		if err := json.Unmarshal([]byte(tt.in), &d); err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if d.IsList != tt.want.IsList || !slices.Equal(d.Seconds, tt.want.Seconds) {
			t.Errorf("%s: %+v", tt.in, d)
		}
		b, _ := json.Marshal(d)
		if string(b) != tt.out {
			t.Errorf("%s: marshalled %s", tt.in, b)
		}
	}
	var d RetryDelay
	for _, bad := range []string{`"x"`, `[1,"x"]`, `{}`} {
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("%s: want error", bad)
		}
	}
	var p TaskRunPolicy
	if err := json.Unmarshal([]byte(`{"retries":2,"retry_delay":[1,10],"retry_jitter_factor":null}`), &p); err != nil || *p.Retries != 2 || !p.RetryDelay.IsList {
		t.Errorf("policy = %+v, %v", p, err)
	}
	if b, _ := json.Marshal(RetryDelay{IsList: true}); string(b) != `[]` {
		t.Errorf("nil list marshalled as %s", b)
	}
}

func TestStateSet(t *testing.T) {
	if !AllStates.Has(NoState) || len(AllStates) != 10 {
		t.Error("AllStates must include NoState and the nine types")
	}
	s := AllStates.Without(Pending, NoState)
	if s.Has(Pending) || s.Has(NoState) || !s.Has(Running) || len(s) != 8 {
		t.Errorf("Without = %v", s)
	}
	if TerminalStates.Has(NoState) || !TerminalStates.Has(Crashed) {
		t.Error("terminal set")
	}
}
