package orchestration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
)

// allPairs calls fn for every (from, to) pair of AllStates x StateTypes,
// the way Prefect's tests parametrize over ALL_ORCHESTRATION_STATES.
func allPairs(t *testing.T, fn func(t *testing.T, from, to StateType)) {
	for _, from := range AllStates {
		for _, to := range StateTypes {
			t.Run(fmt.Sprintf("%s->%s", orNone(from), to), func(t *testing.T) { fn(t, from, to) })
		}
	}
}

func orNone(s StateType) string {
	if s == NoState {
		return "None"
	}
	return string(s)
}

func TestPreventDuplicateTransitions(t *testing.T) {
	tid := uuid.New()
	withTID := func(id uuid.UUID) func(*State) {
		return func(s *State) { s.StateDetails.TransitionID = &id }
	}
	allPairs(t, func(t *testing.T, from, to StateType) {
		if from == NoState {
			res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), nil, stp(to, withTID(tid)), Options{}, PreventDuplicateTransitions))
			expect(t, res, Accept, to, true)
			return
		}
		ini := st(from, withTID(tid))
		res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), ini, stp(to, withTID(tid)), Options{}, PreventDuplicateTransitions))
		expect(t, res, Reject, from, false)
		if res.State.ID != ini.ID || reasonOf(res) != "This run has already made this state transition." {
			t.Errorf("want the current state back, got %v (%s)", res.State.ID, reasonOf(res))
		}
		res = ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), ini, stp(to, withTID(uuid.New())), Options{}, PreventDuplicateTransitions))
		expect(t, res, Accept, to, true)
		res = ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(from), stp(to, withTID(tid)), Options{}, PreventDuplicateTransitions))
		expect(t, res, Accept, to, true)
	})
}

func TestHandleFlowTerminalStateTransitions(t *testing.T) {
	persisted := withData(`{"type":"reference","storage_key":"k"}`)
	unpersisted := withData(`{"type":"unpersisted"}`)
	deployed := func() *FlowRun { r := newFlowRun(); r.DeploymentID = ptr(uuid.New()); return r }

	allPairs(t, func(t *testing.T, from, to StateType) {
		if !from.IsTerminal() {
			// not governed: everything passes
			res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), initialOf(from), stp(to), Options{}, HandleFlowTerminalStateTransitions))
			expect(t, res, Accept, to, true)
			return
		}
		run := deployed()
		run.EmpiricalPolicy.PauseKeys = []string{"k"}
		run.EmpiricalPolicy.Resuming = true
		res := ok(t)(runFlow(t, newFakeEnv(), run, st(from), stp(to), Options{}, HandleFlowTerminalStateTransitions))
		switch to {
		case Cancelling, Paused, Crashed:
			expect(t, res, Abort, from, false)
			if want := "Run is already in terminal state " + string(from) + "."; reasonOf(res) != want {
				t.Errorf("reason %q", reasonOf(res))
			}
		default:
			expect(t, res, Accept, to, true)
			p := run.EmpiricalPolicy
			if to.IsTerminal() {
				if len(p.PauseKeys) != 1 || !p.Resuming {
					t.Errorf("terminal -> terminal must keep the policy: %+v", p)
				}
			} else {
				if len(p.PauseKeys) != 0 || p.Resuming {
					t.Errorf("leaving a terminal state resets pauses: %+v", p)
				}
				wantRetry := to == Scheduled
				if (p.RetryType != nil && *p.RetryType == RetryReschedule) != wantRetry {
					t.Errorf("retry type = %v", p.RetryType)
				}
			}
		}
	})

	t.Run("completed with persisted result cannot rerun", func(t *testing.T) {
		for _, to := range []StateType{Scheduled, Pending, Running} {
			res := ok(t)(runFlow(t, newFakeEnv(), deployed(), st(Completed, persisted), stp(to), Options{}, HandleFlowTerminalStateTransitions))
			expect(t, res, Reject, Completed, false)
			if reasonOf(res) != "Run is already COMPLETED." {
				t.Errorf("reason %q", reasonOf(res))
			}
			res = ok(t)(runFlow(t, newFakeEnv(), deployed(), st(Completed, unpersisted), stp(to), Options{}, HandleFlowTerminalStateTransitions))
			expect(t, res, Accept, to, true)
		}
		// terminal targets are allowed, except dropping the result
		res := ok(t)(runFlow(t, newFakeEnv(), deployed(), st(Completed, persisted), stp(Failed), Options{}, HandleFlowTerminalStateTransitions))
		expect(t, res, Accept, Failed, true)
		res = ok(t)(runFlow(t, newFakeEnv(), deployed(), st(Completed, persisted), stp(Completed), Options{}, HandleFlowTerminalStateTransitions))
		expect(t, res, Reject, Completed, false)
		if reasonOf(res) != resultLossReason {
			t.Errorf("reason %q", reasonOf(res))
		}
		res = ok(t)(runFlow(t, newFakeEnv(), deployed(), st(Completed, persisted), stp(Completed, unpersisted), Options{}, HandleFlowTerminalStateTransitions))
		expect(t, res, Reject, Completed, false)
		res = ok(t)(runFlow(t, newFakeEnv(), deployed(), st(Completed, persisted), stp(Completed, persisted), Options{}, HandleFlowTerminalStateTransitions))
		expect(t, res, Accept, Completed, true)
	})

	t.Run("rescheduling needs a deployment", func(t *testing.T) {
		for _, from := range TerminalStates {
			res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(from), stp(Scheduled), Options{}, HandleFlowTerminalStateTransitions))
			expect(t, res, Abort, from, false)
			if reasonOf(res) != "Cannot reschedule a run without an associated deployment." {
				t.Errorf("reason %q", reasonOf(res))
			}
		}
	})

	t.Run("old api versions keep pause bookkeeping", func(t *testing.T) {
		run := deployed()
		run.EmpiricalPolicy.PauseKeys = []string{"k"}
		ok(t)(runFlow(t, newFakeEnv(), run, st(Failed), stp(Running), Options{APIVersion: "0.8.3"}, HandleFlowTerminalStateTransitions))
		if len(run.EmpiricalPolicy.PauseKeys) != 1 {
			t.Errorf("policy = %+v", run.EmpiricalPolicy)
		}
	})

	t.Run("policy restored when the transition fizzles", func(t *testing.T) {
		// CANCELLED -> PENDING: HandleFlowTerminalStateTransitions resets
		// the policy, then PreventPendingTransitions aborts.
		run := deployed()
		run.EmpiricalPolicy.PauseKeys = []string{"k"}
		run.EmpiricalPolicy.Resuming = true
		res := ok(t)(runFlow(t, newFakeEnv(), run, st(Cancelled), stp(Pending), Options{}, HandleFlowTerminalStateTransitions, PreventPendingTransitions))
		expect(t, res, Abort, Cancelled, false)
		if !slices.Equal(run.EmpiricalPolicy.PauseKeys, []string{"k"}) || !run.EmpiricalPolicy.Resuming {
			t.Errorf("policy not restored: %+v", run.EmpiricalPolicy)
		}
	})
}

func TestPreventResultDataLoss(t *testing.T) {
	persisted := withData(`{"type":"reference"}`)
	for _, from := range TerminalStates {
		for _, to := range TerminalStates {
			res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(from, persisted), stp(to), Options{}, PreventResultDataLoss))
			if from == Completed && to == Completed {
				expect(t, res, Reject, Completed, false)
			} else {
				expect(t, res, Accept, to, true)
			}
		}
	}
	// forced transitions use it
	res := ok(t)(OrchestrateFlowRun(context.Background(), newFakeEnv(), newFlowRun(), st(Completed, persisted), *stp(Completed), Options{Now: t0, Force: true}))
	expect(t, res, Reject, Completed, false)
	res = ok(t)(OrchestrateFlowRun(context.Background(), newFakeEnv(), newFlowRun(), st(Completed, persisted), *stp(Running), Options{Now: t0, Force: true}))
	expect(t, res, Accept, Running, true)
}

func TestEnforceCancellingToCancelledTransition(t *testing.T) {
	allPairs(t, func(t *testing.T, from, to StateType) {
		res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), initialOf(from), stp(to), Options{}, EnforceCancellingToCancelledTransition))
		if from == Cancelling && to != Cancelled {
			expect(t, res, Reject, Cancelling, false)
			if reasonOf(res) != "Cannot transition flows that are cancelling to a state other than Cancelled." {
				t.Errorf("reason %q", reasonOf(res))
			}
			return
		}
		expect(t, res, Accept, to, true)
	})
}

func TestBypassCancellingFlowRunsWithNoInfra(t *testing.T) {
	tests := []struct {
		name   string
		ini    *State
		pid    *string
		status SetStateStatus
		typ    StateType
		reason string
	}{
		{"scheduled without infra", st(Scheduled), nil, Reject, Cancelled, "Scheduled flow run has no infrastructure to terminate."},
		{"scheduled with empty pid", st(Scheduled), ptr(""), Reject, Cancelled, "Scheduled flow run has no infrastructure to terminate."},
		{"scheduled with infra", st(Scheduled), ptr("pid-1"), Accept, Cancelling, ""},
		{"awaiting retry with infra", st(Scheduled, named("AwaitingRetry")), ptr("pid-1"), Accept, Cancelling, ""},
		{"resuming with infra", st(Scheduled, named("Resuming")), ptr("pid-1"), Reject, Cancelled, "Scheduled flow run has no infrastructure to terminate."},
		{"suspended", st(Paused, named("Suspended"), func(s *State) { s.StateDetails.PauseReschedule = true }), ptr("pid"), Reject, Cancelled, "Suspended flow run has no infrastructure to terminate."},
		{"blocking pause", st(Paused), nil, Accept, Cancelling, ""},
		{"running", st(Running), nil, Accept, Cancelling, ""},
		{"pending", st(Pending), nil, Accept, Cancelling, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := newFlowRun()
			run.InfrastructurePID = tt.pid
			res := ok(t)(runFlow(t, newFakeEnv(), run, tt.ini, stp(Cancelling), Options{}, BypassCancellingFlowRunsWithNoInfra))
			expect(t, res, tt.status, tt.typ, true)
			if reasonOf(res) != tt.reason {
				t.Errorf("reason %q", reasonOf(res))
			}
			if tt.typ == Cancelled && (res.State.Name != "Cancelled" || !res.State.Timestamp.Equal(t0)) {
				t.Errorf("cancelled state = %+v", res.State)
			}
		})
	}
	// other targets are not governed
	res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Scheduled), stp(Cancelled), Options{}, BypassCancellingFlowRunsWithNoInfra))
	expect(t, res, Accept, Cancelled, true)
}

func TestPreventPendingTransitions(t *testing.T) {
	allPairs(t, func(t *testing.T, from, to StateType) {
		res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), initialOf(from), stp(to), Options{}, PreventPendingTransitions))
		blocked := to == Pending && StateSet{Pending, Cancelling, Running, Cancelled}.Has(from)
		if !blocked {
			expect(t, res, Accept, to, true)
			return
		}
		expect(t, res, Abort, from, false)
		if want := "This run is in a " + string(from) + " state and cannot transition to a PENDING state."; reasonOf(res) != want {
			t.Errorf("reason %q", reasonOf(res))
		}
	})

	t.Run("named pending sub-states pass", func(t *testing.T) {
		lease := uuid.New()
		at := t0.Add(-time.Hour)
		ini := st(Pending, scheduledAt(at), func(s *State) { s.StateDetails.DeploymentConcurrencyLeaseID = &lease })
		res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), ini, stp(Pending, named("Submitting")), Options{}, PreventPendingTransitions))
		expect(t, res, Accept, Pending, true)
		d := res.NewState.StateDetails
		if d.ScheduledTime == nil || !d.ScheduledTime.Equal(at) || d.DeploymentConcurrencyLeaseID == nil || *d.DeploymentConcurrencyLeaseID != lease {
			t.Errorf("details not carried: %+v", d)
		}
		// back to the default name, or the same name again: aborted
		res = ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Pending, named("Submitting")), stp(Pending), Options{}, PreventPendingTransitions))
		expect(t, res, Abort, Pending, false)
		res = ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Pending, named("Submitting")), stp(Pending, named("Submitting")), Options{}, PreventPendingTransitions))
		expect(t, res, Abort, Pending, false)
		res = ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Running), stp(Pending, named("Submitting")), Options{}, PreventPendingTransitions))
		expect(t, res, Abort, Running, false)
	})
}

func TestEnsureOnlyScheduledFlowsMarkedLate(t *testing.T) {
	for _, from := range AllStates {
		t.Run(orNone(from), func(t *testing.T) {
			res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), initialOf(from), stp(Scheduled, named("Late")), Options{}, EnsureOnlyScheduledFlowsMarkedLate))
			switch from {
			case NoState, Scheduled:
				expect(t, res, Accept, Scheduled, true)
			default:
				expect(t, res, Reject, from, false)
				if reasonOf(res) != "Only scheduled flows can be marked late." {
					t.Errorf("reason %q", reasonOf(res))
				}
			}
			// an ordinary SCHEDULED proposal is not governed
			res = ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), initialOf(from), stp(Scheduled), Options{}, EnsureOnlyScheduledFlowsMarkedLate))
			expect(t, res, Accept, Scheduled, true)
		})
	}
	res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Scheduled, named("Late")), stp(Scheduled, named("Late")), Options{}, EnsureOnlyScheduledFlowsMarkedLate))
	expect(t, res, Reject, Scheduled, false)
	if reasonOf(res) != "This flow run is already marked late." {
		t.Errorf("reason %q", reasonOf(res))
	}
}

func TestHandlePausingFlows(t *testing.T) {
	pauseKey := func(k string) func(*State) { return func(s *State) { s.StateDetails.PauseKey = &k } }
	reschedule := func(s *State) { s.StateDetails.PauseReschedule = true }

	for _, from := range AllStates {
		t.Run("from "+orNone(from), func(t *testing.T) {
			run := newFlowRun()
			res := ok(t)(runFlow(t, newFakeEnv(), run, initialOf(from), stp(Paused), Options{}, HandlePausingFlows))
			switch from {
			case NoState:
				expect(t, res, Abort, NoState, false)
				if reasonOf(res) != "Cannot pause flows with no state." {
					t.Errorf("reason %q", reasonOf(res))
				}
			case Running:
				expect(t, res, Accept, Paused, true)
				if len(run.EmpiricalPolicy.PauseKeys) != 1 {
					t.Errorf("a generated pause key must be recorded: %v", run.EmpiricalPolicy.PauseKeys)
				}
			default:
				expect(t, res, Reject, from, false)
				if reasonOf(res) != "Cannot pause flows that are not currently running." {
					t.Errorf("reason %q", reasonOf(res))
				}
				if len(run.EmpiricalPolicy.PauseKeys) != 0 {
					t.Error("a rejected pause must not record its key")
				}
			}
		})
	}

	tests := []struct {
		name     string
		run      func(r *FlowRun)
		proposed *State
		status   SetStateStatus
		reason   string
		keys     []string
	}{
		{"key fires once", func(r *FlowRun) { r.EmpiricalPolicy.PauseKeys = []string{"a"} }, stp(Paused, pauseKey("a")), Reject, "This pause has already fired.", []string{"a"}},
		{"new key", func(r *FlowRun) { r.EmpiricalPolicy.PauseKeys = []string{"a"} }, stp(Paused, pauseKey("b")), Accept, "", []string{"a", "b"}},
		{"suspend fires once", func(r *FlowRun) { r.EmpiricalPolicy.PauseKeys = []string{"a"} }, stp(Paused, named("Suspended"), pauseKey("a"), reschedule), Reject, "This suspend has already fired.", []string{"a"}},
		{"suspend subflow", func(r *FlowRun) { r.ParentTaskRunID = ptr(uuid.New()); r.DeploymentID = ptr(uuid.New()) }, stp(Paused, named("Suspended"), pauseKey("a"), reschedule), Abort, "Cannot suspend subflows.", nil},
		{"suspend without deployment", nil, stp(Paused, named("Suspended"), pauseKey("a"), reschedule), Abort, "Cannot suspend flows without a deployment.", nil},
		{"suspend with deployment", func(r *FlowRun) { r.DeploymentID = ptr(uuid.New()) }, stp(Paused, named("Suspended"), pauseKey("a"), reschedule), Accept, "", []string{"a"}},
		{"pause with reschedule without deployment", nil, stp(Paused, pauseKey("a"), reschedule), Abort, "Cannot pause flows without a deployment.", nil},
		{"blocking pause of a subflow", func(r *FlowRun) { r.ParentTaskRunID = ptr(uuid.New()) }, stp(Paused, pauseKey("a")), Accept, "", []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := newFlowRun()
			if tt.run != nil {
				tt.run(run)
			}
			res := ok(t)(runFlow(t, newFakeEnv(), run, st(Running), tt.proposed, Options{}, HandlePausingFlows))
			if res.Status != tt.status || reasonOf(res) != tt.reason {
				t.Errorf("got %s %q, want %s %q", res.Status, reasonOf(res), tt.status, tt.reason)
			}
			if !slices.Equal(run.EmpiricalPolicy.PauseKeys, tt.keys) {
				t.Errorf("pause keys = %v, want %v", run.EmpiricalPolicy.PauseKeys, tt.keys)
			}
		})
	}

	t.Run("stale run input is deleted", func(t *testing.T) {
		env := newFakeEnv()
		env.inputs = map[string]bool{"paused-1-schema": true, "paused-1-response": true, "other": true}
		pro := stp(Paused, pauseKey("paused-1"), func(s *State) {
			s.StateDetails.RunInputKeyset = map[string]string{"schema": "paused-1-schema", "response": "paused-1-response"}
		})
		ok(t)(runFlow(t, env, newFlowRun(), st(Running), pro, Options{}, HandlePausingFlows))
		if len(env.inputs) != 1 || !env.inputs["other"] {
			t.Errorf("inputs = %v", env.inputs)
		}
		env = newFakeEnv()
		env.failOn = "DeleteFlowRunInput"
		if _, err := runFlow(t, env, newFlowRun(), st(Running), pro, Options{}, HandlePausingFlows); err == nil {
			t.Error("want the delete error")
		}
	})
}

func TestHandleResumingPausedFlows(t *testing.T) {
	future, past := t0.Add(time.Hour), t0.Add(-time.Second)
	timeout := func(at time.Time) func(*State) { return func(s *State) { s.StateDetails.PauseTimeout = &at } }
	suspended := func(s *State) { s.Name = "Suspended"; s.StateDetails.PauseReschedule = true }

	for _, to := range StateTypes {
		t.Run("to "+string(to), func(t *testing.T) {
			run := newFlowRun()
			run.DeploymentID = ptr(uuid.New())
			res := ok(t)(runFlow(t, newFakeEnv(), run, st(Paused, timeout(future)), stp(to), Options{}, HandleResumingPausedFlows))
			switch to {
			case Pending, Paused:
				expect(t, res, Reject, Paused, false)
				if want := "This run cannot transition to the StateType." + string(to) + " state from the StateType.PAUSED state."; reasonOf(res) != want {
					t.Errorf("reason %q", reasonOf(res))
				}
				// Prefect's after-hook still fires on a rejection to the
				// current state and marks the run resuming.
				if !run.EmpiricalPolicy.Resuming {
					t.Error("resuming not set")
				}
			default:
				expect(t, res, Accept, to, true)
				if to == Scheduled {
					if run.EmpiricalPolicy.Resuming || run.EmpiricalPolicy.RetryType == nil || *run.EmpiricalPolicy.RetryType != RetryReschedule {
						t.Errorf("a blocking pause left for SCHEDULED is a new attempt: %+v", run.EmpiricalPolicy)
					}
				} else if !run.EmpiricalPolicy.Resuming {
					t.Error("resuming not set")
				}
			}
		})
	}

	t.Run("timed out", func(t *testing.T) {
		run := newFlowRun()
		res := ok(t)(runFlow(t, newFakeEnv(), run, st(Paused, timeout(past)), stp(Running), Options{}, HandleResumingPausedFlows))
		expect(t, res, Reject, Failed, true)
		if reasonOf(res) != "The flow run pause has timed out and can no longer resume." ||
			res.State.Message == nil || *res.State.Message != "The flow was running and never resumed." {
			t.Errorf("got %q / %v", reasonOf(res), res.State.Message)
		}
		// cancelling is allowed after the deadline
		res = ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Paused, timeout(past)), stp(Cancelling), Options{}, HandleResumingPausedFlows))
		expect(t, res, Accept, Cancelling, true)
	})

	t.Run("suspended", func(t *testing.T) {
		run := newFlowRun()
		run.EmpiricalPolicy.PauseKeys = []string{"a"}
		res := ok(t)(runFlow(t, newFakeEnv(), run, st(Paused, suspended), stp(Scheduled, named("Resuming")), Options{}, HandleResumingPausedFlows))
		expect(t, res, Reject, Paused, false)
		if reasonOf(res) != "Cannot reschedule a resuming flow run without a deployment." {
			t.Errorf("reason %q", reasonOf(res))
		}
		run = newFlowRun()
		run.DeploymentID = ptr(uuid.New())
		run.EmpiricalPolicy.PauseKeys = []string{"a"}
		res = ok(t)(runFlow(t, newFakeEnv(), run, st(Paused, suspended), stp(Scheduled, named("Resuming")), Options{}, HandleResumingPausedFlows))
		expect(t, res, Accept, Scheduled, true)
		// a suspended run resumes from the top and must skip fired pauses
		if !run.EmpiricalPolicy.Resuming || !slices.Equal(run.EmpiricalPolicy.PauseKeys, []string{"a"}) {
			t.Errorf("policy = %+v", run.EmpiricalPolicy)
		}
		res = ok(t)(runFlow(t, newFakeEnv(), run, st(Paused, suspended, timeout(past)), stp(Scheduled, named("Resuming")), Options{}, HandleResumingPausedFlows))
		if reasonOf(res) != "The flow run pause has timed out and can no longer resume." {
			t.Errorf("reason %q", reasonOf(res))
		}
		res = ok(t)(runFlow(t, newFakeEnv(), run, st(Paused, suspended, timeout(past)), stp(Running, named("Suspended")), Options{}, HandleResumingPausedFlows))
		if reasonOf(res) != "The flow run suspend has timed out and can no longer resume." ||
			*res.State.Message != "The flow was suspended and never resumed." {
			t.Errorf("reason %q", reasonOf(res))
		}
	})

	t.Run("old api version", func(t *testing.T) {
		run := newFlowRun()
		run.EmpiricalPolicy.PauseKeys = []string{"a"}
		ok(t)(runFlow(t, newFakeEnv(), run, st(Paused), stp(Scheduled), Options{APIVersion: "0.8.3"}, HandleResumingPausedFlows))
		if !run.EmpiricalPolicy.Resuming || len(run.EmpiricalPolicy.PauseKeys) != 1 {
			t.Errorf("policy = %+v", run.EmpiricalPolicy)
		}
	})
}

func TestRetryFailedFlows(t *testing.T) {
	lease := uuid.New()
	tests := []struct {
		name      string
		retries   *int
		delay     *int
		runCount  int
		status    SetStateStatus
		typ       StateType
		retryType *RetryType
	}{
		{"no retries configured", nil, nil, 1, Accept, Failed, nil},
		{"zero retries", ptr(0), nil, 1, Accept, Failed, nil},
		{"first failure retries", ptr(2), ptr(10), 1, Reject, Scheduled, ptr(RetryInProcess)},
		{"last retry", ptr(2), nil, 2, Reject, Scheduled, ptr(RetryInProcess)},
		{"retries exhausted", ptr(2), nil, 3, Accept, Failed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := newFlowRun()
			run.RunCount = tt.runCount
			run.EmpiricalPolicy = FlowRunPolicy{Retries: tt.retries, RetryDelay: tt.delay, PauseKeys: []string{"p"}, Resuming: true, RetryType: ptr(RetryReschedule)}
			ini := st(Running, func(s *State) { s.StateDetails.DeploymentConcurrencyLeaseID = &lease })
			pro := stp(Failed, withData(`{"type":"reference"}`), func(s *State) { s.Message = ptr("boom") })
			res := ok(t)(runFlow(t, newFakeEnv(), run, ini, pro, Options{}, RetryFailedFlows))
			expect(t, res, tt.status, tt.typ, true)
			p := run.EmpiricalPolicy
			if (p.RetryType == nil) != (tt.retryType == nil) || (p.RetryType != nil && *p.RetryType != *tt.retryType) {
				t.Errorf("retry type = %v", p.RetryType)
			}
			if tt.status != Reject {
				return
			}
			s := res.NewState
			delay := 0
			if tt.delay != nil {
				delay = *tt.delay
			}
			if s.Name != "AwaitingRetry" || !s.StateDetails.ScheduledTime.Equal(t0.Add(time.Duration(delay)*time.Second)) ||
				*s.Message != "boom" || string(s.Data) != `{"type":"reference"}` || *s.StateDetails.DeploymentConcurrencyLeaseID != lease {
				t.Errorf("retry state = %+v", s)
			}
			if len(p.PauseKeys) != 0 || p.Resuming {
				t.Errorf("pause bookkeeping not reset: %+v", p)
			}
		})
	}
	t.Run("not governed", func(t *testing.T) {
		run := newFlowRun()
		run.EmpiricalPolicy.Retries = ptr(3)
		res := ok(t)(runFlow(t, newFakeEnv(), run, st(Pending), stp(Failed), Options{}, RetryFailedFlows))
		expect(t, res, Accept, Failed, true)
	})
}

func TestInstrumentFlowRunStateTransitions(t *testing.T) {
	env := newFakeEnv()
	run := newFlowRun()
	ini := st(Pending)
	res := ok(t)(runFlow(t, env, run, ini, stp(Running), Options{}, InstrumentFlowRunStateTransitions))
	if len(env.changes) != 1 || env.changes[0].initial.ID != ini.ID || env.changes[0].validated.ID != res.State.ID {
		t.Errorf("changes = %+v", env.changes)
	}
	// nothing written, nothing reported
	ok(t)(runFlow(t, env, run, st(Scheduled, scheduledAt(t0.Add(time.Hour))), stp(Running), Options{}, WaitForScheduledTime, InstrumentFlowRunStateTransitions))
	if len(env.changes) != 1 {
		t.Errorf("changes = %d", len(env.changes))
	}
}
