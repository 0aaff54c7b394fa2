package orchestration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestCopyScheduledTime(t *testing.T) {
	at := t0.Add(time.Hour)
	own := t0.Add(2 * time.Hour)
	allPairs(t, func(t *testing.T, from, to StateType) {
		pro := stp(to)
		if to == Pending {
			pro.StateDetails.ScheduledTime = nil
		}
		res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), initialOf(from, scheduledAt(at)), pro, Options{}, CopyScheduledTime))
		expect(t, res, Accept, to, true)
		got := res.NewState.StateDetails.ScheduledTime
		if from == Scheduled && to == Pending {
			if got == nil || !got.Equal(at) {
				t.Errorf("scheduled time = %v, want %v", got, at)
			}
		} else if to == Pending && got != nil {
			t.Errorf("scheduled time copied outside SCHEDULED -> PENDING: %v", got)
		}
	})
	res := ok(t)(runTask(t, newFakeEnv(), newTaskRun(), st(Scheduled, scheduledAt(at)), stp(Pending, scheduledAt(own)), Options{}, CopyScheduledTime))
	if !res.NewState.StateDetails.ScheduledTime.Equal(own) {
		t.Error("a proposed scheduled time wins")
	}
}

func TestWaitForScheduledTime(t *testing.T) {
	tests := []struct {
		offset time.Duration
		status SetStateStatus
		delay  int
	}{
		{time.Hour, Wait, 3600},
		{10*time.Second + 400*time.Millisecond, Wait, 10},
		{10*time.Second + 500*time.Millisecond, Wait, 10}, // Python rounds .5 to even
		{10*time.Second + 500001*time.Microsecond, Wait, 11},
		{600 * time.Millisecond, Wait, 1},
		{400 * time.Millisecond, Accept, 0},
		{0, Accept, 0},
		{-5 * time.Second, Accept, 0},
		{-1500 * time.Millisecond, Accept, 0},
	}
	for _, from := range []StateType{Scheduled, Pending} {
		for _, tt := range tests {
			t.Run(string(from)+" "+tt.offset.String(), func(t *testing.T) {
				for _, kind := range []string{"flow", "task"} {
					ini := st(from, scheduledAt(t0.Add(tt.offset)))
					var res Result
					if kind == "flow" {
						res = ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), ini, stp(Running), Options{}, WaitForScheduledTime))
					} else {
						res = ok(t)(runTask(t, newFakeEnv(), newTaskRun(), ini, stp(Running), Options{}, WaitForScheduledTime))
					}
					if res.Status != tt.status || res.Details.DelaySeconds != tt.delay {
						t.Errorf("%s: got %s %d, want %s %d", kind, res.Status, res.Details.DelaySeconds, tt.status, tt.delay)
					}
					if tt.status == Wait {
						expect(t, res, Wait, from, false)
						if reasonOf(res) != "Scheduled time is in the future" {
							t.Errorf("reason %q", reasonOf(res))
						}
					}
				}
			})
		}
	}
	// no scheduled time, or not governed
	res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Pending), stp(Running), Options{}, WaitForScheduledTime))
	expect(t, res, Accept, Running, true)
	res = ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Scheduled, scheduledAt(t0.Add(time.Hour))), stp(Completed), Options{}, WaitForScheduledTime))
	expect(t, res, Accept, Completed, true)
	if waitSeconds(-1500*time.Millisecond) != -2 || waitSeconds(-1400*time.Millisecond) != -1 {
		t.Error("floor for negative delays")
	}
}

func TestRenameReruns(t *testing.T) {
	tests := []struct {
		ini      *State
		runCount int
		want     string
	}{
		{st(Pending), 0, "Running"},
		{st(Pending), 1, "Rerunning"},
		{st(Scheduled, named("AwaitingRetry")), 1, "Retrying"},
		{st(Scheduled, named("AwaitingRetry")), 0, "Running"},
		{nil, 3, "Running"},
	}
	for _, tt := range tests {
		run := newTaskRun()
		run.RunCount = tt.runCount
		res := ok(t)(runTask(t, newFakeEnv(), run, tt.ini, stp(Running), Options{}, RenameReruns))
		if res.NewState.Name != tt.want {
			t.Errorf("%v run_count=%d: name %q, want %q", TypeOf(tt.ini), tt.runCount, res.NewState.Name, tt.want)
		}
	}
}

// cacheFixture stores a completed state under key in env's cache.
func cacheFixture(env *fakeEnv, key string, exp *time.Time) *State {
	s := st(Completed, withData(`{"type":"reference","storage_key":"abc"}`), func(s *State) { s.StateDetails.CacheKey = &key })
	env.states[s.ID] = s
	env.cache = append(env.cache, cacheEntry{key, exp, s.ID})
	return s
}

func TestCacheRetrieval(t *testing.T) {
	keyed := func(k string) func(*State) { return func(s *State) { s.StateDetails.CacheKey = &k } }
	t.Run("hit", func(t *testing.T) {
		env := newFakeEnv()
		cached := cacheFixture(env, "k", nil)
		res := ok(t)(runTask(t, env, newTaskRun(), st(Pending), stp(Running, keyed("k")), Options{}, CacheRetrieval))
		expect(t, res, Reject, Completed, true)
		s := res.NewState
		if s.Name != "Cached" || s.ID == cached.ID || !s.Timestamp.Equal(t0) || string(s.Data) != string(cached.Data) {
			t.Errorf("cached copy = %+v", s)
		}
		if reasonOf(res) != "Retrieved state from cache" {
			t.Errorf("reason %q", reasonOf(res))
		}
		if cached.Name != "Completed" {
			t.Error("the cached state must not be modified")
		}
	})
	exp := t0.Add(time.Minute)
	expired := t0.Add(-time.Minute)
	tests := []struct {
		name  string
		setup func(env *fakeEnv)
		pro   *State
		want  SetStateStatus
	}{
		{"unexpired", func(env *fakeEnv) { cacheFixture(env, "k", &exp) }, stp(Running, keyed("k")), Reject},
		{"expired", func(env *fakeEnv) { cacheFixture(env, "k", &expired) }, stp(Running, keyed("k")), Accept},
		{"other key", func(env *fakeEnv) { cacheFixture(env, "other", nil) }, stp(Running, keyed("k")), Accept},
		{"no key", func(env *fakeEnv) { cacheFixture(env, "k", nil) }, stp(Running), Accept},
		{"empty key", func(env *fakeEnv) { cacheFixture(env, "", nil) }, stp(Running, keyed("")), Accept},
		{"refresh", func(env *fakeEnv) { cacheFixture(env, "k", nil) }, stp(Running, keyed("k"), func(s *State) { s.StateDetails.RefreshCache = ptr(true) }), Accept},
		{"refresh false", func(env *fakeEnv) { cacheFixture(env, "k", nil) }, stp(Running, keyed("k"), func(s *State) { s.StateDetails.RefreshCache = ptr(false) }), Reject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newFakeEnv()
			tt.setup(env)
			res := ok(t)(runTask(t, env, newTaskRun(), st(Pending), tt.pro, Options{}, CacheRetrieval))
			if res.Status != tt.want {
				t.Errorf("status %s, want %s", res.Status, tt.want)
			}
		})
	}
	t.Run("env error aborts", func(t *testing.T) {
		env := newFakeEnv()
		env.failOn = "ReadCachedState"
		_, err := runTask(t, env, newTaskRun(), st(Pending), stp(Running, keyed("k")), Options{}, CacheRetrieval)
		if !errors.Is(err, env.failErr) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestCacheInsertion(t *testing.T) {
	exp := t0.Add(time.Hour)
	env := newFakeEnv()
	pro := stp(Completed, func(s *State) { s.StateDetails.CacheKey = ptr("k"); s.StateDetails.CacheExpiration = &exp })
	res := ok(t)(runTask(t, env, newTaskRun(), st(Running), pro, Options{}, CacheInsertion))
	expect(t, res, Accept, Completed, true)
	if len(env.cache) != 1 || env.cache[0].key != "k" || env.cache[0].stateID != res.NewState.ID || !env.cache[0].expiration.Equal(exp) {
		t.Errorf("cache = %+v", env.cache)
	}

	// no key: nothing cached
	env = newFakeEnv()
	ok(t)(runTask(t, env, newTaskRun(), st(Running), stp(Completed), Options{}, CacheInsertion))
	if len(env.cache) != 0 {
		t.Errorf("cache = %+v", env.cache)
	}

	// too long: rejected with the same state, which is still written
	env = newFakeEnv()
	long := strings.Repeat("é", 11)
	res = ok(t)(runTask(t, env, newTaskRun(), st(Running), stp(Completed, func(s *State) { s.StateDetails.CacheKey = &long }), Options{MaxCacheKeyLength: 10}, CacheInsertion))
	expect(t, res, Reject, Completed, true)
	if reasonOf(res) != "Cache key exceeded maximum allowed length of 10 characters." {
		t.Errorf("reason %q", reasonOf(res))
	}
	// characters, not bytes
	ten := strings.Repeat("é", 10)
	res = ok(t)(runTask(t, newFakeEnv(), newTaskRun(), st(Running), stp(Completed, func(s *State) { s.StateDetails.CacheKey = &ten }), Options{MaxCacheKeyLength: 10}, CacheInsertion))
	expect(t, res, Accept, Completed, true)

	// the cache round trip through the core policy
	env = newFakeEnv()
	ctx := context.Background()
	run := newTaskRun()
	first := ok(t)(OrchestrateTaskRun(ctx, env, run, st(Running), *stp(Completed, func(s *State) { s.StateDetails.CacheKey = ptr("rt") }), Options{Now: t0}))
	env.states[first.NewState.ID] = first.NewState
	res = ok(t)(OrchestrateTaskRun(ctx, env, newTaskRun(), st(Pending), *stp(Running, func(s *State) { s.StateDetails.CacheKey = ptr("rt") }), Options{Now: t0}))
	expect(t, res, Reject, Completed, true)
	if res.NewState.Name != "Cached" {
		t.Errorf("name %q", res.NewState.Name)
	}
	if len(env.cache) != 1 {
		t.Errorf("a cached COMPLETED state is inserted again only with its key: %d", len(env.cache))
	}
}

func TestHandleTaskTerminalStateTransitions(t *testing.T) {
	persisted := withData(`{"type":"reference"}`)
	allPairs(t, func(t *testing.T, from, to StateType) {
		run := newTaskRun()
		run.RunCount = 4
		res := ok(t)(runTask(t, newFakeEnv(), run, initialOf(from), stp(to), Options{}, HandleTaskTerminalStateTransitions))
		switch {
		case !from.IsTerminal():
			expect(t, res, Accept, to, true)
			if run.RunCount != 4 {
				t.Error("run count changed")
			}
		case to == Cancelling || to == Paused || to == Crashed:
			expect(t, res, Abort, from, false)
			if want := "Run is already " + string(from) + "."; reasonOf(res) != want {
				t.Errorf("reason %q", reasonOf(res))
			}
		default:
			expect(t, res, Accept, to, true)
			want := 0
			if to.IsTerminal() {
				want = 4
			}
			if run.RunCount != want {
				t.Errorf("run count = %d, want %d", run.RunCount, want)
			}
		}
	})

	for _, to := range []StateType{Scheduled, Pending, Running, Completed, Failed} {
		res := ok(t)(runTask(t, newFakeEnv(), newTaskRun(), st(Completed, persisted), stp(to), Options{}, HandleTaskTerminalStateTransitions))
		expect(t, res, Reject, Completed, false)
		if reasonOf(res) != "This run is already completed." {
			t.Errorf("reason %q", reasonOf(res))
		}
		res = ok(t)(runTask(t, newFakeEnv(), newTaskRun(), st(Completed, withData(`{"type":"unpersisted"}`)), stp(to), Options{}, HandleTaskTerminalStateTransitions))
		expect(t, res, Accept, to, true)
	}

	t.Run("flow retry renames", func(t *testing.T) {
		env := newFakeEnv()
		fr := env.addFlowRun(2, st(Running))
		run := newTaskRun()
		run.FlowRunID = &fr.ID
		run.FlowRunRunCount = 1
		res := ok(t)(runTask(t, env, run, st(Failed), stp(Running), Options{}, HandleTaskTerminalStateTransitions))
		if res.NewState.Name != "Retrying" {
			t.Errorf("name %q", res.NewState.Name)
		}
		run.FlowRunRunCount = 2
		res = ok(t)(runTask(t, env, run, st(Failed), stp(Running), Options{}, HandleTaskTerminalStateTransitions))
		if res.NewState.Name != "Running" {
			t.Errorf("name %q", res.NewState.Name)
		}
		env.failOn = "ReadFlowRun"
		if _, err := runTask(t, env, run, st(Failed), stp(Running), Options{}, HandleTaskTerminalStateTransitions); !errors.Is(err, env.failErr) {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("run count restored when the transition fizzles", func(t *testing.T) {
		run := newTaskRun()
		run.RunCount = 3
		future := st(Failed, scheduledAt(t0.Add(time.Hour)))
		// FAILED -> SCHEDULED resets run_count, then a later rule aborts.
		abort := &Rule{Name: "abort", From: AllStates, To: AllStates, Before: func(c *Context, f *Firing) error { f.Abort("no"); return nil }}
		res := ok(t)(runTask(t, newFakeEnv(), run, future, stp(Scheduled), Options{}, HandleTaskTerminalStateTransitions, abort))
		expect(t, res, Abort, Failed, false)
		if run.RunCount != 3 {
			t.Errorf("run count = %d", run.RunCount)
		}
	})
}

func TestPreventRunningTasksFromStoppedFlows(t *testing.T) {
	timeout := t0.Add(time.Hour)
	for _, flowState := range append(StateSet{NoState}, StateTypes...) {
		t.Run("flow "+orNone(flowState), func(t *testing.T) {
			env := newFakeEnv()
			fs := initialOf(flowState, func(s *State) {
				s.StateDetails.PauseTimeout = &timeout
				s.StateDetails.PauseReschedule = true
			})
			fr := env.addFlowRun(1, fs)
			run := newTaskRun()
			run.FlowRunID = &fr.ID
			res := ok(t)(runTask(t, env, run, st(Pending), stp(Running), Options{}, PreventRunningTasksFromStoppedFlows))
			switch flowState {
			case Running:
				expect(t, res, Accept, Running, true)
			case Paused:
				expect(t, res, Reject, Paused, true)
				s := res.NewState
				if s.Name != "NotReady" || !s.StateDetails.PauseTimeout.Equal(timeout) || !s.StateDetails.PauseReschedule {
					t.Errorf("paused state = %+v", s)
				}
				if want := "The flow is paused, new tasks can execute after resuming flow run: " + fr.ID.String() + "."; reasonOf(res) != want {
					t.Errorf("reason %q", reasonOf(res))
				}
			default:
				expect(t, res, Abort, Pending, false)
				if reasonOf(res) != "The enclosing flow must be running to begin task execution." {
					t.Errorf("reason %q", reasonOf(res))
				}
			}
		})
	}
	// no flow run, or a flow run that is gone: not governed
	res := ok(t)(runTask(t, newFakeEnv(), newTaskRun(), st(Pending), stp(Running), Options{}, PreventRunningTasksFromStoppedFlows))
	expect(t, res, Accept, Running, true)
	run := newTaskRun()
	run.FlowRunID = ptr(uuid.New())
	res = ok(t)(runTask(t, newFakeEnv(), run, st(Pending), stp(Running), Options{}, PreventRunningTasksFromStoppedFlows))
	expect(t, res, Accept, Running, true)
}

func TestRetryFailedTasks(t *testing.T) {
	list := func(xs ...float64) RetryDelay { return RetryDelay{Seconds: xs, IsList: true} }
	one := func(x float64) RetryDelay { return RetryDelay{Seconds: []float64{x}} }
	tests := []struct {
		name      string
		retries   *int
		delay     RetryDelay
		runCount  int
		retriable *bool
		status    SetStateStatus
		wait      time.Duration
	}{
		{"no retries", nil, one(5), 1, nil, Accept, 0},
		{"retry with delay", ptr(1), one(5), 1, nil, Reject, 5 * time.Second},
		{"fractional delay", ptr(1), one(1.5), 1, nil, Reject, 1500 * time.Millisecond},
		{"no delay", ptr(1), RetryDelay{}, 1, nil, Reject, 0},
		{"exhausted", ptr(1), one(5), 2, nil, Accept, 0},
		{"list first", ptr(3), list(1, 10, 100), 1, nil, Reject, time.Second},
		{"list second", ptr(3), list(1, 10, 100), 2, nil, Reject, 10 * time.Second},
		{"list repeats last", ptr(5), list(1, 10, 100), 5, nil, Reject, 100 * time.Second},
		{"list with run count 0 takes the last", ptr(5), list(1, 10, 100), 0, nil, Reject, 100 * time.Second},
		{"empty list", ptr(1), list(), 1, nil, Reject, 0},
		{"not retriable", ptr(3), one(5), 1, ptr(false), Accept, 0},
		{"retriable", ptr(3), one(5), 1, ptr(true), Reject, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := newTaskRun()
			run.RunCount = tt.runCount
			run.EmpiricalPolicy = TaskRunPolicy{Retries: tt.retries, RetryDelay: tt.delay}
			pro := stp(Failed, func(s *State) { s.Message = ptr("boom"); s.StateDetails.Retriable = tt.retriable })
			res := ok(t)(runTask(t, newFakeEnv(), run, st(Running), pro, Options{}, RetryFailedTasks))
			if res.Status != tt.status {
				t.Fatalf("status %s, want %s", res.Status, tt.status)
			}
			if tt.status == Accept {
				expect(t, res, Accept, Failed, true)
				return
			}
			s := res.NewState
			if s.Type != Scheduled || s.Name != "AwaitingRetry" || !s.StateDetails.ScheduledTime.Equal(t0.Add(tt.wait)) || *s.Message != "boom" {
				t.Errorf("retry state = %+v at %v", s, s.StateDetails.ScheduledTime)
			}
			if reasonOf(res) != "Retrying" {
				t.Errorf("reason %q", reasonOf(res))
			}
		})
	}

	t.Run("jitter stays within bounds", func(t *testing.T) {
		run := newTaskRun()
		run.RunCount = 1
		run.EmpiricalPolicy = TaskRunPolicy{Retries: ptr(1), RetryDelay: one(100), RetryJitterFactor: ptr(0.5)}
		for range 200 {
			res := ok(t)(runTask(t, newFakeEnv(), run, st(Running), stp(Failed), Options{}, RetryFailedTasks))
			d := res.NewState.StateDetails.ScheduledTime.Sub(t0)
			if d <= 0 || d > 150*time.Second {
				t.Fatalf("jittered delay %v outside (0, 150s]", d)
			}
		}
		// zero delay skips jitter
		run.EmpiricalPolicy.RetryDelay = one(0)
		res := ok(t)(runTask(t, newFakeEnv(), run, st(Running), stp(Failed), Options{}, RetryFailedTasks))
		if !res.NewState.StateDetails.ScheduledTime.Equal(t0) {
			t.Error("zero delay")
		}
	})
	if v := clampedPoissonInterval(10, 100); v < 0 || v > 1010 {
		t.Errorf("large clamp: %v", v)
	}
}

func TestUpdateFlowRunTrackerOnTasks(t *testing.T) {
	env := newFakeEnv()
	fr := env.addFlowRun(3, st(Running))
	run := newTaskRun()
	run.FlowRunID = &fr.ID
	ok(t)(runTask(t, env, run, st(Pending), stp(Running), Options{}, UpdateFlowRunTrackerOnTasks))
	if run.FlowRunRunCount != 3 {
		t.Errorf("flow run run count = %d", run.FlowRunRunCount)
	}
	// not written on other transitions
	run.FlowRunRunCount = 0
	ok(t)(runTask(t, env, run, st(Running), stp(Completed), Options{}, UpdateFlowRunTrackerOnTasks))
	if run.FlowRunRunCount != 0 {
		t.Error("tracked outside RUNNING")
	}
	// the flow run vanished
	run.FlowRunID = ptr(uuid.New())
	if _, err := runTask(t, env, run, st(Pending), stp(Running), Options{}, UpdateFlowRunTrackerOnTasks); !errors.Is(err, ErrFlowRunNotFound) {
		t.Errorf("err = %v", err)
	}
	// task runs without a flow run
	ok(t)(runTask(t, env, newTaskRun(), st(Pending), stp(Running), Options{}, UpdateFlowRunTrackerOnTasks))
}

func TestEnclosingFlowRunIsReadOnce(t *testing.T) {
	env := newFakeEnv()
	fr := env.addFlowRun(1, st(Running))
	run := newTaskRun()
	run.FlowRunID = &fr.ID
	res := ok(t)(OrchestrateTaskRun(context.Background(), env, run, st(Pending), *stp(Running), Options{Now: t0}))
	expect(t, res, Accept, Running, true)
	if env.flowReads != 1 {
		t.Errorf("flow run read %d times", env.flowReads)
	}
}

func TestBackgroundTaskPolicy(t *testing.T) {
	ctx := context.Background()
	deferred := func(s *State) { s.StateDetails.Deferred = ptr(true) }
	params := uuid.New()

	env := newFakeEnv()
	run := newTaskRun()
	res := ok(t)(OrchestrateTaskRun(ctx, env, run, nil, *stp(Scheduled, deferred, func(s *State) { s.StateDetails.TaskParametersID = &params }), Options{Now: t0}))
	expect(t, res, Accept, Scheduled, true)
	if len(env.enqueued) != 1 || env.enqueued[0] != run.ID || env.retried[0] {
		t.Errorf("enqueued = %v %v", env.enqueued, env.retried)
	}

	// parameters id follows SCHEDULED -> PENDING -> RUNNING
	res = ok(t)(OrchestrateTaskRun(ctx, env, run, res.NewState, *stp(Pending, deferred), Options{Now: t0}))
	if id := res.NewState.StateDetails.TaskParametersID; id == nil || *id != params {
		t.Errorf("parameters id = %v", id)
	}
	res = ok(t)(OrchestrateTaskRun(ctx, env, run, res.NewState, *stp(Running, deferred), Options{Now: t0}))
	if id := res.NewState.StateDetails.TaskParametersID; id == nil || *id != params {
		t.Errorf("parameters id = %v", id)
	}
	if run.RunCount != 1 {
		t.Errorf("run count %d", run.RunCount)
	}

	// a failure with retries is re-enqueued as a retry
	run.EmpiricalPolicy.Retries = ptr(1)
	res = ok(t)(OrchestrateTaskRun(ctx, env, run, res.NewState, *stp(Failed, deferred), Options{Now: t0}))
	expect(t, res, Reject, Scheduled, true)
	// AwaitingRetry built by the rule is not itself deferred: Prefect only
	// enqueues states whose details say deferred.
	if len(env.enqueued) != 1 {
		t.Errorf("enqueued = %v", env.enqueued)
	}
	retry := *stp(Scheduled, deferred, named("AwaitingRetry"))
	ok(t)(OrchestrateTaskRun(ctx, env, run, st(Failed), retry, Options{Now: t0}))
	if len(env.retried) != 2 || !env.retried[1] {
		t.Errorf("retried = %v", env.retried)
	}
	env.failOn = "EnqueueBackgroundTaskRun"
	if _, err := OrchestrateTaskRun(ctx, env, newTaskRun(), nil, *stp(Scheduled, deferred), Options{Now: t0}); !errors.Is(err, env.failErr) {
		t.Errorf("err = %v", err)
	}
}
