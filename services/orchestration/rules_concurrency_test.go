package orchestration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
)

func deployedRun() *FlowRun {
	r := newFlowRun()
	r.DeploymentID = ptr(uuid.New())
	return r
}

func withLease(id uuid.UUID) func(*State) {
	return func(s *State) { s.StateDetails.DeploymentConcurrencyLeaseID = &id }
}

func TestPreserveDeploymentConcurrencyLeaseID(t *testing.T) {
	lease, other := uuid.New(), uuid.New()
	res := ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Pending, withLease(lease)), stp(Pending, named("Submitting")), Options{}, PreserveDeploymentConcurrencyLeaseID))
	if id := res.NewState.StateDetails.DeploymentConcurrencyLeaseID; id == nil || *id != lease {
		t.Errorf("lease = %v", id)
	}
	res = ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Pending, withLease(lease)), stp(Running, withLease(other)), Options{}, PreserveDeploymentConcurrencyLeaseID))
	if id := res.NewState.StateDetails.DeploymentConcurrencyLeaseID; *id != other {
		t.Errorf("a proposed lease wins, got %v", id)
	}
	res = ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), nil, stp(Pending), Options{}, PreserveDeploymentConcurrencyLeaseID))
	if res.NewState.StateDetails.DeploymentConcurrencyLeaseID != nil {
		t.Error("no lease to preserve")
	}
}

func TestSecureFlowConcurrencySlots(t *testing.T) {
	lease := uuid.New()
	tests := []struct {
		name     string
		slot     DeploymentSlot
		client   string
		status   SetStateStatus
		typ      StateType
		stName   string
		reason   string
		acquires bool
	}{
		{"no limit", DeploymentSlot{Outcome: SlotNoLimit}, "", Accept, Pending, "Pending", "", true},
		{"acquired", DeploymentSlot{Outcome: SlotAcquired, LeaseID: lease}, "", Accept, Pending, "Pending", "", true},
		{"full enqueues", DeploymentSlot{Outcome: SlotFull}, "", Reject, Scheduled, "AwaitingConcurrencySlot", "Deployment concurrency limit reached.", true},
		{"full enqueue strategy", DeploymentSlot{Outcome: SlotFull, Strategy: StrategyEnqueue}, "", Reject, Scheduled, "AwaitingConcurrencySlot", "Deployment concurrency limit reached.", true},
		{"full cancels new", DeploymentSlot{Outcome: SlotFull, Strategy: StrategyCancelNew}, "", Reject, Cancelled, "Cancelled", "Deployment concurrency limit reached.", true},
		{"zero limit", DeploymentSlot{Outcome: SlotLimitZero}, "", Abort, Scheduled, "Scheduled", "The deployment concurrency limit is 0. The flow will deadlock if submitted again.", true},
		{"deployment gone", DeploymentSlot{Outcome: SlotDeploymentMissing}, "", Abort, Scheduled, "Scheduled", "Deployment not found.", true},
		{"worker manages concurrency", DeploymentSlot{Outcome: SlotFull}, "3.0.2", Accept, Pending, "Pending", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := &fakeLimiter{slot: tt.slot}
			res := ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(Scheduled), stp(Pending), Options{Limiter: lim, ClientVersion: tt.client}, SecureFlowConcurrencySlots))
			if res.Status != tt.status || TypeOf(res.State) != tt.typ || res.State.Name != tt.stName || reasonOf(res) != tt.reason {
				t.Errorf("got %s %s %q %q", res.Status, TypeOf(res.State), res.State.Name, reasonOf(res))
			}
			if (len(lim.acquired) == 1) != tt.acquires {
				t.Errorf("acquired %v", lim.acquired)
			}
			if tt.slot.Outcome == SlotAcquired {
				if id := res.NewState.StateDetails.DeploymentConcurrencyLeaseID; id == nil || *id != lease {
					t.Errorf("lease = %v", id)
				}
			}
			if tt.stName == "AwaitingConcurrencySlot" && !res.NewState.StateDetails.ScheduledTime.Equal(t0.Add(30*time.Second)) {
				t.Errorf("scheduled %v", res.NewState.StateDetails.ScheduledTime)
			}
		})
	}

	t.Run("custom wait", func(t *testing.T) {
		lim := &fakeLimiter{slot: DeploymentSlot{Outcome: SlotFull}}
		res := ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(Scheduled), stp(Pending), Options{Limiter: lim, DeploymentConcurrencySlotWait: time.Minute}, SecureFlowConcurrencySlots))
		if !res.NewState.StateDetails.ScheduledTime.Equal(t0.Add(time.Minute)) {
			t.Errorf("scheduled %v", res.NewState.StateDetails.ScheduledTime)
		}
	})

	t.Run("not governed", func(t *testing.T) {
		lim := &fakeLimiter{slot: DeploymentSlot{Outcome: SlotFull}}
		for _, from := range []StateType{Pending, Running, Cancelling} {
			ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(from), stp(Pending), Options{Limiter: lim}, SecureFlowConcurrencySlots))
		}
		ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Scheduled), stp(Pending), Options{Limiter: lim}, SecureFlowConcurrencySlots))
		ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(Scheduled), stp(Pending), Options{}, SecureFlowConcurrencySlots))
		if len(lim.acquired) != 0 {
			t.Errorf("acquired %v", lim.acquired)
		}
	})

	t.Run("slot released when the transition fizzles", func(t *testing.T) {
		lim := &fakeLimiter{slot: DeploymentSlot{Outcome: SlotAcquired, LeaseID: lease}}
		abort := &Rule{Name: "abort", From: AllStates, To: AllStates, Before: func(c *Context, f *Firing) error { f.Abort("no"); return nil }}
		res := ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(Scheduled), stp(Pending), Options{Limiter: lim}, SecureFlowConcurrencySlots, abort))
		expect(t, res, Abort, Scheduled, false)
		if len(lim.released) != 1 || *lim.releasedLeases[0] != lease {
			t.Errorf("released %v %v", lim.released, lim.releasedLeases)
		}
		if res.State.StateDetails.DeploymentConcurrencyLeaseID != nil {
			t.Error("the answered state must not carry the released lease")
		}
	})

	t.Run("limiter error", func(t *testing.T) {
		lim := &fakeLimiter{err: errors.New("lease storage down")}
		if _, err := runFlow(t, newFakeEnv(), deployedRun(), st(Scheduled), stp(Pending), Options{Limiter: lim}, SecureFlowConcurrencySlots); !errors.Is(err, lim.err) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestValidateDeploymentConcurrencyAtRunning(t *testing.T) {
	lease, fresh := uuid.New(), uuid.New()
	tests := []struct {
		name    string
		client  string
		renewal LeaseRenewal
		status  SetStateStatus
		typ     StateType
		lease   *uuid.UUID
	}{
		{"old client keeps lease", "3.4.10", LeaseRenewal{Outcome: LeaseLost}, Accept, Running, &lease},
		{"unknown client keeps lease", "", LeaseRenewal{Outcome: LeaseLost}, Accept, Running, &lease},
		{"renewed", "3.9.1", LeaseRenewal{Outcome: LeaseRenewed}, Accept, Running, &lease},
		{"not applicable", "3.9.1", LeaseRenewal{Outcome: LeaseNotApplicable}, Accept, Running, &lease},
		{"reacquired", "3.4.11", LeaseRenewal{Outcome: LeaseReacquired, LeaseID: fresh}, Accept, Running, &fresh},
		{"lost", "3.9.1", LeaseRenewal{Outcome: LeaseLost}, Reject, Cancelled, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := &fakeLimiter{renewal: tt.renewal}
			pro := stp(Running, withLease(uuid.New())) // replaced by the initial lease
			res := ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(Pending, withLease(lease)), pro, Options{Limiter: lim, ClientVersion: tt.client}, ValidateDeploymentConcurrencyAtRunning))
			expect(t, res, tt.status, tt.typ, true)
			got := res.NewState.StateDetails.DeploymentConcurrencyLeaseID
			if (got == nil) != (tt.lease == nil) || (got != nil && *got != *tt.lease) {
				t.Errorf("lease = %v, want %v", got, tt.lease)
			}
			if tt.typ == Cancelled && (reasonOf(res) != "Deployment concurrency limit reached after lease expiry." ||
				*res.NewState.Message != "Deployment concurrency slot lost during provisioning - no slots available to continue execution") {
				t.Errorf("reason %q", reasonOf(res))
			}
		})
	}
	// no lease on the initial state clears the proposed one
	res := ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(Pending), stp(Running, withLease(lease)), Options{}, ValidateDeploymentConcurrencyAtRunning))
	if res.NewState.StateDetails.DeploymentConcurrencyLeaseID != nil {
		t.Error("lease not copied from the initial state")
	}
	lim := &fakeLimiter{err: errors.New("down")}
	if _, err := runFlow(t, newFakeEnv(), deployedRun(), st(Pending, withLease(lease)), stp(Running), Options{Limiter: lim, ClientVersion: "3.9.1"}, ValidateDeploymentConcurrencyAtRunning); !errors.Is(err, lim.err) {
		t.Errorf("err = %v", err)
	}
}

func TestRemoveDeploymentConcurrencyLeaseForOldClientVersions(t *testing.T) {
	lease := uuid.New()
	for _, tt := range []struct {
		client string
		to     StateType
		revoke bool
	}{
		{"", Running, true},
		{"3.4.10", Cancelling, true},
		{"3.4.11", Running, false},
		{"3.9.1", Running, false},
		{"", Completed, false},
	} {
		lim := &fakeLimiter{}
		ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(Pending, withLease(lease)), stp(tt.to), Options{Limiter: lim, ClientVersion: tt.client}, RemoveDeploymentConcurrencyLeaseForOldClientVersions))
		if (len(lim.revoked) == 1) != tt.revoke {
			t.Errorf("%q -> %s: revoked %v", tt.client, tt.to, lim.revoked)
		}
	}
	lim := &fakeLimiter{}
	ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(Pending), stp(Running), Options{Limiter: lim}, RemoveDeploymentConcurrencyLeaseForOldClientVersions))
	if len(lim.revoked) != 0 {
		t.Error("no lease, nothing to revoke")
	}
}

func TestReleaseFlowConcurrencySlots(t *testing.T) {
	lease := uuid.New()
	holding := StateSet{Pending, Running, Cancelling}
	allPairs(t, func(t *testing.T, from, to StateType) {
		lim := &fakeLimiter{}
		ok(t)(runFlow(t, newFakeEnv(), deployedRun(), initialOf(from, withLease(lease)), stp(to), Options{Limiter: lim}, ReleaseFlowConcurrencySlots))
		want := holding.Has(from) && !holding.Has(to)
		if (len(lim.released) == 1) != want {
			t.Fatalf("released %v, want %v", lim.released, want)
		}
		if want && (lim.releasedLeases[0] == nil || *lim.releasedLeases[0] != lease) {
			t.Errorf("lease %v", lim.releasedLeases[0])
		}
	})

	t.Run("in-process retry keeps the slot", func(t *testing.T) {
		lim := &fakeLimiter{}
		run := deployedRun()
		run.RunCount = 1
		run.EmpiricalPolicy.Retries = ptr(1)
		res := ok(t)(runFlow(t, newFakeEnv(), run, st(Running, withLease(lease)), stp(Failed), Options{Limiter: lim}, RetryFailedFlows, ReleaseFlowConcurrencySlots))
		expect(t, res, Reject, Scheduled, true)
		if len(lim.released) != 0 {
			t.Error("released across an in-process retry")
		}
		// a proposed AwaitingRetry (e.g. SIGTERM reschedule) leaves the process
		ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(Running, withLease(lease)), stp(Scheduled, named("AwaitingRetry")), Options{Limiter: lim}, ReleaseFlowConcurrencySlots))
		if len(lim.released) != 1 {
			t.Error("not released for a proposed AwaitingRetry")
		}
	})

	t.Run("no deployment, no limiter, nothing written", func(t *testing.T) {
		lim := &fakeLimiter{}
		ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Running), stp(Completed), Options{Limiter: lim}, ReleaseFlowConcurrencySlots))
		ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(Running), stp(Completed), Options{}, ReleaseFlowConcurrencySlots))
		ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(Running), stp(Pending), Options{Limiter: lim}, PreventPendingTransitions, ReleaseFlowConcurrencySlots))
		if len(lim.released) != 0 {
			t.Errorf("released %v", lim.released)
		}
	})

	t.Run("forced transitions release", func(t *testing.T) {
		lim := &fakeLimiter{}
		ok(t)(OrchestrateFlowRun(context.Background(), newFakeEnv(), deployedRun(), st(Running), *stp(Cancelled), Options{Now: t0, Force: true, Limiter: lim}))
		if len(lim.released) != 1 || lim.releasedLeases[0] != nil {
			t.Errorf("released %v %v", lim.released, lim.releasedLeases)
		}
	})
}

func TestEnforceDeploymentConcurrencyOnLate(t *testing.T) {
	late := stp(Scheduled, named("Late"))
	lim := &fakeLimiter{fullCancel: true}
	res := ok(t)(OrchestrateFlowRun(context.Background(), newFakeEnv(), deployedRun(), st(Scheduled), *late, Options{Now: t0, Policy: &MarkLateRunsPolicy, Limiter: lim}))
	expect(t, res, Reject, Cancelled, true)
	if reasonOf(res) != "Deployment concurrency limit is full and uses the CANCEL_NEW strategy." || *res.NewState.Message != "Deployment concurrency limit reached." {
		t.Errorf("reason %q", reasonOf(res))
	}
	lim.fullCancel = false
	res = ok(t)(OrchestrateFlowRun(context.Background(), newFakeEnv(), deployedRun(), st(Scheduled), *late, Options{Now: t0, Policy: &MarkLateRunsPolicy, Limiter: lim}))
	expect(t, res, Accept, Scheduled, true)
	lim.fullCancel = true
	res = ok(t)(runFlow(t, newFakeEnv(), deployedRun(), st(Scheduled), stp(Scheduled), Options{Limiter: lim}, EnforceDeploymentConcurrencyOnLate))
	expect(t, res, Accept, Scheduled, true)
	res = ok(t)(runFlow(t, newFakeEnv(), newFlowRun(), st(Scheduled), late, Options{Limiter: lim}, EnforceDeploymentConcurrencyOnLate))
	expect(t, res, Accept, Scheduled, true)
	lim.err = errors.New("down")
	if _, err := runFlow(t, newFakeEnv(), deployedRun(), st(Scheduled), late, Options{Limiter: lim}, EnforceDeploymentConcurrencyOnLate); !errors.Is(err, lim.err) {
		t.Errorf("err = %v", err)
	}
}

func TestSecureTaskConcurrencySlots(t *testing.T) {
	tagged := func() *TaskRun { r := newTaskRun(); r.Tags = []string{"db"}; return r }
	tests := []struct {
		name   string
		slots  TaskSlots
		status SetStateStatus
		delay  int
	}{
		{"acquired", TaskSlots{Outcome: TaskSlotsAcquired, Held: true}, Accept, 0},
		{"wait", TaskSlots{Outcome: TaskSlotsWait, DelaySeconds: 10, Reason: "Concurrency limit for the db tag has been reached"}, Wait, 10},
		{"abort", TaskSlots{Outcome: TaskSlotsAbort, Reason: `The concurrency limit on tag "db" is 0 and will deadlock if the task tries to run again.`}, Abort, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := &fakeLimiter{taskSlots: tt.slots}
			res := ok(t)(runTask(t, newFakeEnv(), tagged(), st(Pending), stp(Running), Options{Limiter: lim}, SecureTaskConcurrencySlots))
			if res.Status != tt.status || res.Details.DelaySeconds != tt.delay || reasonOf(res) != tt.slots.Reason {
				t.Errorf("got %s %d %q", res.Status, res.Details.DelaySeconds, reasonOf(res))
			}
		})
	}
	t.Run("released when a later rule delays", func(t *testing.T) {
		lim := &fakeLimiter{taskSlots: TaskSlots{Outcome: TaskSlotsAcquired, Held: true}}
		ini := st(Scheduled, scheduledAt(t0.Add(time.Hour)))
		res := ok(t)(runTask(t, newFakeEnv(), tagged(), ini, stp(Running), Options{Limiter: lim}, SecureTaskConcurrencySlots, WaitForScheduledTime))
		expect(t, res, Wait, Scheduled, false)
		if lim.taskReleased != 1 {
			t.Errorf("released %d", lim.taskReleased)
		}
	})
	t.Run("untagged or unlimited runs skip", func(t *testing.T) {
		lim := &fakeLimiter{}
		ok(t)(runTask(t, newFakeEnv(), newTaskRun(), st(Pending), stp(Running), Options{Limiter: lim}, SecureTaskConcurrencySlots))
		ok(t)(runTask(t, newFakeEnv(), tagged(), st(Pending), stp(Running), Options{}, SecureTaskConcurrencySlots))
		if lim.taskAcquired != 0 {
			t.Error("acquired")
		}
	})
	t.Run("errors", func(t *testing.T) {
		lim := &fakeLimiter{err: errors.New("down")}
		if _, err := runTask(t, newFakeEnv(), tagged(), st(Pending), stp(Running), Options{Limiter: lim}, SecureTaskConcurrencySlots); !errors.Is(err, lim.err) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestReleaseTaskConcurrencySlots(t *testing.T) {
	for _, to := range StateTypes {
		lim := &fakeLimiter{}
		run := newTaskRun()
		run.Tags = []string{"db"}
		ok(t)(runTask(t, newFakeEnv(), run, st(Running), stp(to), Options{Limiter: lim}, ReleaseTaskConcurrencySlots))
		want := 1
		if to == Running || to == Cancelling {
			want = 0
		}
		if lim.taskReleased != want {
			t.Errorf("-> %s: released %d, want %d", to, lim.taskReleased, want)
		}
	}
	// forced transitions release too
	lim := &fakeLimiter{}
	run := newTaskRun()
	run.Tags = []string{"db"}
	ok(t)(OrchestrateTaskRun(context.Background(), newFakeEnv(), run, st(Running), *stp(Crashed), Options{Now: t0, Force: true, Limiter: lim}))
	if lim.taskReleased != 1 {
		t.Errorf("released %d", lim.taskReleased)
	}
}
