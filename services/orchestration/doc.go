// Package orchestration is Prefect's state orchestration engine for flow
// and task runs: state types, the rules that accept, reject, delay or abort
// a proposed state, the policies that order them, and the bookkeeping
// transforms that keep a run's columns in step with its state.
//
// It does no I/O. The storage layer locks the run, reads its current state,
// calls OrchestrateFlowRun or OrchestrateTaskRun with an Env bound to the
// same transaction, then writes Result.NewState (if any) and the mutated
// run, and answers set_state with Result.Status, Result.Details and
// Result.State (HTTP code from StatusCode).
//
// Rules are data (Rule: From/To state sets and Before/After/Cleanup hooks)
// with the life cycle of Prefect's BaseOrchestrationRule, including its
// invalidation semantics: a rule whose transition was changed by an earlier
// rule does not fire, and a rule whose transition is changed by a later one
// "fizzles" and runs Cleanup instead of After.
package orchestration
