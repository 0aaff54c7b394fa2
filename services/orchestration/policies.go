package orchestration

// Policies in Prefect's priority order (core_policy.py, global_policy.py).
// A policy's rules fire in this order on entry and in reverse on exit.

// CoreFlowPolicy governs flow run set_state.
var CoreFlowPolicy = Policy{Name: "CoreFlowPolicy", Rules: []*Rule{
	PreserveDeploymentConcurrencyLeaseID,
	PreventDuplicateTransitions,
	HandleFlowTerminalStateTransitions,
	EnforceCancellingToCancelledTransition,
	BypassCancellingFlowRunsWithNoInfra,
	PreventPendingTransitions,
	ValidateDeploymentConcurrencyAtRunning,
	SecureFlowConcurrencySlots,
	RemoveDeploymentConcurrencyLeaseForOldClientVersions,
	EnsureOnlyScheduledFlowsMarkedLate,
	HandlePausingFlows,
	HandleResumingPausedFlows,
	CopyScheduledTime,
	WaitForScheduledTime,
	RetryFailedFlows,
	InstrumentFlowRunStateTransitions,
	ReleaseFlowConcurrencySlots,
}}

// MinimalFlowPolicy governs forced flow run transitions.
var MinimalFlowPolicy = Policy{Name: "MinimalFlowPolicy", Rules: []*Rule{
	PreserveDeploymentConcurrencyLeaseID,
	PreventResultDataLoss,
	BypassCancellingFlowRunsWithNoInfra, // cancelling scheduled or suspended runs from the UI
	InstrumentFlowRunStateTransitions,
	ReleaseFlowConcurrencySlots,
}}

// MarkLateRunsPolicy governs the late-runs loop marking SCHEDULED runs Late.
var MarkLateRunsPolicy = Policy{Name: "MarkLateRunsPolicy", Rules: []*Rule{
	EnsureOnlyScheduledFlowsMarkedLate,
	EnforceDeploymentConcurrencyOnLate,
	InstrumentFlowRunStateTransitions,
}}

// CoreTaskPolicy governs task run set_state.
var CoreTaskPolicy = Policy{Name: "CoreTaskPolicy", Rules: []*Rule{
	CacheRetrieval,
	HandleTaskTerminalStateTransitions,
	PreventRunningTasksFromStoppedFlows,
	SecureTaskConcurrencySlots, // after the cache: cached runs need no slot
	CopyScheduledTime,
	WaitForScheduledTime,
	RetryFailedTasks,
	RenameReruns,
	UpdateFlowRunTrackerOnTasks,
	CacheInsertion,
	ReleaseTaskConcurrencySlots,
}}

// ClientSideTaskOrchestrationPolicy is CoreTaskPolicy without tag slots,
// for clients that orchestrate task runs themselves.
var ClientSideTaskOrchestrationPolicy = Policy{Name: "ClientSideTaskOrchestrationPolicy", Rules: []*Rule{
	CacheRetrieval,
	HandleTaskTerminalStateTransitions,
	PreventRunningTasksFromStoppedFlows,
	CopyScheduledTime,
	WaitForScheduledTime,
	RetryFailedTasks,
	RenameReruns,
	UpdateFlowRunTrackerOnTasks,
	CacheInsertion,
	ReleaseTaskConcurrencySlots,
}}

// BackgroundTaskPolicy governs deferred (.delay()) task runs, whatever
// force says.
var BackgroundTaskPolicy = Policy{Name: "BackgroundTaskPolicy", Rules: []*Rule{
	PreventPendingTransitions,
	CacheRetrieval,
	HandleTaskTerminalStateTransitions,
	CopyScheduledTime,
	CopyTaskParametersID,
	WaitForScheduledTime,
	RetryFailedTasks,
	RenameReruns,
	UpdateFlowRunTrackerOnTasks,
	CacheInsertion,
	ReleaseTaskConcurrencySlots,
	EnqueueScheduledTasks,
}}

// MinimalTaskPolicy governs forced task run transitions.
var MinimalTaskPolicy = Policy{Name: "MinimalTaskPolicy", Rules: []*Rule{
	ReleaseTaskConcurrencySlots,
}}

// commonGlobalTransforms run on every transition of either kind.
var commonGlobalTransforms = []*Rule{
	SetRunStateType,
	SetRunStateName,
	SetRunStateTimestamp,
	SetStartTime,
	SetEndTime,
	IncrementRunTime,
	SetExpectedStartTime,
	SetNextScheduledStartTime,
	UpdateStateDetails,
}

// GlobalFlowPolicy runs after the flow policy on every flow transition.
var GlobalFlowPolicy = Policy{Name: "GlobalFlowPolicy", Rules: concatRules(
	[]*Rule{EnsureFlowRunStateTimestampIsUnique},
	commonGlobalTransforms,
	[]*Rule{UpdateSubflowParentTask, UpdateSubflowStateDetails, IncrementFlowRunCount, RemoveResumingIndicator},
)}

// GlobalTaskPolicy runs after the task policy on every task transition.
var GlobalTaskPolicy = Policy{Name: "GlobalTaskPolicy", Rules: concatRules(
	commonGlobalTransforms,
	[]*Rule{IncrementTaskRunCount},
)}

func concatRules(lists ...[]*Rule) []*Rule {
	var out []*Rule
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
