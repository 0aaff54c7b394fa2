package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/gen/db/sqlitedb"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/internal/rowcodec"
	"github.com/prefect-go/prefect-server/services/store/internal/runcodec"
)

// SetFlowRunState implements store.Store.
func (s *Store) SetFlowRunState(ctx context.Context, id uuid.UUID, proposed orchestration.State, opts orchestration.Options) (store.SetStateResult, error) {
	var res store.SetStateResult
	var deferred []deferredEvent
	err := s.write(ctx, func(ctx context.Context, _ *sqlitedb.Queries, tx *sql.Tx) error {
		var err error
		res, deferred, err = s.applyFlowRunState(ctx, tx, id, proposed, opts)
		return err
	})
	if err != nil {
		return store.SetStateResult{}, err
	}
	s.resolveEvents(ctx, &res.Effects, deferred)
	return res, nil
}

// ResumeFlowRun implements store.Store.
func (s *Store) ResumeFlowRun(ctx context.Context, id uuid.UUID, proposed orchestration.State, opts orchestration.Options, input *store.FlowRunInput) (store.SetStateResult, error) {
	var res store.SetStateResult
	var deferred []deferredEvent
	err := s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, tx *sql.Tx) error {
		var err error
		if res, deferred, err = s.applyFlowRunState(ctx, tx, id, proposed, opts); err != nil {
			return err
		}
		if input == nil || res.Status != orchestration.Accept {
			return nil
		}
		_, err = q.InsertFlowRunInput(ctx, sqlitedb.InsertFlowRunInputParams{
			ID: uuid.NewString(), Created: formatTime(store.Now()), FlowRunID: id.String(), Key: input.Key, Value: input.Value, Sender: nullStrPtr(input.Sender),
		})
		return err
	})
	if err != nil {
		return store.SetStateResult{}, err
	}
	s.resolveEvents(ctx, &res.Effects, deferred)
	return res, nil
}

// SetTaskRunState implements store.Store.
func (s *Store) SetTaskRunState(ctx context.Context, id uuid.UUID, proposed orchestration.State, opts orchestration.Options) (store.SetStateResult, error) {
	var res store.SetStateResult
	err := s.write(ctx, func(ctx context.Context, _ *sqlitedb.Queries, tx *sql.Tx) error {
		var err error
		res, err = s.applyTaskRunState(ctx, tx, id, proposed, opts)
		return err
	})
	if err != nil {
		return store.SetStateResult{}, err
	}
	return res, nil
}

// applyFlowRunState is one flow run transition inside tx, a writer
// transaction: the single writer connection is the run's lock. The caller
// commits; the effects are only valid once it has.
func (s *Store) applyFlowRunState(ctx context.Context, tx *sql.Tx, runID uuid.UUID, proposed orchestration.State, opts orchestration.Options) (store.SetStateResult, []deferredEvent, error) {
	q := s.wc.txQueries(tx)
	row, err := q.OrchLockFlowRun(ctx, runID.String())
	if err != nil {
		return store.SetStateResult{}, nil, notFound(err, "flow run")
	}
	fr, err := flowRunFromRow(row, sql.NullString{}, sql.NullString{})
	if err != nil {
		return store.SetStateResult{}, nil, err
	}
	initial, err := readFlowRunState(ctx, q, fr.StateID)
	if err != nil {
		return store.SetStateResult{}, nil, err
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
		return store.SetStateResult{}, nil, err
	}
	now := store.Now()
	if res.NewState != nil {
		if err := insertFlowRunState(ctx, q, runID, res.NewState, now); err != nil {
			return store.SetStateResult{}, nil, err
		}
	}
	if res.NewState != nil || !reflect.DeepEqual(before, run) {
		c := run.RunCore
		err := q.OrchUpdateFlowRun(ctx, sqlitedb.OrchUpdateFlowRunParams{
			StateID:                nullUUIDStr(c.StateID),
			StateType:              nullStr(string(c.StateType)),
			StateName:              nullStr(c.StateName),
			StateTimestamp:         nullTime(c.StateTimestamp),
			RunCount:               int64(c.RunCount),
			StartTime:              nullTime(c.StartTime),
			EndTime:                nullTime(c.EndTime),
			TotalRunTime:           c.TotalRunTime.Seconds(),
			ExpectedStartTime:      nullTime(c.ExpectedStartTime),
			NextScheduledStartTime: nullTime(c.NextScheduledStartTime),
			EmpiricalPolicy:        string(runcodec.EncodeFlowPolicy(run.EmpiricalPolicy)),
			Updated:                formatTime(now),
			ID:                     runID.String(),
		})
		if err != nil {
			return store.SetStateResult{}, nil, err
		}
	}
	return store.SetStateResult{Result: res, Effects: env.effects}, env.deferred, nil
}

// applyTaskRunState is applyFlowRunState for task runs.
func (s *Store) applyTaskRunState(ctx context.Context, tx *sql.Tx, runID uuid.UUID, proposed orchestration.State, opts orchestration.Options) (store.SetStateResult, error) {
	q := s.wc.txQueries(tx)
	row, err := q.OrchLockTaskRun(ctx, runID.String())
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
		err := q.OrchUpdateTaskRun(ctx, sqlitedb.OrchUpdateTaskRunParams{
			StateID:                nullUUIDStr(c.StateID),
			StateType:              nullStr(string(c.StateType)),
			StateName:              nullStr(c.StateName),
			StateTimestamp:         nullTime(c.StateTimestamp),
			RunCount:               int64(c.RunCount),
			StartTime:              nullTime(c.StartTime),
			EndTime:                nullTime(c.EndTime),
			TotalRunTime:           c.TotalRunTime.Seconds(),
			ExpectedStartTime:      nullTime(c.ExpectedStartTime),
			NextScheduledStartTime: nullTime(c.NextScheduledStartTime),
			FlowRunRunCount:        int64(run.FlowRunRunCount),
			Updated:                formatTime(now),
			ID:                     runID.String(),
		})
		if err != nil {
			return store.SetStateResult{}, err
		}
	}
	return store.SetStateResult{Result: res, Effects: env.effects}, nil
}

func cloneFlowRun(r orchestration.FlowRun) orchestration.FlowRun {
	c := r
	if r.EmpiricalPolicy.PauseKeys != nil {
		c.EmpiricalPolicy.PauseKeys = append([]string{}, r.EmpiricalPolicy.PauseKeys...)
	}
	return c
}

// txEnv is the orchestration.Env of one writer transaction.
type txEnv struct {
	s       *Store
	tx      *sql.Tx
	q       *sqlitedb.Queries
	opts    orchestration.Options
	flowRun *store.FlowRun // the flow run being orchestrated, for its events
	effects store.Effects
	// deferred are flow run events whose related resources are read after
	// the commit (see resolveEvents).
	deferred []deferredEvent
}

var _ orchestration.Env = (*txEnv)(nil)

func (e *txEnv) ReadFlowRun(ctx context.Context, id uuid.UUID) (*orchestration.FlowRun, *orchestration.State, error) {
	row, err := e.q.OrchGetFlowRun(ctx, id.String())
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	fr, err := flowRunFromRow(row, sql.NullString{}, sql.NullString{})
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
	row, err := e.q.OrchReadCachedState(ctx, sqlitedb.OrchReadCachedStateParams{CacheKey: key, Now: nullTime(&now)})
	if errors.Is(err, sql.ErrNoRows) {
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
	return e.q.OrchInsertStateCache(ctx, sqlitedb.OrchInsertStateCacheParams{
		ID: uuid.NewString(), Created: formatTime(store.Now()), CacheKey: key, CacheExpiration: nullTime(expiration), TaskRunStateID: stateID.String(),
	})
}

func (e *txEnv) FlowRunStateTimestampExists(ctx context.Context, flowRunID uuid.UUID, ts time.Time) (bool, error) {
	n, err := e.q.OrchFlowRunStateTimestampExists(ctx, sqlitedb.OrchFlowRunStateTimestampExistsParams{FlowRunID: flowRunID.String(), Timestamp: formatTime(ts)})
	return n != 0, err
}

func (e *txEnv) DeleteFlowRunInput(ctx context.Context, flowRunID uuid.UUID, key string) error {
	return e.q.OrchDeleteFlowRunInput(ctx, sqlitedb.OrchDeleteFlowRunInputParams{FlowRunID: flowRunID.String(), Key: key})
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
		row, err := e.q.OrchGetFlowRun(ctx, run.ID.String())
		if err != nil {
			return notFound(err, "flow run")
		}
		got, err := flowRunFromRow(row, sql.NullString{}, sql.NullString{})
		if err != nil {
			return err
		}
		fr = &got
	}
	e.deferred = append(e.deferred, deferredEvent{
		slot: len(e.effects.Events),
		data: store.FlowRunEventData{
			ID: run.ID, Name: fr.Name, RunCount: run.RunCount, Tags: fr.Tags, CreatedBy: fr.CreatedBy,
		},
		initial: initial, validated: validated,
	})
	e.effects.Events = append(e.effects.Events, events.Event{}) // filled by resolveEvents
	return nil
}

// deferredEvent is a flow run state event waiting for its related
// resources: the flow, deployment, work queue and pool and parent task
// run, which the transition does not change. Reading them after the
// commit, on a reader, keeps a join per transition out of the one writer
// every write queues for.
type deferredEvent struct {
	slot               int // index in Effects.Events
	data               store.FlowRunEventData
	initial, validated *orchestration.State
}

// resolveEvents fills the deferred events of a committed transition. A run
// deleted in between, or related rows that do not decode, still give the
// event, without related resources.
func (s *Store) resolveEvents(ctx context.Context, eff *store.Effects, deferred []deferredEvent) {
	for _, d := range deferred {
		data := d.data
		if rel, err := s.rq.OrchFlowRunEventData(ctx, data.ID.String()); err == nil && fillRelated(&data, rel) != nil {
			data = d.data // undecodable related rows: the event without them
		}
		eff.Events[d.slot] = store.FlowRunStateEvent(data, d.initial, d.validated)
	}
}

func fillRelated(data *store.FlowRunEventData, rel sqlitedb.OrchFlowRunEventDataRow) error {
	related := func(id, name, tags sql.NullString) (*store.EventRelated, error) {
		if !id.Valid {
			return nil, nil
		}
		u, err := uuid.Parse(id.String)
		if err != nil {
			return nil, fmt.Errorf("related id %q: %w", id.String, err)
		}
		var t []string
		if tags.Valid {
			if t, err = rowcodec.DecodeTags([]byte(tags.String)); err != nil {
				return nil, err
			}
		}
		return &store.EventRelated{ID: u, Name: name.String, Tags: t}, nil
	}
	var err error
	if data.Flow, err = related(rel.FlowID, rel.FlowName, rel.FlowTags); err != nil {
		return err
	}
	if data.Deployment, err = related(rel.DeploymentID, rel.DeploymentName, rel.DeploymentTags); err != nil {
		return err
	}
	if data.WorkQueue, err = related(rel.WorkQueueID, rel.WorkQueueName, sql.NullString{}); err != nil {
		return err
	}
	if data.WorkPool, err = related(rel.WorkPoolID, rel.WorkPoolName, sql.NullString{}); err != nil {
		return err
	}
	data.WorkPoolType = rel.WorkPoolType.String
	data.ParentTaskRun, err = related(rel.TaskRunID, rel.TaskRunName, rel.TaskRunTags)
	return err
}

func (e *txEnv) EnqueueBackgroundTaskRun(_ context.Context, run *orchestration.TaskRun, retry bool) error {
	c := *run
	c.Tags = append([]string(nil), run.Tags...)
	e.effects.BackgroundTaskRuns = append(e.effects.BackgroundTaskRuns, store.BackgroundTaskRun{Run: c, Retry: retry})
	return nil
}

// insertFlowRunState writes a validated state, its result going to an
// artifact as Prefect's _validate_proposed_state does.
func insertFlowRunState(ctx context.Context, q *sqlitedb.Queries, runID uuid.UUID, st *orchestration.State, now time.Time) error {
	artifactID, err := insertResultArtifact(ctx, q, st, &runID, nil, now)
	if err != nil {
		return err
	}
	return q.OrchInsertFlowRunState(ctx, sqlitedb.OrchInsertFlowRunStateParams{
		ID: st.ID.String(), Created: formatTime(now), FlowRunID: runID.String(), Type: string(st.Type), Timestamp: formatTime(st.Timestamp),
		Name: st.Name, Message: nullStrPtr(st.Message), StateDetails: string(runcodec.EncodeDetails(st.StateDetails)),
		ResultArtifactID: artifactID,
	})
}

func insertTaskRunState(ctx context.Context, q *sqlitedb.Queries, runID uuid.UUID, flowRunID *uuid.UUID, st *orchestration.State, now time.Time) error {
	artifactID, err := insertResultArtifact(ctx, q, st, flowRunID, &runID, now)
	if err != nil {
		return err
	}
	return q.OrchInsertTaskRunState(ctx, sqlitedb.OrchInsertTaskRunStateParams{
		ID: st.ID.String(), Created: formatTime(now), TaskRunID: runID.String(), Type: string(st.Type), Timestamp: formatTime(st.Timestamp),
		Name: st.Name, Message: nullStrPtr(st.Message), StateDetails: string(runcodec.EncodeDetails(st.StateDetails)),
		ResultArtifactID: artifactID,
	})
}

func insertResultArtifact(ctx context.Context, q *sqlitedb.Queries, st *orchestration.State, flowRunID, taskRunID *uuid.UUID, now time.Time) (sql.NullString, error) {
	a, ok := runcodec.SplitResult(st.Data)
	if !ok {
		return sql.NullString{}, nil
	}
	id := uuid.NewString()
	err := q.OrchInsertResultArtifact(ctx, sqlitedb.OrchInsertResultArtifactParams{
		ID: id, Created: formatTime(now), Key: nullStrPtr(a.Key), Type: nullStrPtr(a.Type), Description: nullStrPtr(a.Description),
		Data: sql.NullString{String: string(a.Data), Valid: true}, FlowRunID: nullUUIDStr(flowRunID), TaskRunID: nullUUIDStr(taskRunID),
	})
	if err != nil {
		return sql.NullString{}, err
	}
	return sql.NullString{String: id, Valid: true}, nil
}

func readFlowRunState(ctx context.Context, q *sqlitedb.Queries, id *uuid.UUID) (*orchestration.State, error) {
	if id == nil {
		return nil, nil
	}
	row, err := q.OrchGetFlowRunState(ctx, id.String())
	if errors.Is(err, sql.ErrNoRows) {
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

func readTaskRunState(ctx context.Context, q *sqlitedb.Queries, id *uuid.UUID) (*orchestration.State, error) {
	if id == nil {
		return nil, nil
	}
	row, err := q.OrchGetTaskRunState(ctx, id.String())
	if errors.Is(err, sql.ErrNoRows) {
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

func stateParts(id, typ, name, ts string, msg sql.NullString, details string, data, artifactData sql.NullString) (runcodec.StateParts, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return runcodec.StateParts{}, fmt.Errorf("state id %q: %w", id, err)
	}
	t, err := parseTime(ts)
	if err != nil {
		return runcodec.StateParts{}, err
	}
	p := runcodec.StateParts{ID: u, Type: typ, Name: name, Timestamp: t, Message: strPtr(msg), Details: []byte(details)}
	if data.Valid {
		p.Data = []byte(data.String)
	}
	if artifactData.Valid {
		p.ArtifactData = []byte(artifactData.String)
	}
	return p, nil
}

func flowStateFromRow(r sqlitedb.FlowRunState, artifactData sql.NullString) (orchestration.State, error) {
	p, err := stateParts(r.ID, r.Type, r.Name, r.Timestamp, r.Message, r.StateDetails, r.Data, artifactData)
	if err != nil {
		return orchestration.State{}, err
	}
	return runcodec.DecodeState(p)
}

func taskStateFromRow(r sqlitedb.TaskRunState, artifactData sql.NullString) (orchestration.State, error) {
	p, err := stateParts(r.ID, r.Type, r.Name, r.Timestamp, r.Message, r.StateDetails, r.Data, artifactData)
	if err != nil {
		return orchestration.State{}, err
	}
	return runcodec.DecodeState(p)
}

func taskRunForOrchestration(r sqlitedb.TaskRun) (orchestration.TaskRun, error) {
	tags, err := rowcodec.DecodeTags([]byte(r.Tags))
	if err != nil {
		return orchestration.TaskRun{}, err
	}
	policy, err := runcodec.DecodeTaskPolicy([]byte(r.EmpiricalPolicy))
	if err != nil {
		return orchestration.TaskRun{}, err
	}
	core, err := runCore(r.ID, r.StateID, r.StateType, r.StateName, r.StateTimestamp, r.RunCount, r.StartTime, r.EndTime, r.TotalRunTime, r.ExpectedStartTime, r.NextScheduledStartTime)
	if err != nil {
		return orchestration.TaskRun{}, err
	}
	flowRunID, err := uuidFromNull(r.FlowRunID)
	if err != nil {
		return orchestration.TaskRun{}, err
	}
	return orchestration.TaskRun{
		RunCore:         core,
		FlowRunID:       flowRunID,
		TaskKey:         r.TaskKey,
		Tags:            tags,
		FlowRunRunCount: int(r.FlowRunRunCount),
		EmpiricalPolicy: policy,
	}, nil
}

func runCore(id string, stateID, stateType, stateName, stateTS sql.NullString, runCount int64, start, end sql.NullString, total float64, expected, next sql.NullString) (orchestration.RunCore, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return orchestration.RunCore{}, fmt.Errorf("run id %q: %w", id, err)
	}
	c := orchestration.RunCore{
		ID:           u,
		StateType:    orchestration.StateType(stateType.String),
		StateName:    stateName.String,
		RunCount:     int(runCount),
		TotalRunTime: runcodec.Seconds(total),
	}
	if c.StateID, err = uuidFromNull(stateID); err != nil {
		return c, err
	}
	for _, f := range []struct {
		dst **time.Time
		src sql.NullString
	}{{&c.StateTimestamp, stateTS}, {&c.StartTime, start}, {&c.EndTime, end}, {&c.ExpectedStartTime, expected}, {&c.NextScheduledStartTime, next}} {
		if *f.dst, err = timePtr(f.src); err != nil {
			return c, err
		}
	}
	return c, nil
}

func uuidFromNull(s sql.NullString) (*uuid.UUID, error) {
	if !s.Valid {
		return nil, nil
	}
	u, err := uuid.Parse(s.String)
	if err != nil {
		return nil, fmt.Errorf("stored id %q: %w", s.String, err)
	}
	return &u, nil
}

func timePtr(s sql.NullString) (*time.Time, error) {
	if !s.Valid {
		return nil, nil
	}
	t, err := parseTime(s.String)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func nullTime(t *time.Time) sql.NullString {
	if t == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: formatTime(*t), Valid: true}
}

func nullUUIDStr(u *uuid.UUID) sql.NullString {
	if u == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: u.String(), Valid: true}
}

// nullStr maps "" to NULL (state_type, state_name).
func nullStr(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}

func nullStrPtr(s *string) sql.NullString {
	if s == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: *s, Valid: true}
}

func strPtr(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	v := s.String
	return &v
}
