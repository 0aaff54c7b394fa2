package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/gen/db/sqlitedb"
	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
	"github.com/prefect-go/prefect-server/services/store/internal/rowcodec"
	"github.com/prefect-go/prefect-server/services/store/internal/runcodec"
)

// CreateFlowRun implements store.Store.
func (s *Store) CreateFlowRun(ctx context.Context, in store.FlowRunCreate, opts orchestration.Options) (store.FlowRunCreated, error) {
	if in.Name == "" {
		in.Name = store.GenerateSlug()
	}
	params, err := runcodec.EncodeMap(in.Parameters)
	if err != nil {
		return store.FlowRunCreated{}, fmt.Errorf("%w: parameters: %v", store.ErrInvalid, err)
	}
	runCtx, err := runcodec.EncodeMap(in.Context)
	if err != nil {
		return store.FlowRunCreated{}, fmt.Errorf("%w: context: %v", store.ErrInvalid, err)
	}
	jobVars, err := runcodec.EncodeMap(in.JobVariables)
	if err != nil {
		return store.FlowRunCreated{}, fmt.Errorf("%w: job_variables: %v", store.ErrInvalid, err)
	}
	policy := runcodec.DefaultFlowPolicy()
	if in.EmpiricalPolicy != nil {
		policy = *in.EmpiricalPolicy
	}
	var out store.FlowRunCreated
	var deferred []deferredEvent
	var runID uuid.UUID
	err = s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, tx *sql.Tx) error {
		labels, err := flowRunLabels(ctx, q, in)
		if err != nil {
			return err
		}
		encLabels, err := rowcodec.EncodeObject(labels)
		if err != nil {
			return fmt.Errorf("%w: labels: %v", store.ErrInvalid, err)
		}
		queueID := in.WorkQueueID
		if in.WorkPoolName != nil {
			id, err := resolveWorkQueue(ctx, q, *in.WorkPoolName, in.WorkQueueName)
			if err != nil {
				return err
			}
			queueID = &id
		}
		idStr, err := q.InsertFlowRun(ctx, sqlitedb.InsertFlowRunParams{
			ID: uuid.NewString(), Created: formatTime(store.Now()), FlowID: in.FlowID.String(), Name: in.Name,
			DeploymentID: nullUUIDStr(in.DeploymentID), DeploymentVersion: nullStrPtr(in.DeploymentVersion),
			WorkQueueID: nullUUIDStr(queueID), WorkQueueName: nullStrPtr(in.WorkQueueName),
			FlowVersion: nullStrPtr(in.FlowVersion), Parameters: string(params), IdempotencyKey: nullStrPtr(in.IdempotencyKey),
			Context: string(runCtx), EmpiricalPolicy: string(runcodec.EncodeFlowPolicy(policy)), Tags: string(rowcodec.EncodeTags(in.Tags)),
			Labels: nullString(encLabels), CreatedBy: nullString(nullJSON(in.CreatedBy)), InfrastructureDocumentID: nullUUIDStr(in.InfrastructureDocumentID),
			ParentTaskRunID: nullUUIDStr(in.ParentTaskRunID), JobVariables: nullString(jobVars), AutoScheduled: in.AutoScheduled,
		})
		out.Created = true
		if errors.Is(err, sql.ErrNoRows) {
			out.Created = false
			idStr, err = q.GetFlowRunIDByIdempotencyKey(ctx, sqlitedb.GetFlowRunIDByIdempotencyKeyParams{FlowID: in.FlowID.String(), IdempotencyKey: nullStrPtr(in.IdempotencyKey)})
		}
		if err != nil {
			return err
		}
		id, err := uuid.Parse(idStr)
		if err != nil {
			return fmt.Errorf("flow run id %q: %w", idStr, err)
		}
		if out.Created && in.State != nil {
			force := opts
			force.Force = true
			res, d, err := s.applyFlowRunState(ctx, tx, id, *in.State, force)
			if err != nil {
				return err
			}
			out.Effects, deferred = res.Effects, d
		}
		runID = id
		return nil
	})
	if err != nil {
		return store.FlowRunCreated{}, err
	}
	// Read back on a reader once committed: inside the transaction the
	// read was a third of a create's time in the one writer.
	if out.Run, err = readFlowRun(ctx, s.rq, runID); err != nil {
		return store.FlowRunCreated{}, err
	}
	s.resolveEvents(ctx, &out.Effects, deferred)
	return out, nil
}

// flowRunLabels is Prefect's with_system_labels_for_flow_run.
func flowRunLabels(ctx context.Context, q *sqlitedb.Queries, in store.FlowRunCreate) (map[string]any, error) {
	out := map[string]any{}
	merge := func(raw sql.NullString) error {
		if !raw.Valid {
			return nil
		}
		parent, err := rowcodec.DecodeObject([]byte(raw.String))
		for k, v := range parent {
			out[k] = v
		}
		return err
	}
	if in.DeploymentID != nil {
		dep, err := q.GetDeploymentForFlowRun(ctx, in.DeploymentID.String())
		if err == nil {
			if err := merge(dep.Labels); err != nil {
				return nil, err
			}
			out["prefect.flow.id"] = dep.FlowID
			out["prefect.deployment.id"] = dep.ID
			for k, v := range in.Labels {
				out[k] = v
			}
			return out, nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
	}
	raw, err := q.GetFlowLabelsForFlowRun(ctx, in.FlowID.String())
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	if err := merge(raw); err != nil {
		return nil, err
	}
	out["prefect.flow.id"] = in.FlowID.String()
	for k, v := range in.Labels {
		out[k] = v
	}
	return out, nil
}

func resolveWorkQueue(ctx context.Context, q *sqlitedb.Queries, pool string, queue *string) (uuid.UUID, error) {
	var idStr string
	if queue != nil {
		id, err := q.GetWorkQueueInPool(ctx, sqlitedb.GetWorkQueueInPoolParams{PoolName: pool, QueueName: *queue})
		if errors.Is(err, sql.ErrNoRows) {
			return uuid.Nil, fmt.Errorf("Work queue %q not found in work pool %q: %w", *queue, pool, store.ErrNotFound)
		}
		if err != nil {
			return uuid.Nil, err
		}
		idStr = id
	} else {
		id, err := q.GetWorkPoolDefaultQueue(ctx, pool)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && !id.Valid) {
			return uuid.Nil, fmt.Errorf("Work pool %q not found: %w", pool, store.ErrNotFound)
		}
		if err != nil {
			return uuid.Nil, err
		}
		idStr = id.String
	}
	u, err := uuid.Parse(idStr)
	if err != nil {
		return uuid.Nil, fmt.Errorf("work queue id %q: %w", idStr, err)
	}
	return u, nil
}

func readFlowRun(ctx context.Context, q *sqlitedb.Queries, id uuid.UUID) (store.FlowRun, error) {
	row, err := q.GetFlowRun(ctx, id.String())
	if err != nil {
		return store.FlowRun{}, notFound(err, "flow run")
	}
	fr, err := flowRunFromRow(row.FlowRun, row.WorkPoolID, row.WorkPoolName)
	if err != nil {
		return store.FlowRun{}, err
	}
	if fr.State, err = readFlowRunState(ctx, q, fr.StateID); err != nil {
		return store.FlowRun{}, err
	}
	return fr, nil
}

// ReadFlowRun implements store.Store.
func (s *Store) ReadFlowRun(ctx context.Context, id uuid.UUID) (store.FlowRun, error) {
	fr, err := readFlowRun(ctx, s.rq, id)
	return fr, mapErr(err)
}

// ReadFlowRuns implements store.Store.
func (s *Store) ReadFlowRuns(ctx context.Context, fq store.FlowRunQuery) ([]store.FlowRun, error) {
	query, args, err := runcodec.FlowRunSelect(filter.SQLite, fq)
	if err != nil {
		return nil, err
	}
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []store.FlowRun{}
	for rows.Next() {
		var r sqlitedb.FlowRun
		var poolID, poolName sql.NullString
		if err := rows.Scan(&r.FlowID, &r.DeploymentID, &r.WorkQueueName, &r.FlowVersion, &r.DeploymentVersion,
			&r.Parameters, &r.IdempotencyKey, &r.Context, &r.EmpiricalPolicy, &r.Tags, &r.Labels, &r.CreatedBy,
			&r.InfrastructurePid, &r.JobVariables, &r.InfrastructureDocumentID, &r.ParentTaskRunID, &r.AutoScheduled,
			&r.StateID, &r.WorkQueueID, &r.Name, &r.StateType, &r.StateName, &r.StateTimestamp, &r.RunCount,
			&r.ExpectedStartTime, &r.NextScheduledStartTime, &r.StartTime, &r.EndTime, &r.TotalRunTime,
			&r.ID, &r.Created, &r.Updated, &poolID, &poolName); err != nil {
			return nil, mapErr(err)
		}
		fr, err := flowRunFromRow(r, poolID, poolName)
		if err != nil {
			return nil, err
		}
		out = append(out, fr)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, mapErr(err)
	}
	var ids []string
	for _, fr := range out {
		if fr.StateID != nil {
			ids = append(ids, fr.StateID.String())
		}
	}
	byID := map[uuid.UUID]*orchestration.State{}
	// Batches: SQLite caps the number of bound parameters.
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 500)]
		ids = ids[len(batch):]
		states, err := s.rq.GetFlowRunStatesByIDs(ctx, batch)
		if err != nil {
			return nil, mapErr(err)
		}
		for _, r := range states {
			st, err := flowStateFromRow(r.FlowRunState, r.ArtifactData)
			if err != nil {
				return nil, err
			}
			byID[st.ID] = &st
		}
	}
	for i := range out {
		if out[i].StateID != nil {
			out[i].State = byID[*out[i].StateID]
		}
	}
	return out, nil
}

// CountFlowRuns implements store.Store.
func (s *Store) CountFlowRuns(ctx context.Context, f filter.FlowRunFilterSet) (int64, error) {
	query, args, err := runcodec.FlowRunCount(filter.SQLite, f)
	if err != nil {
		return 0, err
	}
	var n int64
	return n, mapErr(s.reader.QueryRowContext(ctx, query, args...).Scan(&n))
}

// UpdateFlowRun implements store.Store.
func (s *Store) UpdateFlowRun(ctx context.Context, id uuid.UUID, in store.FlowRunUpdate) error {
	sets := []string{"updated = ?"}
	args := []any{formatTime(store.Now())}
	add := func(col string, v any) {
		sets = append(sets, col+" = ?")
		args = append(args, v)
	}
	if in.Name != nil {
		add("name", *in.Name)
	}
	if in.FlowVersion != nil {
		add("flow_version", nullStrPtr(*in.FlowVersion))
	}
	if in.InfrastructurePID != nil {
		add("infrastructure_pid", nullStrPtr(*in.InfrastructurePID))
	}
	if in.Parameters != nil {
		b, err := runcodec.EncodeMap(*in.Parameters)
		if err != nil {
			return fmt.Errorf("%w: parameters: %v", store.ErrInvalid, err)
		}
		add("parameters", string(b))
	}
	if in.JobVariables != nil {
		b, err := runcodec.EncodeMap(*in.JobVariables)
		if err != nil {
			return fmt.Errorf("%w: job_variables: %v", store.ErrInvalid, err)
		}
		add("job_variables", string(b))
	}
	if in.EmpiricalPolicy != nil {
		add("empirical_policy", string(runcodec.EncodeFlowPolicy(*in.EmpiricalPolicy)))
	}
	if in.Tags != nil {
		add("tags", string(rowcodec.EncodeTags(*in.Tags)))
	}
	args = append(args, id.String())
	query := "UPDATE flow_run SET " + strings.Join(sets, ", ") + " WHERE id = ?"
	var n int64
	err := s.write(ctx, func(ctx context.Context, _ *sqlitedb.Queries, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("flow run %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// UpdateFlowRunLabels implements store.Store.
func (s *Store) UpdateFlowRunLabels(ctx context.Context, id uuid.UUID, labels map[string]any) error {
	return s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, _ *sql.Tx) error {
		raw, err := q.LockFlowRunLabels(ctx, id.String())
		if err != nil {
			return notFound(err, "flow run")
		}
		current := map[string]any{}
		if raw.Valid {
			if current, err = runcodec.DecodeMap([]byte(raw.String)); err != nil {
				return err
			}
		}
		for k, v := range labels {
			current[k] = v
		}
		b, err := rowcodec.EncodeObject(current)
		if err != nil {
			return fmt.Errorf("%w: labels: %v", store.ErrInvalid, err)
		}
		_, err = q.UpdateFlowRunLabels(ctx, sqlitedb.UpdateFlowRunLabelsParams{ID: id.String(), Labels: nullString(b), Updated: formatTime(store.Now())})
		return err
	})
}

// DeleteFlowRun implements store.Store.
func (s *Store) DeleteFlowRun(ctx context.Context, id uuid.UUID) error {
	var n int64
	err := s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, _ *sql.Tx) error {
		var err error
		n, err = q.DeleteFlowRun(ctx, id.String())
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("flow run %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// BulkDeleteFlowRuns implements store.Store.
func (s *Store) BulkDeleteFlowRuns(ctx context.Context, f filter.FlowRunFilterSet, limit int) ([]uuid.UUID, error) {
	query, args, err := runcodec.FlowRunIDs(filter.SQLite, f, limit)
	if err != nil {
		return nil, err
	}
	deleted := []uuid.UUID{}
	err = s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for len(ids) > 0 {
			batch := ids[:min(len(ids), 500)]
			ids = ids[len(batch):]
			if _, err := q.DeleteFlowRunsByIDs(ctx, batch); err != nil {
				return err
			}
			for _, id := range batch {
				u, err := uuid.Parse(id)
				if err != nil {
					return fmt.Errorf("flow run id %q: %w", id, err)
				}
				deleted = append(deleted, u)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return deleted, nil
}

// FlowRunHistory implements store.Store.
func (s *Store) FlowRunHistory(ctx context.Context, hq store.HistoryQuery) ([]store.HistoryInterval, error) {
	if store.HistoryIntervals(hq) == 0 {
		return []store.HistoryInterval{}, nil
	}
	query, args, err := runcodec.FlowRunHistorySelect(filter.SQLite, hq)
	if err != nil {
		return nil, err
	}
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var runs []orchestration.RunCore
	for rows.Next() {
		var st, name, ts, expected, start sql.NullString
		var total float64
		if err := rows.Scan(&st, &name, &ts, &expected, &start, &total); err != nil {
			return nil, mapErr(err)
		}
		c, err := runCore(uuid.Nil.String(), sql.NullString{}, st, name, ts, 0, start, sql.NullString{}, total, expected, sql.NullString{})
		if err != nil {
			return nil, err
		}
		runs = append(runs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(err)
	}
	return store.BucketHistory(hq, runs, time.Now()), nil
}

// FlowRunLateness implements store.Store.
func (s *Store) FlowRunLateness(ctx context.Context, f filter.FlowRunFilterSet) (*float64, error) {
	query, args, err := runcodec.FlowRunLateness(filter.SQLite, f)
	if err != nil {
		return nil, err
	}
	var avg sql.NullFloat64
	if err := s.reader.QueryRowContext(ctx, query, args...).Scan(&avg); err != nil {
		return nil, mapErr(err)
	}
	if !avg.Valid {
		return nil, nil
	}
	return &avg.Float64, nil
}

// ReadFlowRunGraphV1 implements store.Store.
func (s *Store) ReadFlowRunGraphV1(ctx context.Context, id uuid.UUID) ([]store.TaskRunDependency, error) {
	exists, err := s.rq.FlowRunExists(ctx, id.String())
	if err != nil {
		return nil, mapErr(err)
	}
	if exists == 0 {
		return nil, fmt.Errorf("flow run %s: %w", id, store.ErrNotFound)
	}
	trs, err := s.rq.ListTaskRunsForGraph(ctx, sql.NullString{String: id.String(), Valid: true})
	if err != nil {
		return nil, mapErr(err)
	}
	states, err := taskStatesByID(ctx, s.rq, trs)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := []store.TaskRunDependency{}
	for _, tr := range trs {
		deps, err := runcodec.Dependencies([]byte(tr.TaskInputs))
		if err != nil {
			return nil, err
		}
		core, err := runCore(tr.ID, tr.StateID, tr.StateType, tr.StateName, tr.StateTimestamp, tr.RunCount, tr.StartTime, tr.EndTime, tr.TotalRunTime, tr.ExpectedStartTime, tr.NextScheduledStartTime)
		if err != nil {
			return nil, err
		}
		d := store.TaskRunDependency{
			ID: core.ID, Name: tr.Name, UpstreamDependencies: deps, ExpectedStartTime: core.ExpectedStartTime,
			StartTime: core.StartTime, EndTime: core.EndTime, TotalRunTime: core.TotalRunTime,
			EstimatedRunTime: store.EstimatedRunTime(&core, now),
		}
		if core.StateID != nil {
			d.State = states[*core.StateID]
			if d.State != nil {
				d.UntrackableResult = d.State.StateDetails.UntrackableResult
			}
		}
		out = append(out, d)
	}
	return out, nil
}

func taskStatesByID(ctx context.Context, q *sqlitedb.Queries, trs []sqlitedb.TaskRun) (map[uuid.UUID]*orchestration.State, error) {
	var ids []string
	for _, tr := range trs {
		if tr.StateID.Valid {
			ids = append(ids, tr.StateID.String)
		}
	}
	out := map[uuid.UUID]*orchestration.State{}
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 500)]
		ids = ids[len(batch):]
		rows, err := q.GetTaskRunStatesByIDsForGraph(ctx, batch)
		if err != nil {
			return nil, mapErr(err)
		}
		for _, r := range rows {
			st, err := taskStateFromRow(r.TaskRunState, r.ArtifactData)
			if err != nil {
				return nil, err
			}
			out[st.ID] = &st
		}
	}
	return out, nil
}

// ReadFlowRunGraphV2 implements store.Store.
func (s *Store) ReadFlowRunGraphV2(ctx context.Context, id uuid.UUID, since time.Time, maxNodes, maxArtifacts int) (g store.Graph, err error) {
	// One read transaction, so the nodes, artifacts and states agree.
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.reader != s.writer})
	if err != nil {
		return store.Graph{}, mapErr(err)
	}
	defer func() {
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) && err == nil {
			err = mapErr(rbErr)
		}
	}()
	q := s.rq.WithTx(tx)
	run, err := q.OrchGetFlowRun(ctx, id.String())
	if err != nil {
		return store.Graph{}, notFound(err, "flow run")
	}
	start, err := timePtr(run.StartTime)
	if err != nil {
		return store.Graph{}, err
	}
	if start == nil {
		if start, err = timePtr(run.ExpectedStartTime); err != nil {
			return store.Graph{}, err
		}
	}
	end, err := timePtr(run.EndTime)
	if err != nil {
		return store.Graph{}, err
	}
	fid := sql.NullString{String: id.String(), Valid: true}
	trs, err := q.ListTaskRunsForGraph(ctx, fid)
	if err != nil {
		return store.Graph{}, mapErr(err)
	}
	subs, err := q.ListSubflowRunsForGraph(ctx, fid)
	if err != nil {
		return store.Graph{}, mapErr(err)
	}
	arts, err := q.ListGraphArtifacts(ctx, sqlitedb.ListGraphArtifactsParams{FlowRunID: fid, MaxArtifacts: int64(maxArtifacts)})
	if err != nil {
		return store.Graph{}, mapErr(err)
	}
	sts, err := q.ListFlowRunStatesForGraph(ctx, id.String())
	if err != nil {
		return store.Graph{}, mapErr(err)
	}
	tasks := make([]runcodec.GraphTaskRun, len(trs))
	for i, tr := range trs {
		c, err := runCore(tr.ID, tr.StateID, tr.StateType, tr.StateName, tr.StateTimestamp, tr.RunCount, tr.StartTime, tr.EndTime, tr.TotalRunTime, tr.ExpectedStartTime, tr.NextScheduledStartTime)
		if err != nil {
			return store.Graph{}, err
		}
		tasks[i] = runcodec.GraphTaskRun{ID: c.ID, Name: tr.Name, StateType: c.StateType, StartTime: c.StartTime,
			ExpectedStartTime: c.ExpectedStartTime, EndTime: c.EndTime, TaskInputs: []byte(tr.TaskInputs)}
	}
	subflows := make([]runcodec.GraphSubflow, len(subs))
	for i, sf := range subs {
		c, err := runCore(sf.ID, sql.NullString{}, sf.StateType, sql.NullString{}, sql.NullString{}, 0, sf.StartTime, sf.EndTime, 0, sf.ExpectedStartTime, sql.NullString{})
		if err != nil {
			return store.Graph{}, err
		}
		parent, err := uuidFromNull(sf.ParentTaskRunID)
		if err != nil || parent == nil {
			return store.Graph{}, fmt.Errorf("subflow %s: parent task run: %v", sf.ID, err)
		}
		subflows[i] = runcodec.GraphSubflow{ID: c.ID, Name: sf.Name, FlowName: strPtr(sf.FlowName), StateType: c.StateType,
			StartTime: c.StartTime, ExpectedStartTime: c.ExpectedStartTime, EndTime: c.EndTime, ParentTaskRunID: *parent}
	}
	artifacts := make([]runcodec.GraphArtifactRow, len(arts))
	for i, a := range arts {
		aid, err := uuid.Parse(a.ID)
		if err != nil {
			return store.Graph{}, fmt.Errorf("artifact id %q: %w", a.ID, err)
		}
		created, err := parseTime(a.Created)
		if err != nil {
			return store.Graph{}, err
		}
		taskRunID, err := uuidFromNull(a.TaskRunID)
		if err != nil {
			return store.Graph{}, err
		}
		ga := store.GraphArtifact{ID: aid, Created: created, Key: strPtr(a.Key), Type: strPtr(a.Type), IsLatest: a.IsLatest}
		if a.Type.Valid && a.Type.String == "progress" && a.Data.Valid {
			ga.Data = json.RawMessage(a.Data.String)
		}
		artifacts[i] = runcodec.GraphArtifactRow{GraphArtifact: ga, TaskRunID: taskRunID}
	}
	states := make([]store.GraphState, len(sts))
	for i, st := range sts {
		sid, err := uuid.Parse(st.ID)
		if err != nil {
			return store.Graph{}, fmt.Errorf("state id %q: %w", st.ID, err)
		}
		ts, err := parseTime(st.Timestamp)
		if err != nil {
			return store.Graph{}, err
		}
		states[i] = store.GraphState{ID: sid, Timestamp: ts, Type: orchestration.StateType(st.Type), Name: st.Name}
	}
	return runcodec.BuildGraph(start, end, tasks, subflows, artifacts, states, store.Truncate(since), maxNodes)
}

// CreateFlowRunInput implements store.Store.
func (s *Store) CreateFlowRunInput(ctx context.Context, in store.FlowRunInput) (store.FlowRunInput, error) {
	var row sqlitedb.FlowRunInput
	err := s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, _ *sql.Tx) error {
		// Checked first so a missing run is told apart from a taken key.
		n, err := q.FlowRunExists(ctx, in.FlowRunID.String())
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("flow run %s: %w", in.FlowRunID, store.ErrNotFound)
		}
		row, err = q.InsertFlowRunInput(ctx, sqlitedb.InsertFlowRunInputParams{
			ID: uuid.NewString(), Created: formatTime(store.Now()), FlowRunID: in.FlowRunID.String(), Key: in.Key, Value: in.Value, Sender: nullStrPtr(in.Sender),
		})
		return err
	})
	if err != nil {
		return store.FlowRunInput{}, err
	}
	return inputFromRow(row)
}

// ReadFlowRunInput implements store.Store.
func (s *Store) ReadFlowRunInput(ctx context.Context, flowRunID uuid.UUID, key string) (store.FlowRunInput, error) {
	row, err := s.rq.GetFlowRunInput(ctx, sqlitedb.GetFlowRunInputParams{FlowRunID: flowRunID.String(), Key: key})
	if err != nil {
		return store.FlowRunInput{}, notFound(err, "flow run input")
	}
	return inputFromRow(row)
}

// FilterFlowRunInputs implements store.Store.
func (s *Store) FilterFlowRunInputs(ctx context.Context, flowRunID uuid.UUID, prefix string, limit int, exclude []string) ([]store.FlowRunInput, error) {
	rows, err := s.rq.ListFlowRunInputsByPrefix(ctx, sqlitedb.ListFlowRunInputsByPrefixParams{FlowRunID: flowRunID.String(), Prefix: sql.NullString{String: prefix, Valid: true}})
	if err != nil {
		return nil, mapErr(err)
	}
	out := []store.FlowRunInput{}
	for _, r := range rows {
		if slices.Contains(exclude, r.Key) {
			continue
		}
		if limit > 0 && len(out) >= limit {
			break
		}
		in, err := inputFromRow(r)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// DeleteFlowRunInput implements store.Store.
func (s *Store) DeleteFlowRunInput(ctx context.Context, flowRunID uuid.UUID, key string) error {
	var n int64
	err := s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, _ *sql.Tx) error {
		var err error
		n, err = q.DeleteFlowRunInput(ctx, sqlitedb.DeleteFlowRunInputParams{FlowRunID: flowRunID.String(), Key: key})
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("flow run input: %w", store.ErrNotFound)
	}
	return nil
}

func inputFromRow(r sqlitedb.FlowRunInput) (store.FlowRunInput, error) {
	id, err := uuid.Parse(r.ID)
	if err != nil {
		return store.FlowRunInput{}, fmt.Errorf("input id %q: %w", r.ID, err)
	}
	runID, err := uuid.Parse(r.FlowRunID)
	if err != nil {
		return store.FlowRunInput{}, fmt.Errorf("flow run id %q: %w", r.FlowRunID, err)
	}
	created, err := parseTime(r.Created)
	if err != nil {
		return store.FlowRunInput{}, err
	}
	updated, err := parseTime(r.Updated)
	if err != nil {
		return store.FlowRunInput{}, err
	}
	return store.FlowRunInput{ID: id, Created: created, Updated: updated, FlowRunID: runID, Key: r.Key, Value: r.Value, Sender: strPtr(r.Sender)}, nil
}

// ReadFlowRunState implements store.Store.
func (s *Store) ReadFlowRunState(ctx context.Context, id uuid.UUID) (orchestration.State, error) {
	row, err := s.rq.OrchGetFlowRunState(ctx, id.String())
	if err != nil {
		return orchestration.State{}, notFound(err, "flow run state")
	}
	return flowStateFromRow(row.FlowRunState, row.ArtifactData)
}

// ReadFlowRunStates implements store.Store.
func (s *Store) ReadFlowRunStates(ctx context.Context, flowRunID uuid.UUID) ([]orchestration.State, error) {
	rows, err := s.rq.ListFlowRunStates(ctx, flowRunID.String())
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]orchestration.State, 0, len(rows))
	for _, r := range rows {
		st, err := flowStateFromRow(r.FlowRunState, r.ArtifactData)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func flowRunFromRow(r sqlitedb.FlowRun, poolID, poolName sql.NullString) (store.FlowRun, error) {
	core, err := runCore(r.ID, r.StateID, r.StateType, r.StateName, r.StateTimestamp, r.RunCount, r.StartTime, r.EndTime, r.TotalRunTime, r.ExpectedStartTime, r.NextScheduledStartTime)
	if err != nil {
		return store.FlowRun{}, err
	}
	fr := store.FlowRun{
		RunCore:           core,
		Name:              r.Name,
		DeploymentVersion: strPtr(r.DeploymentVersion),
		WorkQueueName:     strPtr(r.WorkQueueName),
		WorkPoolName:      strPtr(poolName),
		FlowVersion:       strPtr(r.FlowVersion),
		IdempotencyKey:    strPtr(r.IdempotencyKey),
		InfrastructurePID: strPtr(r.InfrastructurePid),
		AutoScheduled:     r.AutoScheduled,
	}
	if fr.FlowID, err = uuid.Parse(r.FlowID); err != nil {
		return fr, fmt.Errorf("flow id %q: %w", r.FlowID, err)
	}
	for _, f := range []struct {
		dst **uuid.UUID
		src sql.NullString
	}{{&fr.DeploymentID, r.DeploymentID}, {&fr.WorkQueueID, r.WorkQueueID}, {&fr.WorkPoolID, poolID},
		{&fr.InfrastructureDocumentID, r.InfrastructureDocumentID}, {&fr.ParentTaskRunID, r.ParentTaskRunID}} {
		if *f.dst, err = uuidFromNull(f.src); err != nil {
			return fr, err
		}
	}
	if fr.Created, err = parseTime(r.Created); err != nil {
		return fr, err
	}
	if fr.Updated, err = parseTime(r.Updated); err != nil {
		return fr, err
	}
	if fr.Parameters, err = runcodec.DecodeMap([]byte(r.Parameters)); err != nil {
		return fr, err
	}
	if fr.Context, err = runcodec.DecodeMap([]byte(r.Context)); err != nil {
		return fr, err
	}
	if fr.EmpiricalPolicy, err = runcodec.DecodeFlowPolicy([]byte(r.EmpiricalPolicy)); err != nil {
		return fr, err
	}
	if fr.Tags, err = rowcodec.DecodeTags([]byte(r.Tags)); err != nil {
		return fr, err
	}
	if r.Labels.Valid {
		if fr.Labels, err = rowcodec.DecodeObject([]byte(r.Labels.String)); err != nil {
			return fr, err
		}
	}
	if r.JobVariables.Valid {
		if fr.JobVariables, err = rowcodec.DecodeObject([]byte(r.JobVariables.String)); err != nil {
			return fr, err
		}
	}
	if r.CreatedBy.Valid && r.CreatedBy.String != "null" && r.CreatedBy.String != "" {
		fr.CreatedBy = json.RawMessage(r.CreatedBy.String)
	}
	return fr, nil
}

func nullJSON(b json.RawMessage) []byte {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return b
}
