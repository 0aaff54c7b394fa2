package orchestration

import (
	"fmt"
	"time"
)

// Bookkeeping transforms (Prefect's global_policy.py). They are universal:
// they fire on every transition after the policy's rules and keep the run's
// denormalised columns in step with the state being written. All of them do
// nothing when the transition writes no state.

// SetRunStateType records the new state's type on the run.
var SetRunStateType = &Rule{Name: "SetRunStateType", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed != nil {
			c.Run.StateType = c.Proposed.Type
		}
		return nil
	}}

// SetRunStateName records the new state's name on the run.
var SetRunStateName = &Rule{Name: "SetRunStateName", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed != nil {
			c.Run.StateName = c.Proposed.Name
		}
		return nil
	}}

// SetRunStateTimestamp records the new state's timestamp on the run.
var SetRunStateTimestamp = &Rule{Name: "SetRunStateTimestamp", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed != nil {
			c.Run.StateTimestamp = ptr(c.Proposed.Timestamp)
		}
		return nil
	}}

// SetStartTime records when the run first entered RUNNING.
var SetStartTime = &Rule{Name: "SetStartTime", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed != nil && c.Proposed.Type == Running && c.Run.StartTime == nil {
			c.Run.StartTime = ptr(c.Proposed.Timestamp)
		}
		return nil
	}}

// SetEndTime records when the run entered a terminal state, clears it when
// a (forced) transition leaves one, and sets a missing start time for runs
// that end before they ever ran.
var SetEndTime = &Rule{Name: "SetEndTime", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed == nil {
			return nil
		}
		final := c.Proposed.Type.IsTerminal()
		if c.Initial != nil && c.Initial.Type.IsTerminal() && !final {
			c.Run.EndTime = nil
		}
		if final && c.Run.EndTime == nil {
			if c.Run.StartTime == nil {
				c.Run.StartTime = ptr(c.Proposed.Timestamp)
			}
			c.Run.EndTime = ptr(c.Proposed.Timestamp)
		}
		return nil
	}}

// IncrementRunTime adds the time spent in a RUNNING state being left.
var IncrementRunTime = &Rule{Name: "IncrementRunTime", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed != nil && c.Initial != nil && c.Initial.Type == Running {
			c.Run.TotalRunTime += c.Proposed.Timestamp.Sub(c.Initial.Timestamp)
		}
		return nil
	}}

// SetExpectedStartTime sets expected_start_time once: the scheduled time
// of a SCHEDULED state, else the state's timestamp.
var SetExpectedStartTime = &Rule{Name: "SetExpectedStartTime", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed == nil || c.Run.ExpectedStartTime != nil {
			return nil
		}
		if c.Proposed.Type == Scheduled {
			c.Run.ExpectedStartTime = clonePtr(c.Proposed.StateDetails.ScheduledTime)
		} else {
			c.Run.ExpectedStartTime = ptr(c.Proposed.Timestamp)
		}
		return nil
	}}

// SetNextScheduledStartTime tracks the scheduled time while the run is
// SCHEDULED and clears it when the run leaves SCHEDULED.
var SetNextScheduledStartTime = &Rule{Name: "SetNextScheduledStartTime", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed == nil {
			return nil
		}
		if c.Initial != nil && c.Initial.Type == Scheduled {
			c.Run.NextScheduledStartTime = nil
		}
		if c.Proposed.Type == Scheduled {
			c.Run.NextScheduledStartTime = clonePtr(c.Proposed.StateDetails.ScheduledTime)
		}
		return nil
	}}

// UpdateStateDetails points the new state at its run: flow_run_id for flow
// runs; flow_run_id and task_run_id for task runs.
var UpdateStateDetails = &Rule{Name: "UpdateStateDetails", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed == nil {
			return nil
		}
		if c.FlowRun != nil {
			c.Proposed.StateDetails.FlowRunID = ptr(c.FlowRun.ID)
		} else {
			c.Proposed.StateDetails.FlowRunID = clonePtr(c.TaskRun.FlowRunID)
			c.Proposed.StateDetails.TaskRunID = ptr(c.TaskRun.ID)
		}
		return nil
	}}

// EnsureFlowRunStateTimestampIsUnique moves the new state's timestamp
// forward one microsecond at a time past any state of the same flow run
// with the same timestamp (unique index on flow_run_id, timestamp). It runs
// before the transforms that copy the timestamp onto the run.
var EnsureFlowRunStateTimestampIsUnique = &Rule{Name: "EnsureFlowRunStateTimestampIsUnique", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed == nil {
			return nil
		}
		ts := c.Proposed.Timestamp
		for {
			taken, err := c.Env.FlowRunStateTimestampExists(c.ctx, c.FlowRun.ID, ts)
			if err != nil {
				return err
			}
			if !taken {
				break
			}
			ts = ts.Add(time.Microsecond)
		}
		c.Proposed.Timestamp = ts
		return nil
	}}

// UpdateSubflowStateDetails points a subflow's state at the parent task
// run that tracks it.
var UpdateSubflowStateDetails = &Rule{Name: "UpdateSubflowStateDetails", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed != nil && c.FlowRun.ParentTaskRunID != nil {
			c.Proposed.StateDetails.TaskRunID = clonePtr(c.FlowRun.ParentTaskRunID)
		}
		return nil
	}}

// UpdateSubflowParentTask mirrors every new subflow state onto the parent
// task run (forced), with child_flow_run_id pointing at the subflow.
var UpdateSubflowParentTask = &Rule{Name: "UpdateSubflowParentTask", Universal: true,
	After: func(c *Context, f *Firing) error {
		if c.Proposed == nil || c.FlowRun.ParentTaskRunID == nil || c.Validated == nil {
			return nil
		}
		s := c.Validated.FreshCopy(c.Now)
		s.StateDetails.ChildFlowRunID = ptr(c.FlowRun.ID)
		if err := c.Env.SetParentTaskRunState(c.ctx, *c.FlowRun.ParentTaskRunID, s); err != nil {
			return fmt.Errorf("set parent task run %s state: %w", *c.FlowRun.ParentTaskRunID, err)
		}
		return nil
	}}

// IncrementFlowRunCount counts entries into RUNNING, except a paused run
// resuming (same attempt).
var IncrementFlowRunCount = &Rule{Name: "IncrementFlowRunCount", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed == nil || c.Proposed.Type != Running {
			return nil
		}
		if c.apiAtLeast("0.8.4") && c.FlowRun.EmpiricalPolicy.Resuming {
			return nil
		}
		c.Run.RunCount++
		return nil
	}}

// RemoveResumingIndicator clears the resuming flag once the run is RUNNING
// again or has finished.
var RemoveResumingIndicator = &Rule{Name: "RemoveResumingIndicator", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed == nil || !c.apiAtLeast("0.8.4") {
			return nil
		}
		if (c.Proposed.Type == Running || c.Proposed.Type.IsTerminal()) && c.FlowRun.EmpiricalPolicy.Resuming {
			c.FlowRun.EmpiricalPolicy.Resuming = false
		}
		return nil
	}}

// IncrementTaskRunCount counts a task run's entries into RUNNING.
var IncrementTaskRunCount = &Rule{Name: "IncrementTaskRunCount", Universal: true,
	Before: func(c *Context, f *Firing) error {
		if c.Proposed != nil && c.Proposed.Type == Running {
			c.Run.RunCount++
		}
		return nil
	}}
