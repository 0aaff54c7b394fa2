package orchestration

import (
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// Concurrency rules. The decisions (which state to answer with, which
// reason) live here; the slot and lease bookkeeping is Options.Limiter's.
// With no Limiter they do nothing, as on a server without limits.

// workerVersionsThatManageDeploymentConcurrency are early 3.0 workers that
// took deployment slots themselves; the server must not take a second one.
var workerVersionsThatManageDeploymentConcurrency = []string{"3.0.0rc20", "3.0.0", "3.0.1", "3.0.2", "3.0.3"}

// minClientVersionForLeasing is the first client that renews deployment
// concurrency leases.
const minClientVersionForLeasing = "3.4.11"

// clientRenewsLeases: unknown clients are treated as 2.0.0, i.e. old.
func (c *Context) clientRenewsLeases() bool {
	return c.Opts.ClientVersion != "" && compareVersions(c.Opts.ClientVersion, minClientVersionForLeasing) >= 0
}

// PreserveDeploymentConcurrencyLeaseID keeps the lease id of the current
// state when the proposed state has none (workers send an explicit null).
var PreserveDeploymentConcurrencyLeaseID = &Rule{
	Name:      "PreserveDeploymentConcurrencyLeaseId",
	Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		if id := c.Initial.StateDetails.DeploymentConcurrencyLeaseID; id != nil && c.Proposed.StateDetails.DeploymentConcurrencyLeaseID == nil {
			c.Proposed.StateDetails.DeploymentConcurrencyLeaseID = clonePtr(id)
		}
		return nil
	},
}

type deploymentSlotMemo struct {
	held    bool
	leaseID uuid.UUID
}

// SecureFlowConcurrencySlots takes a deployment concurrency slot when a
// run enters PENDING, so a worker only provisions infrastructure for runs
// that may start. A full limit reschedules the run (AwaitingConcurrencySlot)
// or cancels it, per the deployment's collision strategy; a limit of 0
// aborts. The slot is given back if the transition fizzles.
var SecureFlowConcurrencySlots = &Rule{
	Name: "SecureFlowConcurrencySlots",
	From: AllStates.Without(Pending, Running, Cancelling),
	To:   StateSet{Pending},
	Before: func(c *Context, f *Firing) error {
		lim := c.Opts.Limiter
		if lim == nil || c.FlowRun.DeploymentID == nil || c.Proposed == nil ||
			slices.Contains(workerVersionsThatManageDeploymentConcurrency, c.Opts.ClientVersion) {
			return nil
		}
		slot, err := lim.AcquireDeploymentSlot(c.ctx, c.FlowRun)
		if err != nil {
			return err
		}
		switch slot.Outcome {
		case SlotDeploymentMissing:
			f.Abort("Deployment not found.")
		case SlotLimitZero:
			f.Abort("The deployment concurrency limit is 0. The flow will deadlock if submitted again.")
		case SlotAcquired:
			c.Proposed.StateDetails.DeploymentConcurrencyLeaseID = ptr(slot.LeaseID)
			f.Memo = deploymentSlotMemo{held: true, leaseID: slot.LeaseID}
		case SlotFull:
			if slot.Strategy == StrategyCancelNew {
				s := NewState(Cancelled, "", c.Now)
				s.Message = ptr("Deployment concurrency limit reached.")
				f.Reject(s, "Deployment concurrency limit reached.")
			} else {
				s := NewState(Scheduled, "AwaitingConcurrencySlot", c.Now)
				s.StateDetails.ScheduledTime = ptr(c.Now.Add(c.Opts.DeploymentConcurrencySlotWait))
				f.Reject(s, "Deployment concurrency limit reached.")
			}
		}
		return nil
	},
	Cleanup: func(c *Context, f *Firing) error {
		m, ok := f.Memo.(deploymentSlotMemo)
		if !ok || !m.held {
			return nil
		}
		if err := c.Opts.Limiter.ReleaseDeploymentSlot(c.ctx, c.FlowRun, ptr(m.leaseID)); err != nil {
			return err
		}
		if c.Validated != nil {
			c.Validated.StateDetails.DeploymentConcurrencyLeaseID = nil
		}
		return nil
	},
}

// ValidateDeploymentConcurrencyAtRunning carries the lease from PENDING to
// RUNNING and, for clients that renew leases, renews it; a lease reaped
// while the infrastructure started is re-acquired if a slot is free, else
// the run is cancelled (its infrastructure already runs, so it cannot be
// rescheduled).
var ValidateDeploymentConcurrencyAtRunning = &Rule{
	Name: "ValidateDeploymentConcurrencyAtRunning",
	From: StateSet{Pending},
	To:   StateSet{Running},
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		lease := clonePtr(c.Initial.StateDetails.DeploymentConcurrencyLeaseID)
		c.Proposed.StateDetails.DeploymentConcurrencyLeaseID = lease
		if lease == nil || !c.clientRenewsLeases() || c.FlowRun.DeploymentID == nil || c.Opts.Limiter == nil {
			return nil
		}
		r, err := c.Opts.Limiter.RenewDeploymentLease(c.ctx, c.FlowRun, *lease)
		if err != nil {
			return err
		}
		switch r.Outcome {
		case LeaseReacquired:
			c.Proposed.StateDetails.DeploymentConcurrencyLeaseID = ptr(r.LeaseID)
		case LeaseLost:
			s := NewState(Cancelled, "", c.Now)
			s.Message = ptr("Deployment concurrency slot lost during provisioning - no slots available to continue execution")
			f.Reject(s, "Deployment concurrency limit reached after lease expiry.")
		}
		return nil
	},
}

// RemoveDeploymentConcurrencyLeaseForOldClientVersions revokes the lease of
// a run started by a client too old to renew it, so the lease reaper does
// not take the slot from a running flow.
var RemoveDeploymentConcurrencyLeaseForOldClientVersions = &Rule{
	Name: "RemoveDeploymentConcurrencyLeaseForOldClientVersions",
	From: StateSet{Pending},
	To:   StateSet{Running, Cancelling},
	After: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.clientRenewsLeases() || c.Opts.Limiter == nil {
			return nil
		}
		if id := c.Initial.StateDetails.DeploymentConcurrencyLeaseID; id != nil {
			return c.Opts.Limiter.RevokeDeploymentLease(c.ctx, *id)
		}
		return nil
	},
}

// ReleaseFlowConcurrencySlots gives back the deployment slot when a run
// leaves PENDING, RUNNING or CANCELLING for any other state, except an
// in-process retry (RetryFailedFlows' rejected AwaitingRetry), which keeps
// its slot.
var ReleaseFlowConcurrencySlots = &Rule{
	Name:      "ReleaseFlowConcurrencySlots",
	Universal: true,
	After: func(c *Context, f *Firing) error {
		if c.Proposed == nil || c.Opts.Limiter == nil || c.FlowRun.DeploymentID == nil {
			return nil
		}
		holding := StateSet{Pending, Running, Cancelling}
		if !holding.Has(TypeOf(c.Initial)) || holding.Has(c.Proposed.Type) {
			return nil
		}
		if c.Proposed.Type == Scheduled && c.Proposed.Name == "AwaitingRetry" && c.Status == Reject {
			return nil
		}
		return c.Opts.Limiter.ReleaseDeploymentSlot(c.ctx, c.FlowRun, clonePtr(c.Initial.StateDetails.DeploymentConcurrencyLeaseID))
	},
}

// EnforceDeploymentConcurrencyOnLate cancels, instead of marking Late, a
// run whose deployment uses CANCEL_NEW and whose limit is full: such runs
// never reach PENDING, where the strategy is normally applied.
var EnforceDeploymentConcurrencyOnLate = &Rule{
	Name: "EnforceDeploymentConcurrencyOnLate",
	From: StateSet{Scheduled},
	To:   StateSet{Scheduled},
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil || c.Proposed.Name != "Late" ||
			c.FlowRun.DeploymentID == nil || c.Opts.Limiter == nil {
			return nil
		}
		full, err := c.Opts.Limiter.DeploymentFullWithCancelNew(c.ctx, c.FlowRun)
		if err != nil || !full {
			return err
		}
		s := NewState(Cancelled, "", c.Now)
		s.Message = ptr("Deployment concurrency limit reached.")
		f.Reject(s, "Deployment concurrency limit is full and uses the CANCEL_NEW strategy.")
		return nil
	},
}

// SecureTaskConcurrencySlots takes a slot on every tag concurrency limit
// before a task runs: a full limit answers WAIT, a limit of 0 aborts. The
// slots are given back if the transition fizzles (e.g. a later rule makes
// the task wait for its scheduled time).
var SecureTaskConcurrencySlots = &Rule{
	Name: "SecureTaskConcurrencySlots",
	From: AllStates,
	To:   StateSet{Running},
	Before: func(c *Context, f *Firing) error {
		if c.Opts.Limiter == nil || len(c.TaskRun.Tags) == 0 {
			return nil
		}
		slots, err := c.Opts.Limiter.AcquireTaskSlots(c.ctx, c.TaskRun)
		if err != nil {
			return err
		}
		f.Memo = slots.Held
		switch slots.Outcome {
		case TaskSlotsWait:
			f.Delay(slots.DelaySeconds, slots.Reason)
		case TaskSlotsAbort:
			f.Abort(slots.Reason)
		}
		return nil
	},
	Cleanup: func(c *Context, f *Firing) error {
		if held, _ := f.Memo.(bool); held {
			if err := c.Opts.Limiter.ReleaseTaskSlots(c.ctx, c.TaskRun); err != nil {
				return fmt.Errorf("release task concurrency slots: %w", err)
			}
		}
		return nil
	},
}

// ReleaseTaskConcurrencySlots frees a task run's tag slots whenever it
// enters a state other than RUNNING or CANCELLING.
var ReleaseTaskConcurrencySlots = &Rule{
	Name:      "ReleaseTaskConcurrencySlots",
	Universal: true,
	After: func(c *Context, f *Firing) error {
		if c.Proposed == nil || c.Opts.Limiter == nil || len(c.TaskRun.Tags) == 0 {
			return nil
		}
		if c.Validated == nil || c.Validated.Type == Running || c.Validated.Type == Cancelling {
			return nil
		}
		return c.Opts.Limiter.ReleaseTaskSlots(c.ctx, c.TaskRun)
	},
}
