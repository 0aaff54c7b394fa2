package orchestration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// SetStateStatus is the status of a set_state answer.
type SetStateStatus string

// The four answers Prefect gives to a proposed transition.
const (
	Accept SetStateStatus = "ACCEPT"
	Reject SetStateStatus = "REJECT"
	Abort  SetStateStatus = "ABORT"
	Wait   SetStateStatus = "WAIT"
)

// Details is the "details" object of a set_state answer. Its JSON form is
// Prefect's: {"type":"accept_details"}, {"type":"reject_details","reason":..},
// {"type":"abort_details","reason":..} or
// {"type":"wait_details","delay_seconds":..,"reason":..}.
type Details struct {
	Status       SetStateStatus
	Reason       *string
	DelaySeconds int
}

// MarshalJSON writes the details object for the status.
func (d Details) MarshalJSON() ([]byte, error) {
	switch d.Status {
	case Reject, Abort:
		typ := "reject_details"
		if d.Status == Abort {
			typ = "abort_details"
		}
		return json.Marshal(struct {
			Type   string  `json:"type"`
			Reason *string `json:"reason"`
		}{typ, d.Reason})
	case Wait:
		return json.Marshal(struct {
			Type         string  `json:"type"`
			DelaySeconds int     `json:"delay_seconds"`
			Reason       *string `json:"reason"`
		}{"wait_details", d.DelaySeconds, d.Reason})
	default:
		return []byte(`{"type":"accept_details"}`), nil
	}
}

// Options are the parameters of one orchestration.
type Options struct {
	// Now is "the time now" for every rule (retry times, scheduled-time
	// waits, pause timeouts, cache expiry) and the timestamp of states the
	// rules create. Zero means time.Now(). Callers pass the request's start
	// time, which StatusCode compares against.
	Now time.Time
	// Force selects the minimal policies (set_state's force=true).
	Force bool
	// Policy overrides the default policy (CoreFlowPolicy/CoreTaskPolicy)
	// when Force is false, e.g. MarkLateRunsPolicy for the late-runs loop.
	// Deferred task states always use BackgroundTaskPolicy, as in Prefect.
	Policy *Policy
	// APIVersion is the request's X-PREFECT-API-VERSION ("" = current):
	// pause bookkeeping only exists from API 0.8.4 on.
	APIVersion string
	// ClientVersion is the Prefect version of the client ("" = unknown):
	// deployment concurrency leases are only validated for clients that
	// renew them (3.4.11 and later).
	ClientVersion string
	// Limiter enforces deployment and tag concurrency limits; nil behaves
	// as a server where no limit is configured.
	Limiter Limiter
	// MaxCacheKeyLength is PREFECT_SERVER_TASKS_MAX_CACHE_KEY_LENGTH
	// (0 = 2000).
	MaxCacheKeyLength int
	// DeploymentConcurrencySlotWait is how far AwaitingConcurrencySlot
	// reschedules a run (PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS,
	// 0 = 30s).
	DeploymentConcurrencySlotWait time.Duration
}

// Result is the outcome of one orchestration.
type Result struct {
	Status  SetStateStatus
	Details Details
	// State is the state to answer with: the new state when one is
	// written, otherwise the run's current state (nil if it has none).
	State *State
	// NewState is the state row the caller must insert (and point the run
	// at); nil when the transition writes nothing. When not nil it is the
	// same value as State.
	NewState *State
}

// StatusCode is set_state's HTTP status: 201 when the answered state is new
// (its timestamp is not before the request started), otherwise 200.
func StatusCode(res Result, requestStart time.Time) int {
	if res.State != nil && !res.State.Timestamp.Before(requestStart.Truncate(time.Microsecond)) {
		return http.StatusCreated
	}
	return http.StatusOK
}

// ErrFlowRunNotFound is returned when a task run's flow run vanished while
// the task run was being orchestrated.
var ErrFlowRunNotFound = errors.New("flow run not found")

// errRejectWithoutState mirrors Prefect's OrchestrationError: a run that
// has no state cannot be rejected back to "its current state".
var errRejectWithoutState = errors.New("the current run has no state; this transition cannot be rejected without providing a new state")

// Hook is a rule's before, after or cleanup hook.
type Hook func(c *Context, f *Firing) error

// Rule is one piece of orchestration logic, declared as data. A rule fires
// only for transitions whose initial type is in From and proposed type is
// in To (NoState stands for "no state"). Universal rules (Prefect's
// BaseUniversalTransform) ignore From/To and fire on every transition.
//
// Ordinary rules follow Prefect's BaseOrchestrationRule life cycle: Before
// runs on entry unless the transition no longer matches the one the rule
// was compiled for (a rule earlier in the policy changed the proposed
// type); after the state is validated, After runs if the rule still
// governs the same transition, and Cleanup runs instead if a later rule
// changed the transition under it ("fizzled"), so side effects of Before
// can be undone. A rule that itself rejects, delays or aborts does not
// fizzle.
type Rule struct {
	Name      string
	From, To  StateSet
	Universal bool
	Before    Hook
	After     Hook
	Cleanup   Hook
}

// Policy is an ordered list of rules.
type Policy struct {
	Name  string
	Rules []*Rule
}

// compile returns the rules of p that govern the intended transition.
func (p *Policy) compile(from, to StateType) []*Rule {
	out := make([]*Rule, 0, len(p.Rules))
	for _, r := range p.Rules {
		if r.Universal || (r.From.Has(from) && r.To.Has(to)) {
			out = append(out, r)
		}
	}
	return out
}

// Context is the transition being orchestrated. Rules read and change it
// through their hooks.
type Context struct {
	ctx context.Context
	// Env reaches the database (same transaction as the caller).
	Env Env
	// Opts are the orchestration parameters.
	Opts Options
	// Now is Opts.Now, truncated to microseconds.
	Now time.Time

	// Run is the run's shared columns; exactly one of FlowRun and TaskRun
	// is set and Run points into it. Rules mutate the run in place.
	Run     *RunCore
	FlowRun *FlowRun
	TaskRun *TaskRun

	Initial   *State
	Proposed  *State
	Validated *State

	Status  SetStateStatus
	Details Details

	err        error // first error that aborts orchestration (Prefect's orchestration_error)
	flowRun    *FlowRun
	flowState  *State
	flowLoaded bool
}

// Ctx is the request context, for Env and Limiter calls.
func (c *Context) Ctx() context.Context { return c.ctx }

// EnclosingFlowRun returns a task run's flow run and its state (read once
// per orchestration); nil for flow runs, task runs without a flow run, and
// flow runs that do not exist.
func (c *Context) EnclosingFlowRun() (*FlowRun, *State, error) {
	if c.TaskRun == nil || c.TaskRun.FlowRunID == nil {
		return nil, nil, nil
	}
	if !c.flowLoaded {
		fr, st, err := c.Env.ReadFlowRun(c.ctx, *c.TaskRun.FlowRunID)
		if err != nil {
			return nil, nil, fmt.Errorf("read flow run %s: %w", *c.TaskRun.FlowRunID, err)
		}
		c.flowRun, c.flowState, c.flowLoaded = fr, st, true
	}
	return c.flowRun, c.flowState, nil
}

// apiAtLeast reports whether the request's API version is at least v; an
// unknown version counts as current.
func (c *Context) apiAtLeast(v string) bool {
	return c.Opts.APIVersion == "" || compareVersions(c.Opts.APIVersion, v) >= 0
}

// Firing is one rule applied to one transition. Its methods are how a rule
// changes the outcome; Memo keeps whatever Before must hand to After or
// Cleanup.
type Firing struct {
	rule     *Rule
	c        *Context
	from, to StateType
	// invalidOnEntry is Prefect's _invalid_on_entry: nil until decided.
	invalidOnEntry *bool
	err            error
	Memo           any
}

// Reject replaces the proposed state with state; nil keeps the run's
// current state (nothing is written).
func (f *Firing) Reject(state *State, reason string) {
	if state == nil {
		if f.from == NoState {
			f.err = errRejectWithoutState
			return
		}
		f.to = NoState
		f.c.Proposed = nil
	} else {
		f.to = state.Type
		f.c.Proposed = state
	}
	f.c.Status = Reject
	f.c.Details = Details{Status: Reject, Reason: &reason}
}

// Delay tells the client to retry after delaySeconds; nothing is written.
func (f *Firing) Delay(delaySeconds int, reason string) {
	f.to = NoState
	f.c.Proposed = nil
	f.c.Status = Wait
	f.c.Details = Details{Status: Wait, Reason: &reason, DelaySeconds: delaySeconds}
}

// Abort stops the transition; nothing is written and the client gives up.
func (f *Firing) Abort(reason string) {
	f.to = NoState
	f.c.Proposed = nil
	f.c.Status = Abort
	f.c.Details = Details{Status: Abort, Reason: &reason}
}

// Rename changes the proposed state's name without affecting other rules.
func (f *Firing) Rename(name string) {
	if f.c.Proposed != nil {
		f.c.Proposed.Name = name
	}
}

// invalidTransition: the context no longer holds the transition this
// firing governs (another rule changed it).
func (f *Firing) invalidTransition() bool {
	return f.from != TypeOf(f.c.Initial) || f.to != TypeOf(f.c.Proposed)
}

// invalid is Prefect's BaseOrchestrationRule.invalid: a firing whose
// current target left the rule's To set (it rejected or aborted into
// another type) is invalid for good; otherwise the answer given on entry
// sticks, so a rule valid on entry is either still valid or fizzled on exit.
func (f *Firing) invalid() bool {
	if !f.rule.From.Has(f.from) || !f.rule.To.Has(f.to) {
		f.invalidOnEntry = ptr(true)
	}
	if f.invalidOnEntry == nil {
		f.invalidOnEntry = ptr(f.invalidTransition())
	}
	return *f.invalidOnEntry
}

// OrchestrateFlowRun decides the flow run transition initial -> proposed.
// initial is the run's current state with its result data (nil if none);
// proposed goes through NormalizeState, so a state from a client should
// leave ID and Timestamp zero (they become a new uuid7 and opts.Now, as in
// Prefect, which keeps StatusCode's 201 test right). run is updated in place (state columns, run count, times, empirical
// policy): persist it together with Result.NewState when err is nil. An
// error means the transaction must be rolled back.
func OrchestrateFlowRun(ctx context.Context, env Env, run *FlowRun, initial *State, proposed State, opts Options) (Result, error) {
	policy := &CoreFlowPolicy
	if opts.Force {
		policy = &MinimalFlowPolicy
	} else if opts.Policy != nil {
		policy = opts.Policy
	}
	c := newContext(ctx, env, opts, initial, proposed)
	c.FlowRun, c.Run = run, &run.RunCore
	return c.orchestrate(policy, &GlobalFlowPolicy)
}

// OrchestrateTaskRun decides the task run transition initial -> proposed;
// see OrchestrateFlowRun.
func OrchestrateTaskRun(ctx context.Context, env Env, run *TaskRun, initial *State, proposed State, opts Options) (Result, error) {
	policy := &CoreTaskPolicy
	switch {
	case proposed.StateDetails.Deferred != nil && *proposed.StateDetails.Deferred:
		policy = &BackgroundTaskPolicy
	case opts.Force:
		policy = &MinimalTaskPolicy
	case opts.Policy != nil:
		policy = opts.Policy
	}
	c := newContext(ctx, env, opts, initial, proposed)
	c.TaskRun, c.Run = run, &run.RunCore
	return c.orchestrate(policy, &GlobalTaskPolicy)
}

func newContext(ctx context.Context, env Env, opts Options, initial *State, proposed State) *Context {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.MaxCacheKeyLength <= 0 {
		opts.MaxCacheKeyLength = 2000
	}
	if opts.DeploymentConcurrencySlotWait <= 0 {
		opts.DeploymentConcurrencySlotWait = 30 * time.Second
	}
	now := opts.Now.UTC().Truncate(time.Microsecond)
	p := proposed.Clone()
	NormalizeState(p, now)
	return &Context{
		ctx:      ctx,
		Env:      env,
		Opts:     opts,
		Now:      now,
		Initial:  initial.Clone(),
		Proposed: p,
		Status:   Accept,
		Details:  Details{Status: Accept},
	}
}

// orchestrate enters every rule in order, validates the proposed state,
// then exits the rules in reverse order: Prefect's nested context managers.
func (c *Context) orchestrate(policy, global *Policy) (Result, error) {
	from, to := TypeOf(c.Initial), TypeOf(c.Proposed)
	rules := append(policy.compile(from, to), global.compile(from, to)...)
	entered := make([]*Firing, 0, len(rules))
	universalFailed := false

	for _, r := range rules {
		f := &Firing{rule: r, c: c, from: from, to: to}
		entered = append(entered, f)
		if r.Universal {
			// Prefect does not guard transforms: their errors end the
			// orchestration at once.
			if r.Before != nil {
				if err := r.Before(c, f); err != nil {
					c.fail(fmt.Errorf("%s: %w", r.Name, err))
					universalFailed = true
					break
				}
			}
			continue
		}
		if f.invalid() || r.Before == nil {
			continue
		}
		err := r.Before(c, f)
		if err == nil {
			err = f.err
		}
		if err != nil {
			reason := fmt.Sprintf("Aborting orchestration due to error in %s: %v", r.Name, err)
			c.Proposed = nil
			c.Status = Abort
			c.Details = Details{Status: Abort, Reason: &reason}
			c.fail(fmt.Errorf("%s: %w", r.Name, err))
		}
	}

	var newState *State
	if !universalFailed {
		if c.Proposed != nil {
			c.Validated = c.Proposed.Clone()
			newState = c.Validated
			c.Run.StateID = ptr(c.Validated.ID)
		} else {
			c.Validated = c.Initial.Clone()
		}
	}

	var exitErr error
	for i := len(entered) - 1; i >= 0; i-- {
		f := entered[i]
		var hook Hook
		switch {
		case f.rule.Universal:
			if c.err == nil {
				hook = f.rule.After
			}
		case f.invalid():
		case f.invalidTransition():
			// valid on entry, changed since: the rule fizzled
			hook = f.rule.Cleanup
		default:
			hook = f.rule.After
		}
		if hook == nil {
			continue
		}
		if err := hook(c, f); err != nil && exitErr == nil {
			exitErr = fmt.Errorf("%s: %w", f.rule.Name, err)
		}
	}

	if c.err != nil {
		return Result{}, c.err
	}
	if exitErr != nil {
		return Result{}, exitErr
	}
	return Result{Status: c.Status, Details: c.Details, State: c.Validated, NewState: newState}, nil
}

func (c *Context) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}
