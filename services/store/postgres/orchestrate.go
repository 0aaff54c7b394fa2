package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/prefect-go/prefect-server/gen/db/pgdb"
	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/internal/rowcodec"
	"github.com/prefect-go/prefect-server/services/store/internal/runcodec"
)

// SetFlowRunState implements store.Store.
func (s *Store) SetFlowRunState(ctx context.Context, id uuid.UUID, proposed orchestration.State, opts orchestration.Options) (store.SetStateResult, error) {
	var res store.SetStateResult
	err := s.inTx(ctx, func(_ *pgdb.Queries, tx pgx.Tx) error {
		var err error
		res, err = s.applyFlowRunState(ctx, tx, id, proposed, opts)
		return err
	})
	if err != nil {
		return store.SetStateResult{}, err
	}
	return res, nil
}

// ResumeFlowRun implements store.Store.
func (s *Store) ResumeFlowRun(ctx context.Context, id uuid.UUID, proposed orchestration.State, opts orchestration.Options, input *store.FlowRunInput) (store.SetStateResult, error) {
	if input != nil {
		for _, t := range []string{input.Key, input.Value} {
			if err := checkText(t); err != nil {
				return store.SetStateResult{}, err
			}
		}
	}
	var res store.SetStateResult
	err := s.inTx(ctx, func(q *pgdb.Queries, tx pgx.Tx) error {
		var err error
		if res, err = s.applyFlowRunState(ctx, tx, id, proposed, opts); err != nil {
			return err
		}
		if input == nil || res.Status != orchestration.Accept {
			return nil
		}
		_, err = q.InsertFlowRunInput(ctx, pgdb.InsertFlowRunInputParams{
			ID: uuid.New(), Created: store.Now(), FlowRunID: id, Key: input.Key, Value: input.Value, Sender: textPtr(input.Sender),
		})
		return err
	})
	if err != nil {
		return store.SetStateResult{}, err
	}
	return res, nil
}

// SetTaskRunState implements store.Store.
func (s *Store) SetTaskRunState(ctx context.Context, id uuid.UUID, proposed orchestration.State, opts orchestration.Options) (store.SetStateResult, error) {
	var res store.SetStateResult
	err := s.inTx(ctx, func(_ *pgdb.Queries, tx pgx.Tx) error {
		var err error
		res, err = s.applyTaskRunState(ctx, tx, id, proposed, opts)
		return err
	})
	if err != nil {
		return store.SetStateResult{}, err
	}
	return res, nil
}

// applyFlowRunState is one flow run transition inside tx: lock the run,
// read its current state, run the engine, write the new state and the run.
// The caller commits; the effects are only valid once it has.
func (s *Store) applyFlowRunState(ctx context.Context, tx pgx.Tx, runID uuid.UUID, proposed orchestration.State, opts orchestration.Options) (store.SetStateResult, error) {
	q := s.q.WithTx(tx)
	row, err := q.OrchLockFlowRun(ctx, runID)
	if err != nil {
		return store.SetStateResult{}, notFound(err, "flow run")
	}
	fr, err := flowRunFromRow(row, uuid.NullUUID{}, pgtype.Text{})
	if err != nil {
		return store.SetStateResult{}, err
	}
	initial, err := readFlowRunState(ctx, q, fr.StateID)
	if err != nil {
		return store.SetStateResult{}, err
	}
	run := orchestration.FlowRun{
		RunCore:           fr.RunCore,
		DeploymentID:      fr.DeploymentID,
		ParentTaskRunID:   fr.ParentTaskRunID,
		InfrastructurePID: fr.InfrastructurePID,
		EmpiricalPolicy:   fr.EmpiricalPolicy,
	}
	before := cloneFlowRun(run)
	env := &txEnv{s: s, tx: tx, q: q, opts: opts, flowRun: &fr}
	res, err := orchestration.OrchestrateFlowRun(ctx, env, &run, initial, proposed, opts)
	if err != nil {
		return store.SetStateResult{}, err
	}
	now := store.Now()
	if res.NewState != nil {
		if err := insertFlowRunState(ctx, q, runID, res.NewState, now); err != nil {
			return store.SetStateResult{}, err
		}
	}
	if res.NewState != nil || !reflect.DeepEqual(before, run) {
		c := run.RunCore
		err := q.OrchUpdateFlowRun(ctx, pgdb.OrchUpdateFlowRunParams{
			StateID:                nullUUID(c.StateID),
			StateType:              nullStateType(c.StateType),
			StateName:              text(c.StateName),
			StateTimestamp:         c.StateTimestamp,
			RunCount:               int32(c.RunCount),
			StartTime:              c.StartTime,
			EndTime:                c.EndTime,
			TotalRunTime:           c.TotalRunTime.Seconds(),
			ExpectedStartTime:      c.ExpectedStartTime,
			NextScheduledStartTime: c.NextScheduledStartTime,
			EmpiricalPolicy:        runcodec.EncodeFlowPolicy(run.EmpiricalPolicy),
			Updated:                now,
			ID:                     runID,
		})
		if err != nil {
			return store.SetStateResult{}, err
		}
	}
	return store.SetStateResult{Result: res, Effects: env.effects}, nil
}

// applyTaskRunState is applyFlowRunState for task runs.
func (s *Store) applyTaskRunState(ctx context.Context, tx pgx.Tx, runID uuid.UUID, proposed orchestration.State, opts orchestration.Options) (store.SetStateResult, error) {
	q := s.q.WithTx(tx)
	row, err := q.OrchLockTaskRun(ctx, runID)
	if err != nil {
		return store.SetStateResult{}, notFound(err, "task run")
	}
	run, err := taskRunForOrchestration(row)
	if err != nil {
		return store.SetStateResult{}, err
	}
	initial, err := readTaskRunState(ctx, q, run.StateID)
	if err != nil {
		return store.SetStateResult{}, err
	}
	before := run.RunCore
	beforeCount := run.FlowRunRunCount
	env := &txEnv{s: s, tx: tx, q: q, opts: opts}
	res, err := orchestration.OrchestrateTaskRun(ctx, env, &run, initial, proposed, opts)
	if err != nil {
		return store.SetStateResult{}, err
	}
	now := store.Now()
	if res.NewState != nil {
		if err := insertTaskRunState(ctx, q, runID, run.FlowRunID, res.NewState, now); err != nil {
			return store.SetStateResult{}, err
		}
	}
	if res.NewState != nil || !reflect.DeepEqual(before, run.RunCore) || beforeCount != run.FlowRunRunCount {
		c := run.RunCore
		err := q.OrchUpdateTaskRun(ctx, pgdb.OrchUpdateTaskRunParams{
			StateID:                nullUUID(c.StateID),
			StateType:              nullStateType(c.StateType),
			StateName:              text(c.StateName),
			StateTimestamp:         c.StateTimestamp,
			RunCount:               int32(c.RunCount),
			StartTime:              c.StartTime,
			EndTime:                c.EndTime,
			TotalRunTime:           c.TotalRunTime.Seconds(),
			ExpectedStartTime:      c.ExpectedStartTime,
			NextScheduledStartTime: c.NextScheduledStartTime,
			FlowRunRunCount:        int32(run.FlowRunRunCount),
			Updated:                now,
			ID:                     runID,
		})
		if err != nil {
			return store.SetStateResult{}, err
		}
	}
	return store.SetStateResult{Result: res, Effects: env.effects}, nil
}

func cloneFlowRun(r orchestration.FlowRun) orchestration.FlowRun {
	c := r
	c.EmpiricalPolicy.PauseKeys = append([]string(nil), r.EmpiricalPolicy.PauseKeys...)
	if r.EmpiricalPolicy.PauseKeys != nil && c.EmpiricalPolicy.PauseKeys == nil {
		c.EmpiricalPolicy.PauseKeys = []string{}
	}
	return c
}

// txEnv is the orchestration.Env of one transaction.
type txEnv struct {
	s       *Store
	tx      pgx.Tx
	q       *pgdb.Queries
	opts    orchestration.Options
	flowRun *store.FlowRun // the flow run being orchestrated, for its events
	effects store.Effects
}

var _ orchestration.Env = (*txEnv)(nil)

func (e *txEnv) ReadFlowRun(ctx context.Context, id uuid.UUID) (*orchestration.FlowRun, *orchestration.State, error) {
	row, err := e.q.OrchGetFlowRun(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	fr, err := flowRunFromRow(row, uuid.NullUUID{}, pgtype.Text{})
	if err != nil {
		return nil, nil, err
	}
	st, err := readFlowRunState(ctx, e.q, fr.StateID)
	if err != nil {
		return nil, nil, err
	}
	return &orchestration.FlowRun{
		RunCore:           fr.RunCore,
		DeploymentID:      fr.DeploymentID,
		ParentTaskRunID:   fr.ParentTaskRunID,
		InfrastructurePID: fr.InfrastructurePID,
		EmpiricalPolicy:   fr.EmpiricalPolicy,
	}, st, nil
}

func (e *txEnv) ReadCachedState(ctx context.Context, key string, now time.Time) (*orchestration.State, error) {
	n := store.Truncate(now)
	row, err := e.q.OrchReadCachedState(ctx, pgdb.OrchReadCachedStateParams{CacheKey: key, Now: &n})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := taskStateFromRow(row.TaskRunState, row.ArtifactData)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

func (e *txEnv) InsertStateCache(ctx context.Context, key string, expiration *time.Time, stateID uuid.UUID) error {
	if err := checkText(key); err != nil {
		return err
	}
	var exp *time.Time
	if expiration != nil {
		t := store.Truncate(*expiration)
		exp = &t
	}
	return e.q.OrchInsertStateCache(ctx, pgdb.OrchInsertStateCacheParams{
		ID: uuid.New(), Created: store.Now(), CacheKey: key, CacheExpiration: exp, TaskRunStateID: stateID,
	})
}

func (e *txEnv) FlowRunStateTimestampExists(ctx context.Context, flowRunID uuid.UUID, ts time.Time) (bool, error) {
	return e.q.OrchFlowRunStateTimestampExists(ctx, pgdb.OrchFlowRunStateTimestampExistsParams{FlowRunID: flowRunID, Timestamp: store.Truncate(ts)})
}

func (e *txEnv) DeleteFlowRunInput(ctx context.Context, flowRunID uuid.UUID, key string) error {
	if checkText(key) != nil {
		return nil // no stored key can hold NUL
	}
	return e.q.OrchDeleteFlowRunInput(ctx, pgdb.OrchDeleteFlowRunInputParams{FlowRunID: flowRunID, Key: key})
}

func (e *txEnv) SetParentTaskRunState(ctx context.Context, taskRunID uuid.UUID, state *orchestration.State) error {
	opts := orchestration.Options{Force: true, Now: e.opts.Now, APIVersion: e.opts.APIVersion, ClientVersion: e.opts.ClientVersion,
		Limiter: e.opts.Limiter, MaxCacheKeyLength: e.opts.MaxCacheKeyLength}
	res, err := e.s.applyTaskRunState(ctx, e.tx, taskRunID, *state, opts)
	if err != nil {
		return fmt.Errorf("parent task run %s: %w", taskRunID, err)
	}
	e.effects.Merge(res.Effects)
	return nil
}

func (e *txEnv) FlowRunStateChanged(ctx context.Context, run *orchestration.FlowRun, initial, validated *orchestration.State) error {
	fr := e.flowRun
	if fr == nil || fr.ID != run.ID {
		row, err := e.q.OrchGetFlowRun(ctx, run.ID)
		if err != nil {
			return notFound(err, "flow run")
		}
		got, err := flowRunFromRow(row, uuid.NullUUID{}, pgtype.Text{})
		if err != nil {
			return err
		}
		fr = &got
	}
	rel, err := e.q.OrchFlowRunEventData(ctx, run.ID)
	if err != nil {
		return notFound(err, "flow run")
	}
	data := store.FlowRunEventData{
		ID: run.ID, Name: fr.Name, RunCount: run.RunCount, Tags: fr.Tags, CreatedBy: fr.CreatedBy,
	}
	related := func(id uuid.NullUUID, name pgtype.Text, tags []byte) (*store.EventRelated, error) {
		if !id.Valid {
			return nil, nil
		}
		t, err := rowcodec.DecodeTags(tags)
		if err != nil {
			return nil, err
		}
		return &store.EventRelated{ID: id.UUID, Name: name.String, Tags: t}, nil
	}
	if data.Flow, err = related(rel.FlowID, rel.FlowName, rel.FlowTags); err != nil {
		return err
	}
	if data.Deployment, err = related(rel.DeploymentID, rel.DeploymentName, rel.DeploymentTags); err != nil {
		return err
	}
	if data.WorkQueue, err = related(rel.WorkQueueID, rel.WorkQueueName, nil); err != nil {
		return err
	}
	if data.WorkPool, err = related(rel.WorkPoolID, rel.WorkPoolName, nil); err != nil {
		return err
	}
	data.WorkPoolType = rel.WorkPoolType.String
	if data.ParentTaskRun, err = related(rel.TaskRunID, rel.TaskRunName, rel.TaskRunTags); err != nil {
		return err
	}
	e.effects.Events = append(e.effects.Events, store.FlowRunStateEvent(data, initial, validated))
	return nil
}

func (e *txEnv) EnqueueBackgroundTaskRun(_ context.Context, run *orchestration.TaskRun, retry bool) error {
	c := *run
	c.Tags = append([]string(nil), run.Tags...)
	e.effects.BackgroundTaskRuns = append(e.effects.BackgroundTaskRuns, store.BackgroundTaskRun{Run: c, Retry: retry})
	return nil
}

// insertFlowRunState writes a validated state, its result going to an
// artifact as Prefect's _validate_proposed_state does.
func insertFlowRunState(ctx context.Context, q *pgdb.Queries, runID uuid.UUID, st *orchestration.State, now time.Time) error {
	artifactID, err := insertResultArtifact(ctx, q, st, uuid.NullUUID{UUID: runID, Valid: true}, uuid.NullUUID{}, now)
	if err != nil {
		return err
	}
	if err := checkState(st); err != nil {
		return err
	}
	return q.OrchInsertFlowRunState(ctx, pgdb.OrchInsertFlowRunStateParams{
		ID: st.ID, Created: now, FlowRunID: runID, Type: pgdb.StateType(st.Type), Timestamp: store.Truncate(st.Timestamp),
		Name: st.Name, Message: textPtr(st.Message), StateDetails: runcodec.EncodeDetails(st.StateDetails),
		ResultArtifactID: artifactID,
	})
}

func insertTaskRunState(ctx context.Context, q *pgdb.Queries, runID uuid.UUID, flowRunID *uuid.UUID, st *orchestration.State, now time.Time) error {
	artifactID, err := insertResultArtifact(ctx, q, st, nullUUID(flowRunID), uuid.NullUUID{UUID: runID, Valid: true}, now)
	if err != nil {
		return err
	}
	if err := checkState(st); err != nil {
		return err
	}
	return q.OrchInsertTaskRunState(ctx, pgdb.OrchInsertTaskRunStateParams{
		ID: st.ID, Created: now, TaskRunID: runID, Type: pgdb.StateType(st.Type), Timestamp: store.Truncate(st.Timestamp),
		Name: st.Name, Message: textPtr(st.Message), StateDetails: runcodec.EncodeDetails(st.StateDetails),
		ResultArtifactID: artifactID,
	})
}

func checkState(st *orchestration.State) error {
	if err := checkText(st.Name); err != nil {
		return err
	}
	if st.Message != nil {
		return checkText(*st.Message)
	}
	return nil
}

func insertResultArtifact(ctx context.Context, q *pgdb.Queries, st *orchestration.State, flowRunID, taskRunID uuid.NullUUID, now time.Time) (uuid.NullUUID, error) {
	a, ok := runcodec.SplitResult(st.Data)
	if !ok {
		return uuid.NullUUID{}, nil
	}
	id := uuid.New()
	err := q.OrchInsertResultArtifact(ctx, pgdb.OrchInsertResultArtifactParams{
		ID: id, Created: now, Key: textPtr(a.Key), Type: textPtr(a.Type), Description: textPtr(a.Description),
		Data: a.Data, FlowRunID: flowRunID, TaskRunID: taskRunID,
	})
	if err != nil {
		return uuid.NullUUID{}, err
	}
	return uuid.NullUUID{UUID: id, Valid: true}, nil
}

func readFlowRunState(ctx context.Context, q *pgdb.Queries, id *uuid.UUID) (*orchestration.State, error) {
	if id == nil {
		return nil, nil
	}
	row, err := q.OrchGetFlowRunState(ctx, *id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := flowStateFromRow(row.FlowRunState, row.ArtifactData)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

func readTaskRunState(ctx context.Context, q *pgdb.Queries, id *uuid.UUID) (*orchestration.State, error) {
	if id == nil {
		return nil, nil
	}
	row, err := q.OrchGetTaskRunState(ctx, *id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := taskStateFromRow(row.TaskRunState, row.ArtifactData)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

func flowStateFromRow(r pgdb.FlowRunState, artifactData []byte) (orchestration.State, error) {
	return runcodec.DecodeState(runcodec.StateParts{
		ID: r.ID, Type: string(r.Type), Name: r.Name, Timestamp: r.Timestamp, Message: ptrText(r.Message),
		Details: r.StateDetails, Data: r.Data, ArtifactData: artifactData,
	})
}

func taskStateFromRow(r pgdb.TaskRunState, artifactData []byte) (orchestration.State, error) {
	return runcodec.DecodeState(runcodec.StateParts{
		ID: r.ID, Type: string(r.Type), Name: r.Name, Timestamp: r.Timestamp, Message: ptrText(r.Message),
		Details: r.StateDetails, Data: r.Data, ArtifactData: artifactData,
	})
}

func taskRunForOrchestration(r pgdb.TaskRun) (orchestration.TaskRun, error) {
	tags, err := rowcodec.DecodeTags(r.Tags)
	if err != nil {
		return orchestration.TaskRun{}, err
	}
	policy, err := runcodec.DecodeTaskPolicy(r.EmpiricalPolicy)
	if err != nil {
		return orchestration.TaskRun{}, err
	}
	return orchestration.TaskRun{
		RunCore:         runCore(r.ID, r.StateID, r.StateType, r.StateName, r.StateTimestamp, r.RunCount, r.StartTime, r.EndTime, r.TotalRunTime, r.ExpectedStartTime, r.NextScheduledStartTime),
		FlowRunID:       uuidPtr(r.FlowRunID),
		TaskKey:         r.TaskKey,
		Tags:            tags,
		FlowRunRunCount: int(r.FlowRunRunCount),
		EmpiricalPolicy: policy,
	}, nil
}

func runCore(id uuid.UUID, stateID uuid.NullUUID, st pgdb.NullStateType, name pgtype.Text, ts *time.Time, runCount int32, start, end *time.Time, total float64, expected, next *time.Time) orchestration.RunCore {
	c := orchestration.RunCore{
		ID:                     id,
		StateID:                uuidPtr(stateID),
		StateName:              name.String,
		StateTimestamp:         truncPtr(ts),
		RunCount:               int(runCount),
		StartTime:              truncPtr(start),
		EndTime:                truncPtr(end),
		TotalRunTime:           runcodec.Seconds(total),
		ExpectedStartTime:      truncPtr(expected),
		NextScheduledStartTime: truncPtr(next),
	}
	if st.Valid {
		c.StateType = orchestration.StateType(st.StateType)
	}
	return c
}

func truncPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := store.Truncate(*t)
	return &v
}

func uuidPtr(u uuid.NullUUID) *uuid.UUID {
	if !u.Valid {
		return nil
	}
	v := u.UUID
	return &v
}

func nullUUID(u *uuid.UUID) uuid.NullUUID {
	if u == nil {
		return uuid.NullUUID{}
	}
	return uuid.NullUUID{UUID: *u, Valid: true}
}

func nullStateType(t orchestration.StateType) pgdb.NullStateType {
	if t == orchestration.NoState {
		return pgdb.NullStateType{}
	}
	return pgdb.NullStateType{StateType: pgdb.StateType(t), Valid: true}
}

// text maps "" to NULL (state_name).
func text(s string) pgtype.Text {
	return pgtype.Text{String: s, Valid: s != ""}
}

func textPtr(s *string) pgtype.Text {
	if s == nil {
		return pgtype.Text{}
	}
	return pgtype.Text{String: *s, Valid: true}
}

func ptrText(t pgtype.Text) *string {
	if !t.Valid {
		return nil
	}
	v := t.String
	return &v
}
