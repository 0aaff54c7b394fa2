package orchestration

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Flow run rules of Prefect's core_policy.py.

// PreventDuplicateTransitions rejects a transition whose transition_id
// equals the current state's: the client is retrying a request the server
// already applied, and gets the current state back.
var PreventDuplicateTransitions = &Rule{
	Name: "PreventDuplicateTransitions",
	From: AllStates,
	To:   AllStates,
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		a, b := c.Initial.StateDetails.TransitionID, c.Proposed.StateDetails.TransitionID
		if a != nil && b != nil && *a == *b {
			f.Reject(nil, "This run has already made this state transition.")
		}
		return nil
	},
}

// HandleFlowTerminalStateTransitions guards flow runs leaving a terminal
// state: never to CANCELLING, PAUSED or CRASHED; not away from a COMPLETED
// state whose result is persisted (nor to a COMPLETED state that would drop
// that result); not to SCHEDULED without a deployment. A rerun resets the
// pause bookkeeping (undone if the transition fizzles).
var HandleFlowTerminalStateTransitions = &Rule{
	Name: "HandleFlowTerminalStateTransitions",
	From: TerminalStates,
	To:   AllStates,
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		f.Memo = c.FlowRun.EmpiricalPolicy.clone()
		ini, pro := c.Initial, c.Proposed
		switch pro.Type {
		case Cancelling, Paused, Crashed:
			f.Abort(fmt.Sprintf("Run is already in terminal state %s.", ini.Type))
			return nil
		}
		if ini.Type == Completed && !pro.Type.IsTerminal() && HasPersistedResult(ini.Data) {
			f.Reject(nil, "Run is already COMPLETED.")
			return nil
		}
		if loosesResult(ini, pro) {
			f.Reject(nil, resultLossReason)
			return nil
		}
		if pro.Type == Scheduled && c.FlowRun.DeploymentID == nil {
			f.Abort("Cannot reschedule a run without an associated deployment.")
			return nil
		}
		if !pro.Type.IsTerminal() && c.apiAtLeast("0.8.4") {
			p := &c.FlowRun.EmpiricalPolicy
			p.Resuming = false
			p.PauseKeys = []string{}
			if pro.Type == Scheduled {
				p.RetryType = ptr(RetryReschedule)
			} else {
				p.RetryType = nil
			}
		}
		return nil
	},
	Cleanup: func(c *Context, f *Firing) error {
		if orig, ok := f.Memo.(FlowRunPolicy); ok {
			c.FlowRun.EmpiricalPolicy = orig
		}
		return nil
	},
}

const resultLossReason = "Cannot overwrite a COMPLETED state that carries persisted result data with one that does not."

// loosesResult: COMPLETED with a persisted result -> COMPLETED without one.
func loosesResult(ini, pro *State) bool {
	return ini.Type == Completed && pro.Type == Completed &&
		HasPersistedResult(ini.Data) && !HasPersistedResult(pro.Data)
}

// PreventResultDataLoss is the part of HandleFlowTerminalStateTransitions
// that still applies to forced transitions.
var PreventResultDataLoss = &Rule{
	Name: "PreventResultDataLoss",
	From: TerminalStates,
	To:   TerminalStates,
	Before: func(c *Context, f *Firing) error {
		if c.Initial != nil && c.Proposed != nil && loosesResult(c.Initial, c.Proposed) {
			f.Reject(nil, resultLossReason)
		}
		return nil
	},
}

// EnforceCancellingToCancelledTransition: a CANCELLING run may only become
// CANCELLED.
var EnforceCancellingToCancelledTransition = &Rule{
	Name: "EnforceCancellingToCancelledTransition",
	From: StateSet{Cancelling},
	To:   AllStates.Without(Cancelled),
	Before: func(c *Context, f *Firing) error {
		f.Reject(nil, "Cannot transition flows that are cancelling to a state other than Cancelled.")
		return nil
	},
}

// BypassCancellingFlowRunsWithNoInfra turns CANCELLING into CANCELLED when
// there is no infrastructure to tear down: a SCHEDULED run without an
// infrastructure pid, a "Resuming" run, or a suspended (rescheduling) pause.
var BypassCancellingFlowRunsWithNoInfra = &Rule{
	Name: "BypassCancellingFlowRunsWithNoInfra",
	From: StateSet{Scheduled, Paused},
	To:   StateSet{Cancelling},
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		noPID := c.FlowRun.InfrastructurePID == nil || *c.FlowRun.InfrastructurePID == ""
		switch {
		case (c.Initial.Type == Scheduled && noPID) || c.Initial.Name == "Resuming":
			f.Reject(NewState(Cancelled, "", c.Now), "Scheduled flow run has no infrastructure to terminate.")
		case c.Initial.Type == Paused && c.Initial.StateDetails.PauseReschedule:
			f.Reject(NewState(Cancelled, "", c.Now), "Suspended flow run has no infrastructure to terminate.")
		}
		return nil
	},
}

// EnsureOnlyScheduledFlowsMarkedLate: only a SCHEDULED run that is not
// already Late can be marked Late.
var EnsureOnlyScheduledFlowsMarkedLate = &Rule{
	Name: "EnsureOnlyScheduledFlowsMarkedLate",
	From: AllStates,
	To:   StateSet{Scheduled},
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		if c.Proposed.Type == Scheduled && c.Proposed.Name == "Late" {
			if c.Initial.Type != Scheduled {
				f.Reject(nil, "Only scheduled flows can be marked late.")
			} else if c.Initial.Name == "Late" {
				f.Reject(nil, "This flow run is already marked late.")
			}
		}
		return nil
	},
}

func pauseVerb(s *State) string {
	if s.Name == "Suspended" {
		return "suspend"
	}
	return "pause"
}

// HandlePausingFlows governs PAUSED (and Suspended) transitions: only a
// RUNNING run can pause, each pause key fires once, and a suspension
// (pause_reschedule) needs a deployment and is not allowed for subflows.
// Once the pause is written its key is recorded and stale input for its
// run_input_keyset is removed.
var HandlePausingFlows = &Rule{
	Name: "HandlePausingFlows",
	From: AllStates,
	To:   StateSet{Paused},
	Before: func(c *Context, f *Firing) error {
		if c.Proposed == nil {
			return nil
		}
		verb := pauseVerb(c.Proposed)
		if c.Initial == nil {
			f.Abort(fmt.Sprintf("Cannot %s flows with no state.", verb))
			return nil
		}
		if c.Initial.Type != Running {
			f.Reject(nil, fmt.Sprintf("Cannot %s flows that are not currently running.", verb))
			return nil
		}
		key := uuid.NewString()
		if k := c.Proposed.StateDetails.PauseKey; k != nil {
			key = *k
		}
		f.Memo = key
		if slices.Contains(c.FlowRun.EmpiricalPolicy.PauseKeys, key) {
			f.Reject(nil, fmt.Sprintf("This %s has already fired.", verb))
			return nil
		}
		if c.Proposed.StateDetails.PauseReschedule {
			if c.FlowRun.ParentTaskRunID != nil {
				f.Abort(fmt.Sprintf("Cannot %s subflows.", verb))
				return nil
			}
			if c.FlowRun.DeploymentID == nil {
				f.Abort(fmt.Sprintf("Cannot %s flows without a deployment.", verb))
				return nil
			}
		}
		return nil
	},
	After: func(c *Context, f *Firing) error {
		key, _ := f.Memo.(string)
		p := &c.FlowRun.EmpiricalPolicy
		if !slices.Contains(p.PauseKeys, key) {
			p.PauseKeys = append(p.PauseKeys, key)
		}
		if c.Validated == nil {
			return nil
		}
		keyset := c.Validated.StateDetails.RunInputKeyset
		for _, name := range slices.Sorted(maps.Keys(keyset)) {
			if err := c.Env.DeleteFlowRunInput(c.ctx, c.FlowRun.ID, keyset[name]); err != nil {
				return fmt.Errorf("delete flow run input %q: %w", keyset[name], err)
			}
		}
		return nil
	},
}

// HandleResumingPausedFlows governs leaving PAUSED: only to RUNNING,
// SCHEDULED, CANCELLING or a terminal state; a suspended run needs a
// deployment to be rescheduled; a pause past its timeout fails the run
// (cancelling is always allowed). Afterwards the run is marked resuming,
// except when a blocking pause is left for SCHEDULED: that starts a new
// attempt, so the pause bookkeeping is reset instead.
var HandleResumingPausedFlows = &Rule{
	Name: "HandleResumingPausedFlows",
	From: StateSet{Paused},
	To:   AllStates,
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		ini, pro := c.Initial, c.Proposed
		switch {
		case pro.Type == Running, pro.Type == Scheduled, pro.Type == Cancelling, pro.Type.IsTerminal():
		default:
			// Prefect formats the enum members, hence "StateType.X".
			f.Reject(nil, fmt.Sprintf("This run cannot transition to the StateType.%s state from the StateType.%s state.", pro.Type, ini.Type))
			return nil
		}
		verb := pauseVerb(pro)
		display := strings.ToLower(pro.Name)
		if display == "" {
			display = strings.ToLower(string(pro.Type))
		}
		if ini.StateDetails.PauseReschedule && c.FlowRun.DeploymentID == nil {
			f.Reject(nil, fmt.Sprintf("Cannot reschedule a %s flow run without a deployment.", display))
			return nil
		}
		if pro.Type == Cancelling {
			// the worker must still get the cancellation after the deadline
			return nil
		}
		if t := ini.StateDetails.PauseTimeout; t != nil && t.Before(c.Now) {
			failed := NewState(Failed, "", c.Now)
			failed.Message = ptr(fmt.Sprintf("The flow was %s and never resumed.", display))
			f.Reject(failed, fmt.Sprintf("The flow run %s has timed out and can no longer resume.", verb))
		}
		return nil
	},
	After: func(c *Context, f *Firing) error {
		p := &c.FlowRun.EmpiricalPolicy
		if c.Initial != nil && !c.Initial.StateDetails.PauseReschedule &&
			c.Validated != nil && c.Validated.Type == Scheduled && c.apiAtLeast("0.8.4") {
			p.Resuming = false
			p.PauseKeys = []string{}
			p.RetryType = ptr(RetryReschedule)
		} else {
			p.Resuming = true
		}
		return nil
	},
}

// RetryFailedFlows turns RUNNING -> FAILED into AwaitingRetry while the
// run has retries left (run_count <= retries), retry_delay seconds from
// now, resetting pause bookkeeping and marking an in-process retry. With no
// retries left the failure stands and retry_type is cleared.
var RetryFailedFlows = &Rule{
	Name: "RetryFailedFlows",
	From: StateSet{Running},
	To:   StateSet{Failed},
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		p := &c.FlowRun.EmpiricalPolicy
		if p.Retries == nil || c.Run.RunCount > *p.Retries {
			p.RetryType = nil
			return nil
		}
		delay := 0
		if p.RetryDelay != nil {
			delay = *p.RetryDelay
		}
		at := c.Now.Add(time.Duration(delay) * time.Second)
		if c.apiAtLeast("0.8.4") {
			p.Resuming = false
			p.PauseKeys = []string{}
			p.RetryType = ptr(RetryInProcess)
		}
		retry := awaitingRetry(c.Now, at, c.Proposed.Message, c.Proposed.Data)
		// the engine keeps renewing its deployment lease across an
		// in-process retry, so the retry state carries it
		retry.StateDetails.DeploymentConcurrencyLeaseID = clonePtr(c.Initial.StateDetails.DeploymentConcurrencyLeaseID)
		f.Reject(retry, "Retrying")
		return nil
	},
}

// InstrumentFlowRunStateTransitions reports every written flow run state
// (the prefect.flow-run.* event).
var InstrumentFlowRunStateTransitions = &Rule{
	Name:      "InstrumentFlowRunStateTransitions",
	Universal: true,
	After: func(c *Context, f *Firing) error {
		if c.Proposed == nil || c.Validated == nil {
			return nil
		}
		return c.Env.FlowRunStateChanged(c.ctx, c.FlowRun, c.Initial.Clone(), c.Validated.Clone())
	},
}
