package orchestration

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPolicyOrder pins every policy to Prefect 3.9.1's priority lists.
func TestPolicyOrder(t *testing.T) {
	common := "SetRunStateType SetRunStateName SetRunStateTimestamp SetStartTime SetEndTime IncrementRunTime SetExpectedStartTime SetNextScheduledStartTime UpdateStateDetails"
	want := map[*Policy]string{
		&CoreFlowPolicy: "PreserveDeploymentConcurrencyLeaseId PreventDuplicateTransitions HandleFlowTerminalStateTransitions " +
			"EnforceCancellingToCancelledTransition BypassCancellingFlowRunsWithNoInfra PreventPendingTransitions " +
			"ValidateDeploymentConcurrencyAtRunning SecureFlowConcurrencySlots RemoveDeploymentConcurrencyLeaseForOldClientVersions " +
			"EnsureOnlyScheduledFlowsMarkedLate HandlePausingFlows HandleResumingPausedFlows CopyScheduledTime WaitForScheduledTime " +
			"RetryFailedFlows InstrumentFlowRunStateTransitions ReleaseFlowConcurrencySlots",
		&MinimalFlowPolicy: "PreserveDeploymentConcurrencyLeaseId PreventResultDataLoss BypassCancellingFlowRunsWithNoInfra " +
			"InstrumentFlowRunStateTransitions ReleaseFlowConcurrencySlots",
		&MarkLateRunsPolicy: "EnsureOnlyScheduledFlowsMarkedLate EnforceDeploymentConcurrencyOnLate InstrumentFlowRunStateTransitions",
		&CoreTaskPolicy: "CacheRetrieval HandleTaskTerminalStateTransitions PreventRunningTasksFromStoppedFlows SecureTaskConcurrencySlots " +
			"CopyScheduledTime WaitForScheduledTime RetryFailedTasks RenameReruns UpdateFlowRunTrackerOnTasks CacheInsertion ReleaseTaskConcurrencySlots",
		&ClientSideTaskOrchestrationPolicy: "CacheRetrieval HandleTaskTerminalStateTransitions PreventRunningTasksFromStoppedFlows " +
			"CopyScheduledTime WaitForScheduledTime RetryFailedTasks RenameReruns UpdateFlowRunTrackerOnTasks CacheInsertion ReleaseTaskConcurrencySlots",
		&BackgroundTaskPolicy: "PreventPendingTransitions CacheRetrieval HandleTaskTerminalStateTransitions CopyScheduledTime CopyTaskParametersID " +
			"WaitForScheduledTime RetryFailedTasks RenameReruns UpdateFlowRunTrackerOnTasks CacheInsertion ReleaseTaskConcurrencySlots EnqueueScheduledTasks",
		&MinimalTaskPolicy: "ReleaseTaskConcurrencySlots",
		&GlobalFlowPolicy: "EnsureFlowRunStateTimestampIsUnique " + common +
			" UpdateSubflowParentTask UpdateSubflowStateDetails IncrementFlowRunCount RemoveResumingIndicator",
		&GlobalTaskPolicy: common + " IncrementTaskRunCount",
	}
	for p, names := range want {
		var got []string
		for _, r := range p.Rules {
			got = append(got, r.Name)
		}
		if !slices.Equal(got, strings.Fields(names)) {
			t.Errorf("%s:\n got %v\nwant %v", p.Name, got, strings.Fields(names))
		}
	}
}

func TestDefaults(t *testing.T) {
	// zero Now means the wall clock; zero limits mean Prefect's defaults
	before := time.Now().Add(-time.Second)
	res := ok(t)(OrchestrateTaskRun(context.Background(), newFakeEnv(), newTaskRun(), nil, State{Type: Pending}, Options{}))
	if res.NewState.Timestamp.Before(before) || res.NewState.Name != "Pending" {
		t.Errorf("state = %+v", res.NewState)
	}
	var seen *Context
	probe := &Rule{Name: "probe", Universal: true, Before: func(c *Context, f *Firing) error { seen = c; return nil }}
	ok(t)(runTask(t, newFakeEnv(), newTaskRun(), nil, stp(Pending), Options{}, probe))
	if seen.Opts.MaxCacheKeyLength != 2000 || seen.Opts.DeploymentConcurrencySlotWait != 30*time.Second || seen.Ctx() == nil {
		t.Errorf("options = %+v", seen.Opts)
	}
}
