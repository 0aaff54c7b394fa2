package orchestration

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
	"unicode/utf8"
)

// Task run rules of Prefect's core_policy.py.

// CacheRetrieval answers a RUNNING proposal that carries a cache key (and
// no refresh_cache) with a copy of the cached COMPLETED state, named
// "Cached", when an unexpired cache entry exists.
var CacheRetrieval = &Rule{
	Name: "CacheRetrieval",
	From: AllStates,
	To:   StateSet{Running},
	Before: func(c *Context, f *Firing) error {
		if c.Proposed == nil {
			return nil
		}
		d := c.Proposed.StateDetails
		if d.CacheKey == nil || *d.CacheKey == "" || (d.RefreshCache != nil && *d.RefreshCache) {
			return nil
		}
		cached, err := c.Env.ReadCachedState(c.ctx, *d.CacheKey, c.Now)
		if err != nil {
			return err
		}
		if cached != nil {
			s := cached.FreshCopy(c.Now)
			s.Name = "Cached"
			f.Reject(s, "Retrieved state from cache")
		}
		return nil
	},
}

// CacheInsertion refuses cache keys longer than the configured maximum (the
// state is still written, with REJECT) and, once a COMPLETED state with a
// cache key is written, adds it to the cache.
var CacheInsertion = &Rule{
	Name: "CacheInsertion",
	From: AllStates,
	To:   StateSet{Completed},
	Before: func(c *Context, f *Firing) error {
		if c.Proposed == nil {
			return nil
		}
		if k := c.Proposed.StateDetails.CacheKey; k != nil && utf8.RuneCountInString(*k) > c.Opts.MaxCacheKeyLength {
			f.Reject(c.Proposed, fmt.Sprintf("Cache key exceeded maximum allowed length of %d characters.", c.Opts.MaxCacheKeyLength))
		}
		return nil
	},
	After: func(c *Context, f *Firing) error {
		if c.Validated == nil {
			return nil
		}
		d := c.Validated.StateDetails
		if d.CacheKey == nil || *d.CacheKey == "" {
			return nil
		}
		return c.Env.InsertStateCache(c.ctx, *d.CacheKey, clonePtr(d.CacheExpiration), c.Validated.ID)
	},
}

// HandleTaskTerminalStateTransitions guards task runs leaving a terminal
// state: never to CANCELLING, PAUSED or CRASHED, and not away from a
// COMPLETED state with a persisted result. Leaving for a non-terminal state
// resets run_count (so retries start over; undone if the transition
// fizzles), and a task starting again because its flow run is retrying is
// named "Retrying".
var HandleTaskTerminalStateTransitions = &Rule{
	Name: "HandleTaskTerminalStateTransitions",
	From: TerminalStates,
	To:   AllStates,
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		f.Memo = c.Run.RunCount
		switch c.Proposed.Type {
		case Cancelling, Paused, Crashed:
			f.Abort(fmt.Sprintf("Run is already %s.", c.Initial.Type))
			return nil
		}
		if c.Initial.Type == Completed && HasPersistedResult(c.Initial.Data) {
			f.Reject(nil, "This run is already completed.")
			return nil
		}
		if !c.Proposed.Type.IsTerminal() {
			c.Run.RunCount = 0
		}
		if c.Proposed.Type == Running && c.TaskRun.FlowRunID != nil {
			fr, _, err := c.EnclosingFlowRun()
			if err != nil {
				return err
			}
			if fr != nil && c.TaskRun.FlowRunRunCount < fr.RunCount {
				f.Rename("Retrying")
			}
		}
		return nil
	},
	Cleanup: func(c *Context, f *Firing) error {
		if n, ok := f.Memo.(int); ok {
			c.Run.RunCount = n
		}
		return nil
	},
}

// PreventRunningTasksFromStoppedFlows: a task may only start while its flow
// run is RUNNING. A paused flow answers with a "NotReady" PAUSED state that
// carries the flow's pause timeout; any other flow state aborts.
var PreventRunningTasksFromStoppedFlows = &Rule{
	Name: "PreventRunningTasksFromStoppedFlows",
	From: AllStates,
	To:   StateSet{Running},
	Before: func(c *Context, f *Firing) error {
		fr, st, err := c.EnclosingFlowRun()
		if err != nil || fr == nil {
			return err
		}
		switch {
		case st == nil:
			f.Abort("The enclosing flow must be running to begin task execution.")
		case st.Type == Paused:
			s := NewState(Paused, "NotReady", c.Now)
			s.StateDetails.PauseTimeout = clonePtr(st.StateDetails.PauseTimeout)
			s.StateDetails.PauseReschedule = st.StateDetails.PauseReschedule
			f.Reject(s, fmt.Sprintf("The flow is paused, new tasks can execute after resuming flow run: %s.", fr.ID))
		case st.Type != Running:
			f.Abort("The enclosing flow must be running to begin task execution.")
		}
		return nil
	},
}

// RetryFailedTasks turns RUNNING -> FAILED into AwaitingRetry while the
// task has retries left and the client did not mark the failure as not
// retriable. retry_delay may be a list (one delay per attempt, the last
// repeating); retry_jitter_factor spreads the delay.
var RetryFailedTasks = &Rule{
	Name: "RetryFailedTasks",
	From: StateSet{Running},
	To:   StateSet{Failed},
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		p := c.TaskRun.EmpiricalPolicy
		delay := taskRetryDelay(p, c.Run.RunCount)
		if r := c.Proposed.StateDetails.Retriable; r != nil && !*r {
			return nil
		}
		if p.Retries != nil && c.Run.RunCount <= *p.Retries {
			at := c.Now.Add(time.Duration(delay * float64(time.Second))).Truncate(time.Microsecond)
			f.Reject(awaitingRetry(c.Now, at, c.Proposed.Message, c.Proposed.Data), "Retrying")
		}
		return nil
	},
}

// taskRetryDelay picks the delay in seconds for the attempt that just
// failed (Python indexing: run_count 0 picks the last list element).
func taskRetryDelay(p TaskRunPolicy, runCount int) float64 {
	var base float64
	switch {
	case p.RetryDelay.IsList && len(p.RetryDelay.Seconds) > 0:
		xs := p.RetryDelay.Seconds
		i := min(runCount-1, len(xs)-1)
		if i < 0 {
			i += len(xs)
		}
		if i < 0 {
			i = 0
		}
		base = xs[i]
	case !p.RetryDelay.IsList && len(p.RetryDelay.Seconds) > 0:
		base = p.RetryDelay.Seconds[0]
	}
	if p.RetryJitterFactor != nil && *p.RetryJitterFactor > 0 && base > 0 {
		return clampedPoissonInterval(base, *p.RetryJitterFactor)
	}
	return base
}

// clampedPoissonInterval draws an exponential "inter-arrival time" around
// average, bounded above by average*(1+clamp) and below so that the mean
// stays about average (Prefect's prefect.utilities.math).
func clampedPoissonInterval(average, clamp float64) float64 {
	upperMult := 1 + clamp
	upper := average * upperMult
	lowerMult := 0.0
	if upperMult < 50 {
		lowerMult = math.Log2(max(math.Pow(2, upperMult)/(math.Pow(2, upperMult)-1), 1e-10))
	}
	lower := max(0, average*lowerMult)
	cdf := func(x float64) float64 { return 1 - math.Exp(-x/average) }
	lo, hi := cdf(lower), cdf(upper)
	u := lo + rand.Float64()*(hi-lo)
	return -math.Log(max(1-u, 1e-10)) * average
}

// UpdateFlowRunTrackerOnTasks records, once a task run is RUNNING, which
// attempt of its flow run it belongs to.
var UpdateFlowRunTrackerOnTasks = &Rule{
	Name: "UpdateFlowRunTrackerOnTasks",
	From: AllStates,
	To:   StateSet{Running},
	After: func(c *Context, f *Firing) error {
		if c.TaskRun.FlowRunID == nil {
			return nil
		}
		fr, _, err := c.EnclosingFlowRun()
		if err != nil {
			return err
		}
		if fr == nil {
			return fmt.Errorf("unable to read flow run associated with task run %s, this flow run might have been deleted: %w", c.TaskRun.ID, ErrFlowRunNotFound)
		}
		c.TaskRun.FlowRunRunCount = fr.RunCount
		return nil
	},
}

// CopyTaskParametersID carries task_parameters_id of a background task
// from SCHEDULED to PENDING to RUNNING unless the new state has its own.
var CopyTaskParametersID = &Rule{
	Name: "CopyTaskParametersID",
	From: StateSet{Scheduled, Pending},
	To:   StateSet{Pending, Running},
	Before: func(c *Context, f *Firing) error {
		if c.Initial == nil || c.Proposed == nil {
			return nil
		}
		if c.Proposed.StateDetails.TaskParametersID == nil {
			c.Proposed.StateDetails.TaskParametersID = clonePtr(c.Initial.StateDetails.TaskParametersID)
		}
		return nil
	},
}

// EnqueueScheduledTasks hands deferred task runs that became SCHEDULED to
// the background task queue.
var EnqueueScheduledTasks = &Rule{
	Name: "EnqueueScheduledTasks",
	From: AllStates,
	To:   StateSet{Scheduled},
	After: func(c *Context, f *Firing) error {
		if c.Validated == nil {
			return nil
		}
		if d := c.Validated.StateDetails.Deferred; d == nil || !*d {
			return nil
		}
		return c.Env.EnqueueBackgroundTaskRun(c.ctx, c.TaskRun, c.Validated.Name == "AwaitingRetry")
	},
}
