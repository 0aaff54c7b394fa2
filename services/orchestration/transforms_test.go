package orchestration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestTransformsDoNothingWithoutANewState(t *testing.T) {
	run := newFlowRun()
	run.EmpiricalPolicy.Resuming = true
	before := *run
	ini := st(Scheduled, scheduledAt(t0.Add(time.Hour)))
	res := ok(t)(runFlow(t, newFakeEnv(), run, ini, stp(Running), Options{}, append([]*Rule{WaitForScheduledTime}, GlobalFlowPolicy.Rules...)...))
	expect(t, res, Wait, Scheduled, false)
	if run.StateType != before.StateType || run.RunCount != 0 || run.StartTime != nil || run.ExpectedStartTime != nil ||
		!run.EmpiricalPolicy.Resuming || run.StateID != nil {
		t.Errorf("run changed: %+v", run)
	}
}

func TestRunStateColumns(t *testing.T) {
	run := newTaskRun()
	res := ok(t)(runTask(t, newFakeEnv(), run, st(Pending), stp(Running, named("Retrying")), Options{}, GlobalTaskPolicy.Rules...))
	if run.StateType != Running || run.StateName != "Retrying" || !run.StateTimestamp.Equal(t0) || *run.StateID != res.NewState.ID {
		t.Errorf("run = %+v", run.RunCore)
	}
}

func TestSetStartAndEndTime(t *testing.T) {
	start := t0.Add(-time.Hour)
	end := t0.Add(-time.Minute)
	tests := []struct {
		name       string
		ini        *State
		to         StateType
		start, end *time.Time
		wantStart  *time.Time
		wantEnd    *time.Time
	}{
		{"first run sets start", st(Pending), Running, nil, nil, &t0, nil},
		{"rerun keeps start", st(Pending), Running, &start, nil, &start, nil},
		{"finishing sets end", st(Running), Completed, &start, nil, &start, &t0},
		{"failing before running sets both", st(Pending), Failed, nil, nil, &t0, &t0},
		{"no initial state, crashed", nil, Crashed, nil, nil, &t0, &t0},
		{"terminal to terminal keeps end", st(Failed), Completed, &start, &end, &start, &end},
		{"leaving a terminal state clears end", st(Failed), Scheduled, &start, &end, &start, nil},
		{"leaving for running clears end", st(Completed), Running, &start, &end, &start, nil},
		{"scheduling touches nothing", st(Scheduled), Pending, nil, nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := newFlowRun()
			run.StartTime, run.EndTime = clonePtr(tt.start), clonePtr(tt.end)
			ok(t)(runFlow(t, newFakeEnv(), run, tt.ini, stp(tt.to), Options{}, SetStartTime, SetEndTime))
			if !timeEq(run.StartTime, tt.wantStart) || !timeEq(run.EndTime, tt.wantEnd) {
				t.Errorf("start %v end %v, want %v %v", run.StartTime, run.EndTime, tt.wantStart, tt.wantEnd)
			}
		})
	}
}

func timeEq(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func TestIncrementRunTime(t *testing.T) {
	run := newFlowRun()
	run.TotalRunTime = time.Second
	ok(t)(runFlow(t, newFakeEnv(), run, st(Running), stp(Completed), Options{}, IncrementRunTime))
	if run.TotalRunTime != time.Minute+time.Second {
		t.Errorf("total run time %v", run.TotalRunTime)
	}
	ok(t)(runFlow(t, newFakeEnv(), run, st(Pending), stp(Running), Options{}, IncrementRunTime))
	if run.TotalRunTime != time.Minute+time.Second {
		t.Errorf("time outside RUNNING counted: %v", run.TotalRunTime)
	}
}

func TestExpectedAndNextScheduledStartTime(t *testing.T) {
	at := t0.Add(time.Hour)
	earlier := t0.Add(-time.Hour)
	tests := []struct {
		name         string
		ini          *State
		pro          *State
		expected     *time.Time
		next         *time.Time
		wantExpected *time.Time
		wantNext     *time.Time
	}{
		{"scheduled first", nil, stp(Scheduled, scheduledAt(at)), nil, nil, &at, &at},
		{"pending first", nil, stp(Pending), nil, nil, &t0, nil},
		{"expected set once", st(Scheduled), stp(Scheduled, scheduledAt(at)), &earlier, &earlier, &earlier, &at},
		{"leaving scheduled clears next", st(Scheduled), stp(Pending), &earlier, &earlier, &earlier, nil},
		{"next kept outside scheduled", st(Pending), stp(Running), &earlier, &earlier, &earlier, &earlier},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := newTaskRun()
			run.ExpectedStartTime, run.NextScheduledStartTime = clonePtr(tt.expected), clonePtr(tt.next)
			ok(t)(runTask(t, newFakeEnv(), run, tt.ini, tt.pro, Options{}, SetExpectedStartTime, SetNextScheduledStartTime))
			if !timeEq(run.ExpectedStartTime, tt.wantExpected) || !timeEq(run.NextScheduledStartTime, tt.wantNext) {
				t.Errorf("expected %v next %v, want %v %v", run.ExpectedStartTime, run.NextScheduledStartTime, tt.wantExpected, tt.wantNext)
			}
		})
	}
}

func TestUpdateStateDetails(t *testing.T) {
	flow := newFlowRun()
	res := ok(t)(runFlow(t, newFakeEnv(), flow, nil, stp(Pending), Options{}, UpdateStateDetails))
	if d := res.NewState.StateDetails; *d.FlowRunID != flow.ID || d.TaskRunID != nil {
		t.Errorf("flow details = %+v", d)
	}
	task := newTaskRun()
	task.FlowRunID = ptr(uuid.New())
	res = ok(t)(runTask(t, newFakeEnv(), task, nil, stp(Pending, func(s *State) { s.StateDetails.FlowRunID = ptr(uuid.New()) }), Options{}, UpdateStateDetails))
	if d := res.NewState.StateDetails; *d.FlowRunID != *task.FlowRunID || *d.TaskRunID != task.ID {
		t.Errorf("task details = %+v", d)
	}
	res = ok(t)(runTask(t, newFakeEnv(), newTaskRun(), nil, stp(Pending, func(s *State) { s.StateDetails.FlowRunID = ptr(uuid.New()) }), Options{}, UpdateStateDetails))
	if res.NewState.StateDetails.FlowRunID != nil {
		t.Error("a task run without a flow run has no flow_run_id")
	}
}

func TestEnsureFlowRunStateTimestampIsUnique(t *testing.T) {
	env := newFakeEnv()
	env.timestamps[t0] = true
	env.timestamps[t0.Add(time.Microsecond)] = true
	run := newFlowRun()
	res := ok(t)(runFlow(t, env, run, st(Pending), stp(Running), Options{}, GlobalFlowPolicy.Rules...))
	want := t0.Add(2 * time.Microsecond)
	if !res.NewState.Timestamp.Equal(want) || !run.StateTimestamp.Equal(want) || !run.StartTime.Equal(want) {
		t.Errorf("timestamp %v, run %v / %v", res.NewState.Timestamp, run.StateTimestamp, run.StartTime)
	}
}

func TestSubflowTransforms(t *testing.T) {
	env := newFakeEnv()
	parent := uuid.New()
	run := newFlowRun()
	run.ParentTaskRunID = &parent
	res := ok(t)(runFlow(t, env, run, st(Pending), stp(Running), Options{}, GlobalFlowPolicy.Rules...))
	if d := res.NewState.StateDetails; *d.TaskRunID != parent || *d.FlowRunID != run.ID {
		t.Errorf("subflow details = %+v", d)
	}
	sets := env.parentSets[parent]
	if len(sets) != 1 {
		t.Fatalf("parent task run states = %d", len(sets))
	}
	s := sets[0]
	if s.ID == res.NewState.ID || s.Type != Running || *s.StateDetails.ChildFlowRunID != run.ID {
		t.Errorf("parent state = %+v", s)
	}
	if res.NewState.StateDetails.ChildFlowRunID != nil {
		t.Error("the subflow's own state must not be modified")
	}
	// no new state, no parent update
	ok(t)(runFlow(t, env, run, st(Running), stp(Pending), Options{}, append([]*Rule{PreventPendingTransitions}, GlobalFlowPolicy.Rules...)...))
	if len(env.parentSets[parent]) != 1 {
		t.Error("parent updated for a nullified transition")
	}
	env.failOn = "SetParentTaskRunState"
	if _, err := runFlow(t, env, run, st(Pending), stp(Running), Options{}, GlobalFlowPolicy.Rules...); !errors.Is(err, env.failErr) {
		t.Errorf("err = %v", err)
	}
}

func TestRunCountsAndResuming(t *testing.T) {
	tests := []struct {
		name         string
		to           StateType
		resuming     bool
		api          string
		wantCount    int
		wantResuming bool
	}{
		{"running counts", Running, false, "", 1, false},
		{"resuming does not count", Running, true, "", 0, false},
		{"old api counts resumes", Running, true, "0.8.3", 1, true},
		{"terminal clears resuming", Completed, true, "", 0, false},
		{"scheduled keeps resuming", Scheduled, true, "", 0, true},
		{"paused keeps resuming", Paused, true, "0.8.4", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := newFlowRun()
			run.EmpiricalPolicy.Resuming = tt.resuming
			ok(t)(runFlow(t, newFakeEnv(), run, st(Pending), stp(tt.to), Options{APIVersion: tt.api}, IncrementFlowRunCount, RemoveResumingIndicator))
			if run.RunCount != tt.wantCount || run.EmpiricalPolicy.Resuming != tt.wantResuming {
				t.Errorf("count %d resuming %v", run.RunCount, run.EmpiricalPolicy.Resuming)
			}
		})
	}
	task := newTaskRun()
	ok(t)(runTask(t, newFakeEnv(), task, st(Pending), stp(Running), Options{}, IncrementTaskRunCount))
	ok(t)(runTask(t, newFakeEnv(), task, st(Running), stp(Completed), Options{}, IncrementTaskRunCount))
	if task.RunCount != 1 {
		t.Errorf("task run count %d", task.RunCount)
	}
}

// TestFlowRunLifeCycle drives a flow run through the core policy the way
// the Python client does, with a retry.
func TestFlowRunLifeCycle(t *testing.T) {
	ctx := context.Background()
	env := newFakeEnv()
	run := newFlowRun()
	run.DeploymentID = ptr(uuid.New())
	run.EmpiricalPolicy.Retries = ptr(1)
	run.EmpiricalPolicy.RetryDelay = ptr(0)
	now := t0
	step := func(ini *State, pro State) (Result, *State) {
		t.Helper()
		now = now.Add(time.Second)
		pro.Timestamp = now
		res := ok(t)(OrchestrateFlowRun(ctx, env, run, ini, pro, Options{Now: now, APIVersion: "0.8.4", ClientVersion: "3.9.1"}))
		if res.NewState != nil {
			return res, res.NewState
		}
		return res, ini
	}

	sched := t0.Add(5 * time.Second)
	res, cur := step(nil, *stp(Scheduled, scheduledAt(sched)))
	expect(t, res, Accept, Scheduled, true)
	if !run.ExpectedStartTime.Equal(sched) || !run.NextScheduledStartTime.Equal(sched) {
		t.Errorf("schedule times %v %v", run.ExpectedStartTime, run.NextScheduledStartTime)
	}
	res, cur = step(cur, *stp(Pending))
	expect(t, res, Accept, Pending, true)
	if run.NextScheduledStartTime != nil || !cur.StateDetails.ScheduledTime.Equal(sched) {
		t.Error("pending must carry the scheduled time")
	}
	// too early: WAIT with the remaining seconds (now is t0+3s)
	res, cur = step(cur, *stp(Running))
	expect(t, res, Wait, Pending, false)
	if res.Details.DelaySeconds != 2 {
		t.Errorf("delay %d", res.Details.DelaySeconds)
	}
	now = now.Add(5 * time.Second)
	res, cur = step(cur, *stp(Running))
	expect(t, res, Accept, Running, true)
	if run.RunCount != 1 || run.StartTime == nil || cur.Name != "Running" {
		t.Errorf("run %+v, state %s", run.RunCore, cur.Name)
	}
	res, cur = step(cur, *stp(Failed))
	expect(t, res, Reject, Scheduled, true)
	if cur.Name != "AwaitingRetry" || run.EmpiricalPolicy.RetryType == nil || *run.EmpiricalPolicy.RetryType != RetryInProcess {
		t.Errorf("retry %s %+v", cur.Name, run.EmpiricalPolicy)
	}
	if run.TotalRunTime != time.Second {
		t.Errorf("total run time %v", run.TotalRunTime)
	}
	res, cur = step(cur, *stp(Running))
	expect(t, res, Accept, Running, true)
	// flows have no RenameReruns: the client names its own states
	if run.RunCount != 2 || cur.Name != "Running" {
		t.Errorf("run count %d name %s", run.RunCount, cur.Name)
	}
	res, cur = step(cur, *stp(Failed))
	expect(t, res, Accept, Failed, true)
	if run.EndTime == nil || !run.EndTime.Equal(cur.Timestamp) || run.EmpiricalPolicy.RetryType != nil {
		t.Errorf("end %v retry type %v", run.EndTime, run.EmpiricalPolicy.RetryType)
	}
	if len(env.changes) != 6 {
		t.Errorf("state change events: %d", len(env.changes))
	}
}

// TestPauseAndResume drives a blocking pause and a suspension through the
// core policy.
func TestPauseAndResume(t *testing.T) {
	ctx := context.Background()
	env := newFakeEnv()
	run := newFlowRun()
	run.RunCount = 1
	pause := *stp(Paused, func(s *State) {
		s.StateDetails.PauseKey = ptr("p1")
		s.StateDetails.PauseTimeout = ptr(t0.Add(time.Hour))
	})
	res := ok(t)(OrchestrateFlowRun(ctx, env, run, st(Running), pause, Options{Now: t0}))
	expect(t, res, Accept, Paused, true)
	// Prefect marks the run resuming only after the global transforms have
	// counted the RUNNING entry, so a blocking resume counts as a run and
	// the flag waits for the next RUNNING or terminal state.
	res = ok(t)(OrchestrateFlowRun(ctx, env, run, res.NewState, *stp(Running), Options{Now: t0.Add(time.Minute)}))
	expect(t, res, Accept, Running, true)
	if run.RunCount != 2 || !run.EmpiricalPolicy.Resuming {
		t.Errorf("run count %d resuming %v", run.RunCount, run.EmpiricalPolicy.Resuming)
	}
	// the same pause does not fire twice
	res = ok(t)(OrchestrateFlowRun(ctx, env, run, res.NewState, pause, Options{Now: t0.Add(2 * time.Minute)}))
	expect(t, res, Reject, Running, false)
	res = ok(t)(OrchestrateFlowRun(ctx, env, run, res.State, *stp(Completed), Options{Now: t0.Add(3 * time.Minute)}))
	expect(t, res, Accept, Completed, true)
	if run.EmpiricalPolicy.Resuming {
		t.Error("resuming must be cleared")
	}

	// a suspension resumes through SCHEDULED; the next RUNNING is the same
	// attempt
	run = newFlowRun()
	run.RunCount = 1
	run.DeploymentID = ptr(uuid.New())
	suspend := *stp(Paused, named("Suspended"), func(s *State) {
		s.StateDetails.PauseKey = ptr("s1")
		s.StateDetails.PauseReschedule = true
	})
	res = ok(t)(OrchestrateFlowRun(ctx, env, run, st(Running), suspend, Options{Now: t0}))
	expect(t, res, Accept, Paused, true)
	res = ok(t)(OrchestrateFlowRun(ctx, env, run, res.NewState, *stp(Scheduled, named("Resuming")), Options{Now: t0.Add(time.Minute)}))
	expect(t, res, Accept, Scheduled, true)
	res = ok(t)(OrchestrateFlowRun(ctx, env, run, res.NewState, *stp(Pending), Options{Now: t0.Add(2 * time.Minute)}))
	expect(t, res, Accept, Pending, true)
	res = ok(t)(OrchestrateFlowRun(ctx, env, run, res.NewState, *stp(Running), Options{Now: t0.Add(3 * time.Minute)}))
	expect(t, res, Accept, Running, true)
	if run.RunCount != 1 || run.EmpiricalPolicy.Resuming || len(run.EmpiricalPolicy.PauseKeys) != 1 {
		t.Errorf("run count %d policy %+v", run.RunCount, run.EmpiricalPolicy)
	}
}
