package orchestration

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Env is what the rules need from the database. The storage layer
// implements it on the transaction that locked the run, so every read sees
// and every write joins the same transaction as the state it is about to
// write. The engine calls these methods while deciding; the new state row
// itself is inserted by the caller after Orchestrate returns, so no method
// may rely on that row existing yet.
type Env interface {
	// ReadFlowRun returns a flow run and its current state (nil when it has
	// none). A missing flow run is (nil, nil, nil), not an error. Task rules
	// use it for the task's enclosing flow run.
	ReadFlowRun(ctx context.Context, id uuid.UUID) (*FlowRun, *State, error)

	// ReadCachedState returns the task run state most recently cached under
	// key whose cache_expiration is NULL or after now, with its result data;
	// nil when there is none. (Prefect: task_run_state_cache joined to
	// task_run_state, newest cache row first.)
	ReadCachedState(ctx context.Context, key string, now time.Time) (*State, error)

	// InsertStateCache adds a task_run_state_cache row pointing at the task
	// run state stateID (the state being written by this transition).
	InsertStateCache(ctx context.Context, key string, expiration *time.Time, stateID uuid.UUID) error

	// FlowRunStateTimestampExists reports whether the flow run already has a
	// state with exactly this timestamp (flow_run_state has a unique index
	// on flow_run_id, timestamp).
	FlowRunStateTimestampExists(ctx context.Context, flowRunID uuid.UUID, ts time.Time) (bool, error)

	// DeleteFlowRunInput deletes the flow_run_input row (flowRunID, key) if
	// there is one; a pause that has not fired yet must not see input left
	// by an earlier attempt.
	DeleteFlowRunInput(ctx context.Context, flowRunID uuid.UUID, key string) error

	// SetParentTaskRunState forces state onto a subflow's parent task run:
	// the implementation runs OrchestrateTaskRun with Options{Force: true}
	// on that task run in this transaction and writes the outcome. A missing
	// task run is an error, as in Prefect.
	SetParentTaskRunState(ctx context.Context, taskRunID uuid.UUID, state *State) error

	// FlowRunStateChanged reports an accepted flow run state change so the
	// prefect.flow-run.<Name> event can be emitted. Implementations should
	// buffer the event and publish it only after the transaction commits.
	FlowRunStateChanged(ctx context.Context, run *FlowRun, initial *State, validated *State) error

	// EnqueueBackgroundTaskRun hands a deferred (background) task run that
	// just entered SCHEDULED to the task queue that serves
	// /task_runs/subscriptions/scheduled; retry is true for AwaitingRetry.
	// Like events, implementations should deliver after commit.
	EnqueueBackgroundTaskRun(ctx context.Context, run *TaskRun, retry bool) error
}

// Limiter is the concurrency-limit side of orchestration: deployment
// concurrency (leases on the deployment's global concurrency limit) and
// task tag limits (v1 and v2 "tag:<name>" limits). Options.Limiter may be
// nil: the concurrency rules then behave as when no limit is configured.
type Limiter interface {
	// AcquireDeploymentSlot takes one slot of the flow run's deployment
	// concurrency limit and creates a lease for it (TTL: the deployment's
	// grace_period_seconds, else the server's initial lease duration).
	AcquireDeploymentSlot(ctx context.Context, run *FlowRun) (DeploymentSlot, error)

	// ReleaseDeploymentSlot gives back the flow run's deployment slot: with
	// a lease id, the lease's slots are decremented and the lease revoked
	// (falling back to the deployment's limit when the lease is gone);
	// without one, one slot of the deployment's limit is decremented, if the
	// deployment has a limit.
	ReleaseDeploymentSlot(ctx context.Context, run *FlowRun, leaseID *uuid.UUID) error

	// RenewDeploymentLease renews a PENDING run's lease as it starts
	// RUNNING, re-acquiring a slot when the lease has been reaped.
	RenewDeploymentLease(ctx context.Context, run *FlowRun, leaseID uuid.UUID) (LeaseRenewal, error)

	// RevokeDeploymentLease drops a lease without touching slots (old
	// clients cannot renew leases, so theirs are removed at RUNNING).
	RevokeDeploymentLease(ctx context.Context, leaseID uuid.UUID) error

	// DeploymentFullWithCancelNew reports whether the flow run's deployment
	// uses the CANCEL_NEW collision strategy and its limit is fully
	// occupied.
	DeploymentFullWithCancelNew(ctx context.Context, run *FlowRun) (bool, error)

	// AcquireTaskSlots secures one slot on every concurrency limit of the
	// task run's tags. On Wait or Abort nothing must stay held.
	AcquireTaskSlots(ctx context.Context, run *TaskRun) (TaskSlots, error)

	// ReleaseTaskSlots frees every tag slot and lease the task run holds.
	ReleaseTaskSlots(ctx context.Context, run *TaskRun) error
}

// DeploymentSlotOutcome says what AcquireDeploymentSlot found.
type DeploymentSlotOutcome int

// Outcomes of AcquireDeploymentSlot.
const (
	// SlotNoLimit: the deployment has no concurrency limit; nothing held.
	SlotNoLimit DeploymentSlotOutcome = iota
	// SlotAcquired: a slot is held under DeploymentSlot.LeaseID.
	SlotAcquired
	// SlotFull: the limit is fully occupied; DeploymentSlot.Strategy says
	// what to do with the run.
	SlotFull
	// SlotLimitZero: the limit is 0 and would never admit the run.
	SlotLimitZero
	// SlotDeploymentMissing: the run's deployment does not exist.
	SlotDeploymentMissing
)

// CollisionStrategy is a deployment's concurrency_options.collision_strategy.
type CollisionStrategy string

// Collision strategies; an empty strategy means ENQUEUE.
const (
	StrategyEnqueue   CollisionStrategy = "ENQUEUE"
	StrategyCancelNew CollisionStrategy = "CANCEL_NEW"
)

// DeploymentSlot is the answer of AcquireDeploymentSlot.
type DeploymentSlot struct {
	Outcome  DeploymentSlotOutcome
	LeaseID  uuid.UUID         // set when Outcome is SlotAcquired
	Strategy CollisionStrategy // set when Outcome is SlotFull
}

// LeaseRenewalOutcome says what RenewDeploymentLease did.
type LeaseRenewalOutcome int

// Outcomes of RenewDeploymentLease.
const (
	// LeaseNotApplicable: no deployment or no deployment limit; nothing to do.
	LeaseNotApplicable LeaseRenewalOutcome = iota
	// LeaseRenewed: the existing lease was extended.
	LeaseRenewed
	// LeaseReacquired: the lease was gone, a new slot and lease were taken
	// (LeaseRenewal.LeaseID).
	LeaseReacquired
	// LeaseLost: the lease was gone and no slot is free.
	LeaseLost
)

// LeaseRenewal is the answer of RenewDeploymentLease.
type LeaseRenewal struct {
	Outcome LeaseRenewalOutcome
	LeaseID uuid.UUID // the new lease when Outcome is LeaseReacquired
}

// TaskSlotsOutcome says what AcquireTaskSlots did.
type TaskSlotsOutcome int

// Outcomes of AcquireTaskSlots.
const (
	// TaskSlotsAcquired: slots are held (or no tag has a limit).
	TaskSlotsAcquired TaskSlotsOutcome = iota
	// TaskSlotsWait: a limit is full; retry after DelaySeconds.
	TaskSlotsWait
	// TaskSlotsAbort: a limit is 0 and would deadlock.
	TaskSlotsAbort
)

// TaskSlots is the answer of AcquireTaskSlots; Reason is the text the
// client sees (Prefect's wording, e.g. `Concurrency limit for the x tag has
// been reached`).
type TaskSlots struct {
	Outcome      TaskSlotsOutcome
	DelaySeconds int
	Reason       string
	// Held is true when slots were actually taken, so a transition that
	// later fizzles must give them back.
	Held bool
}
