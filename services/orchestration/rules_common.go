package orchestration

import (
	"fmt"
	"time"
)

// Rules shared by flow and task policies (Prefect's GenericOrchestrationRule
// and the Run-typed rules of core_policy.py).

// PreventPendingTransitions aborts transitions into PENDING from PENDING,
// RUNNING, CANCELLING and CANCELLED, so two workers cannot both submit a
// run. PENDING -> PENDING with a new, non-default name (Submitting,
// InfrastructurePending) is a sub-state step and passes, keeping the
// scheduled time and concurrency lease of the initial state.
var PreventPendingTransitions = &Rule{
	Name: "PreventPendingTransitions",
	From: StateSet{Pending, Cancelling, Running, Cancelled},
	To:   StateSet{Pending},
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		if c.Initial.Type == Pending && c.Proposed.Type == Pending &&
			c.Initial.Name != c.Proposed.Name && c.Proposed.Name != "Pending" {
			c.Proposed.StateDetails.ScheduledTime = clonePtr(c.Initial.StateDetails.ScheduledTime)
			c.Proposed.StateDetails.DeploymentConcurrencyLeaseID = clonePtr(c.Initial.StateDetails.DeploymentConcurrencyLeaseID)
			return nil
		}
		f.Abort(fmt.Sprintf("This run is in a %s state and cannot transition to a PENDING state.", c.Initial.Type))
		return nil
	},
}

// CopyScheduledTime carries the scheduled time of a SCHEDULED state to the
// PENDING state that follows, unless the PENDING state brings its own.
var CopyScheduledTime = &Rule{
	Name: "CopyScheduledTime",
	From: StateSet{Scheduled},
	To:   StateSet{Pending},
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		if c.Proposed.StateDetails.ScheduledTime == nil {
			c.Proposed.StateDetails.ScheduledTime = clonePtr(c.Initial.StateDetails.ScheduledTime)
		}
		return nil
	},
}

// WaitForScheduledTime answers WAIT to a run trying to start before its
// scheduled time, by the server's clock.
var WaitForScheduledTime = &Rule{
	Name: "WaitForScheduledTime",
	From: StateSet{Scheduled, Pending},
	To:   StateSet{Running},
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil || c.Initial.StateDetails.ScheduledTime == nil {
			return nil
		}
		if d := waitSeconds(c.Initial.StateDetails.ScheduledTime.Sub(c.Now)); d > 0 {
			f.Delay(d, "Scheduled time is in the future")
		}
		return nil
	},
}

// waitSeconds rounds a delay to whole seconds exactly as Prefect does with
// a timedelta: floor of the seconds, plus one when the microsecond part
// exceeds half a second (Python's round() rounds 0.5 to even, i.e. 0).
func waitSeconds(d time.Duration) int {
	secs := d / time.Second
	rem := d - secs*time.Second
	if rem < 0 {
		secs--
		rem += time.Second
	}
	micros := rem / time.Microsecond
	out := int(secs)
	if micros > 500000 {
		out++
	}
	return out
}

// RenameReruns names a RUNNING state "Rerunning" when the run has run
// before, or "Retrying" when it comes from AwaitingRetry.
var RenameReruns = &Rule{
	Name: "RenameReruns",
	From: AllStates,
	To:   StateSet{Running},
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		if c.Run.RunCount > 0 {
			if c.Initial.Name == "AwaitingRetry" {
				f.Rename("Retrying")
			} else {
				f.Rename("Rerunning")
			}
		}
		return nil
	},
}

// awaitingRetry is Prefect's states.AwaitingRetry.
func awaitingRetry(now, at time.Time, message *string, data []byte) *State {
	s := NewState(Scheduled, "AwaitingRetry", now)
	s.StateDetails.ScheduledTime = &at
	s.Message = clonePtr(message)
	if data != nil {
		s.Data = append([]byte(nil), data...)
	}
	return s
}
