package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/prefect-go/prefect-server/gen/db/pgdb"
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
	for _, t := range []*string{&in.Name, in.DeploymentVersion, in.WorkQueueName, in.WorkPoolName, in.FlowVersion, in.IdempotencyKey} {
		if t != nil {
			if err := checkText(*t); err != nil {
				return store.FlowRunCreated{}, err
			}
		}
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
	err = s.inTx(ctx, func(q *pgdb.Queries, tx pgx.Tx) error {
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
		newID := uuid.New()
		id, err := q.InsertFlowRun(ctx, pgdb.InsertFlowRunParams{
			ID: newID, Created: store.Now(), FlowID: in.FlowID, Name: in.Name,
			DeploymentID: nullUUID(in.DeploymentID), DeploymentVersion: textPtr(in.DeploymentVersion),
			WorkQueueID: nullUUID(queueID), WorkQueueName: textPtr(in.WorkQueueName),
			FlowVersion: textPtr(in.FlowVersion), Parameters: params, IdempotencyKey: textPtr(in.IdempotencyKey),
			Context: runCtx, EmpiricalPolicy: runcodec.EncodeFlowPolicy(policy), Tags: rowcodec.EncodeTags(in.Tags),
			Labels: encLabels, CreatedBy: nullJSON(in.CreatedBy), InfrastructureDocumentID: nullUUID(in.InfrastructureDocumentID),
			ParentTaskRunID: nullUUID(in.ParentTaskRunID), JobVariables: jobVars, AutoScheduled: in.AutoScheduled,
		})
		out.Created = true
		if errors.Is(err, pgx.ErrNoRows) {
			// The idempotency key is taken: ON CONFLICT DO NOTHING waited
			// for the other writer, so its row is visible now.
			out.Created = false
			id, err = q.GetFlowRunIDByIdempotencyKey(ctx, pgdb.GetFlowRunIDByIdempotencyKeyParams{FlowID: in.FlowID, IdempotencyKey: textPtr(in.IdempotencyKey)})
		}
		if err != nil {
			return err
		}
		if out.Created && in.State != nil {
			force := opts
			force.Force = true
			res, err := s.applyFlowRunState(ctx, tx, id, *in.State, force)
			if err != nil {
				return err
			}
			out.Effects = res.Effects
		}
		out.Run, err = readFlowRun(ctx, q, id)
		return err
	})
	if err != nil {
		return store.FlowRunCreated{}, err
	}
	return out, nil
}

// flowRunLabels is Prefect's with_system_labels_for_flow_run.
func flowRunLabels(ctx context.Context, q *pgdb.Queries, in store.FlowRunCreate) (map[string]any, error) {
	out := map[string]any{}
	if in.DeploymentID != nil {
		dep, err := q.GetDeploymentForFlowRun(ctx, *in.DeploymentID)
		if err == nil {
			parent, err := rowcodec.DecodeObject(dep.Labels)
			if err != nil {
				return nil, err
			}
			for k, v := range parent {
				out[k] = v
			}
			out["prefect.flow.id"] = dep.FlowID.String()
			out["prefect.deployment.id"] = dep.ID.String()
			for k, v := range in.Labels {
				out[k] = v
			}
			return out, nil
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return nil, err
		}
	}
	raw, err := q.GetFlowLabelsForFlowRun(ctx, in.FlowID)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	parent, err := rowcodec.DecodeObject(raw)
	if err != nil {
		return nil, err
	}
	for k, v := range parent {
		out[k] = v
	}
	out["prefect.flow.id"] = in.FlowID.String()
	for k, v := range in.Labels {
		out[k] = v
	}
	return out, nil
}

func resolveWorkQueue(ctx context.Context, q *pgdb.Queries, pool string, queue *string) (uuid.UUID, error) {
	if err := checkText(pool); err != nil {
		return uuid.Nil, err
	}
	if queue != nil {
		id, err := q.GetWorkQueueInPool(ctx, pgdb.GetWorkQueueInPoolParams{PoolName: pool, QueueName: *queue})
		if errors.Is(err, pgx.ErrNoRows) {
			return uuid.Nil, fmt.Errorf("Work queue %q not found in work pool %q: %w", *queue, pool, store.ErrNotFound)
		}
		return id, err
	}
	id, err := q.GetWorkPoolDefaultQueue(ctx, pool)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !id.Valid) {
		return uuid.Nil, fmt.Errorf("Work pool %q not found: %w", pool, store.ErrNotFound)
	}
	return id.UUID, err
}

func readFlowRun(ctx context.Context, q *pgdb.Queries, id uuid.UUID) (store.FlowRun, error) {
	row, err := q.GetFlowRun(ctx, id)
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
	return readFlowRun(ctx, s.q, id)
}

// ReadFlowRuns implements store.Store.
func (s *Store) ReadFlowRuns(ctx context.Context, fq store.FlowRunQuery) ([]store.FlowRun, error) {
	sql, args, err := runcodec.FlowRunSelect(filter.Postgres, fq)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []store.FlowRun{}
	for rows.Next() {
		var r pgdb.FlowRun
		var poolID uuid.NullUUID
		var poolName pgtype.Text
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
	if err := rows.Err(); err != nil {
		return nil, mapErr(err)
	}
	// States in one round trip rather than one per run.
	var ids []uuid.UUID
	for _, fr := range out {
		if fr.StateID != nil {
			ids = append(ids, *fr.StateID)
		}
	}
	if len(ids) == 0 {
		return out, nil
	}
	states, err := s.q.GetFlowRunStatesByIDs(ctx, ids)
	if err != nil {
		return nil, mapErr(err)
	}
	byID := make(map[uuid.UUID]*orchestration.State, len(states))
	for _, r := range states {
		st, err := flowStateFromRow(r.FlowRunState, r.ArtifactData)
		if err != nil {
			return nil, err
		}
		byID[st.ID] = &st
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
	sql, args, err := runcodec.FlowRunCount(filter.Postgres, f)
	if err != nil {
		return 0, err
	}
	var n int64
	return n, mapErr(s.pool.QueryRow(ctx, sql, args...).Scan(&n))
}

// UpdateFlowRun implements store.Store.
func (s *Store) UpdateFlowRun(ctx context.Context, id uuid.UUID, in store.FlowRunUpdate) error {
	sets := []string{"updated = $1"}
	args := []any{store.Now()}
	add := func(col string, v any) {
		args = append(args, v)
		sets = append(sets, fmt.Sprintf("%s = $%d", col, len(args)))
	}
	if in.Name != nil {
		if err := checkText(*in.Name); err != nil {
			return err
		}
		add("name", *in.Name)
	}
	if in.FlowVersion != nil {
		add("flow_version", textPtr(*in.FlowVersion))
	}
	if in.InfrastructurePID != nil {
		add("infrastructure_pid", textPtr(*in.InfrastructurePID))
	}
	if in.Parameters != nil {
		b, err := runcodec.EncodeMap(*in.Parameters)
		if err != nil {
			return fmt.Errorf("%w: parameters: %v", store.ErrInvalid, err)
		}
		add("parameters", b)
	}
	if in.JobVariables != nil {
		b, err := runcodec.EncodeMap(*in.JobVariables)
		if err != nil {
			return fmt.Errorf("%w: job_variables: %v", store.ErrInvalid, err)
		}
		add("job_variables", b)
	}
	if in.EmpiricalPolicy != nil {
		add("empirical_policy", runcodec.EncodeFlowPolicy(*in.EmpiricalPolicy))
	}
	if in.Tags != nil {
		add("tags", rowcodec.EncodeTags(*in.Tags))
	}
	args = append(args, id)
	sql := fmt.Sprintf("UPDATE flow_run SET %s WHERE id = $%d", strings.Join(sets, ", "), len(args))
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("flow run %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// UpdateFlowRunLabels implements store.Store.
func (s *Store) UpdateFlowRunLabels(ctx context.Context, id uuid.UUID, labels map[string]any) error {
	return s.inTx(ctx, func(q *pgdb.Queries, _ pgx.Tx) error {
		raw, err := q.LockFlowRunLabels(ctx, id)
		if err != nil {
			return notFound(err, "flow run")
		}
		current, err := rowcodec.DecodeObject(raw)
		if err != nil {
			return err
		}
		if current == nil {
			current = map[string]any{}
		}
		for k, v := range labels {
			current[k] = v
		}
		b, err := rowcodec.EncodeObject(current)
		if err != nil {
			return fmt.Errorf("%w: labels: %v", store.ErrInvalid, err)
		}
		_, err = q.UpdateFlowRunLabels(ctx, pgdb.UpdateFlowRunLabelsParams{ID: id, Labels: b, Updated: store.Now()})
		return err
	})
}

// DeleteFlowRun implements store.Store.
func (s *Store) DeleteFlowRun(ctx context.Context, id uuid.UUID) error {
	n, err := s.q.DeleteFlowRun(ctx, id)
	if err != nil {
		return mapErr(err)
	}
	if n == 0 {
		return fmt.Errorf("flow run %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// BulkDeleteFlowRuns implements store.Store.
func (s *Store) BulkDeleteFlowRuns(ctx context.Context, f filter.FlowRunFilterSet, limit int) ([]uuid.UUID, error) {
	sql, args, err := runcodec.FlowRunIDs(filter.Postgres, f, limit)
	if err != nil {
		return nil, err
	}
	deleted := []uuid.UUID{}
	err = s.inTx(ctx, func(q *pgdb.Queries, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sql+" FOR UPDATE OF flow_run", args...)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil || len(ids) == 0 {
			return err
		}
		got, err := q.DeleteFlowRunsByIDs(ctx, ids)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if slices.Contains(got, id) {
				deleted = append(deleted, id)
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
	sql, args, err := runcodec.FlowRunHistorySelect(filter.Postgres, hq)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var runs []orchestration.RunCore
	for rows.Next() {
		var st pgdb.NullStateType
		var name pgtype.Text
		var ts, expected, start *time.Time
		var total float64
		if err := rows.Scan(&st, &name, &ts, &expected, &start, &total); err != nil {
			return nil, mapErr(err)
		}
		runs = append(runs, runCore(uuid.Nil, uuid.NullUUID{}, st, name, ts, 0, start, nil, total, expected, nil))
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(err)
	}
	return store.BucketHistory(hq, runs, time.Now()), nil
}

// FlowRunLateness implements store.Store.
func (s *Store) FlowRunLateness(ctx context.Context, f filter.FlowRunFilterSet) (*float64, error) {
	sql, args, err := runcodec.FlowRunLateness(filter.Postgres, f)
	if err != nil {
		return nil, err
	}
	var avg pgtype.Float8
	if err := s.pool.QueryRow(ctx, sql, args...).Scan(&avg); err != nil {
		return nil, mapErr(err)
	}
	if !avg.Valid {
		return nil, nil
	}
	return &avg.Float64, nil
}

// ReadFlowRunGraphV1 implements store.Store.
func (s *Store) ReadFlowRunGraphV1(ctx context.Context, id uuid.UUID) ([]store.TaskRunDependency, error) {
	exists, err := s.q.FlowRunExists(ctx, id)
	if err != nil {
		return nil, mapErr(err)
	}
	if !exists {
		return nil, fmt.Errorf("flow run %s: %w", id, store.ErrNotFound)
	}
	trs, err := s.q.ListTaskRunsForGraph(ctx, uuid.NullUUID{UUID: id, Valid: true})
	if err != nil {
		return nil, mapErr(err)
	}
	states, err := s.taskStatesByID(ctx, trs)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := []store.TaskRunDependency{}
	for _, tr := range trs {
		deps, err := runcodec.Dependencies(tr.TaskInputs)
		if err != nil {
			return nil, err
		}
		core := runCore(tr.ID, tr.StateID, tr.StateType, tr.StateName, tr.StateTimestamp, tr.RunCount, tr.StartTime, tr.EndTime, tr.TotalRunTime, tr.ExpectedStartTime, tr.NextScheduledStartTime)
		d := store.TaskRunDependency{
			ID: tr.ID, Name: tr.Name, UpstreamDependencies: deps, ExpectedStartTime: core.ExpectedStartTime,
			StartTime: core.StartTime, EndTime: core.EndTime, TotalRunTime: core.TotalRunTime,
			EstimatedRunTime: store.EstimatedRunTime(&core, now),
		}
		if tr.StateID.Valid {
			d.State = states[tr.StateID.UUID]
			if d.State != nil {
				d.UntrackableResult = d.State.StateDetails.UntrackableResult
			}
		}
		out = append(out, d)
	}
	return out, nil
}

func (s *Store) taskStatesByID(ctx context.Context, trs []pgdb.TaskRun) (map[uuid.UUID]*orchestration.State, error) {
	var ids []uuid.UUID
	for _, tr := range trs {
		if tr.StateID.Valid {
			ids = append(ids, tr.StateID.UUID)
		}
	}
	out := map[uuid.UUID]*orchestration.State{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.q.GetTaskRunStatesByIDsForGraph(ctx, ids)
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
	return out, nil
}

// ReadFlowRunGraphV2 implements store.Store.
func (s *Store) ReadFlowRunGraphV2(ctx context.Context, id uuid.UUID, since time.Time, maxNodes, maxArtifacts int) (store.Graph, error) {
	var g store.Graph
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		run, err := q.OrchGetFlowRun(ctx, id)
		if err != nil {
			return notFound(err, "flow run")
		}
		start := truncPtr(run.StartTime)
		if start == nil {
			start = truncPtr(run.ExpectedStartTime)
		}
		fid := uuid.NullUUID{UUID: id, Valid: true}
		trs, err := q.ListTaskRunsForGraph(ctx, fid)
		if err != nil {
			return err
		}
		subs, err := q.ListSubflowRunsForGraph(ctx, fid)
		if err != nil {
			return err
		}
		arts, err := q.ListGraphArtifacts(ctx, pgdb.ListGraphArtifactsParams{FlowRunID: fid, MaxArtifacts: int32(min(maxArtifacts, 1<<30))})
		if err != nil {
			return err
		}
		sts, err := q.ListFlowRunStatesForGraph(ctx, id)
		if err != nil {
			return err
		}
		tasks := make([]runcodec.GraphTaskRun, len(trs))
		for i, tr := range trs {
			tasks[i] = runcodec.GraphTaskRun{ID: tr.ID, Name: tr.Name, StateType: stateType(tr.StateType),
				StartTime: truncPtr(tr.StartTime), ExpectedStartTime: truncPtr(tr.ExpectedStartTime), EndTime: truncPtr(tr.EndTime), TaskInputs: tr.TaskInputs}
		}
		subflows := make([]runcodec.GraphSubflow, len(subs))
		for i, sf := range subs {
			subflows[i] = runcodec.GraphSubflow{ID: sf.ID, Name: sf.Name, FlowName: ptrText(sf.FlowName), StateType: stateType(sf.StateType),
				StartTime: truncPtr(sf.StartTime), ExpectedStartTime: truncPtr(sf.ExpectedStartTime), EndTime: truncPtr(sf.EndTime), ParentTaskRunID: sf.ParentTaskRunID.UUID}
		}
		artifacts := make([]runcodec.GraphArtifactRow, len(arts))
		for i, a := range arts {
			ga := store.GraphArtifact{ID: a.ID, Created: store.Truncate(a.Created), Key: ptrText(a.Key), Type: ptrText(a.Type), IsLatest: a.IsLatest}
			if a.Type.Valid && a.Type.String == "progress" {
				ga.Data = json.RawMessage(a.Data)
			}
			artifacts[i] = runcodec.GraphArtifactRow{GraphArtifact: ga, TaskRunID: uuidPtr(a.TaskRunID)}
		}
		states := make([]store.GraphState, len(sts))
		for i, st := range sts {
			states[i] = store.GraphState{ID: st.ID, Timestamp: store.Truncate(st.Timestamp), Type: orchestration.StateType(st.Type), Name: st.Name}
		}
		g, err = runcodec.BuildGraph(start, truncPtr(run.EndTime), tasks, subflows, artifacts, states, since, maxNodes)
		return err
	})
	if err != nil {
		if errors.Is(err, store.ErrGraphTooLarge) || errors.Is(err, store.ErrNotFound) {
			return store.Graph{}, err
		}
		return store.Graph{}, mapErr(err)
	}
	return g, nil
}

func stateType(t pgdb.NullStateType) orchestration.StateType {
	if !t.Valid {
		return orchestration.NoState
	}
	return orchestration.StateType(t.StateType)
}

// CreateFlowRunInput implements store.Store.
func (s *Store) CreateFlowRunInput(ctx context.Context, in store.FlowRunInput) (store.FlowRunInput, error) {
	for _, t := range []string{in.Key, in.Value, deref(in.Sender)} {
		if err := checkText(t); err != nil {
			return store.FlowRunInput{}, err
		}
	}
	row, err := s.q.InsertFlowRunInput(ctx, pgdb.InsertFlowRunInputParams{
		ID: uuid.New(), Created: store.Now(), FlowRunID: in.FlowRunID, Key: in.Key, Value: in.Value, Sender: textPtr(in.Sender),
	})
	if err != nil {
		err = mapErr(err)
		if errors.Is(err, store.ErrConflict) && strings.Contains(err.Error(), "foreign key") {
			return store.FlowRunInput{}, fmt.Errorf("flow run %s: %w", in.FlowRunID, store.ErrNotFound)
		}
		return store.FlowRunInput{}, err
	}
	return inputFromRow(row), nil
}

// ReadFlowRunInput implements store.Store.
func (s *Store) ReadFlowRunInput(ctx context.Context, flowRunID uuid.UUID, key string) (store.FlowRunInput, error) {
	if checkText(key) != nil {
		return store.FlowRunInput{}, fmt.Errorf("flow run input: %w", store.ErrNotFound)
	}
	row, err := s.q.GetFlowRunInput(ctx, pgdb.GetFlowRunInputParams{FlowRunID: flowRunID, Key: key})
	if err != nil {
		return store.FlowRunInput{}, notFound(err, "flow run input")
	}
	return inputFromRow(row), nil
}

// FilterFlowRunInputs implements store.Store.
func (s *Store) FilterFlowRunInputs(ctx context.Context, flowRunID uuid.UUID, prefix string, limit int, exclude []string) ([]store.FlowRunInput, error) {
	out := []store.FlowRunInput{}
	if checkText(prefix) != nil {
		return out, nil
	}
	rows, err := s.q.ListFlowRunInputsByPrefix(ctx, pgdb.ListFlowRunInputsByPrefixParams{FlowRunID: flowRunID, Prefix: prefix})
	if err != nil {
		return nil, mapErr(err)
	}
	for _, r := range rows {
		if slices.Contains(exclude, r.Key) {
			continue
		}
		if limit > 0 && len(out) >= limit {
			break
		}
		out = append(out, inputFromRow(r))
	}
	return out, nil
}

// DeleteFlowRunInput implements store.Store.
func (s *Store) DeleteFlowRunInput(ctx context.Context, flowRunID uuid.UUID, key string) error {
	if checkText(key) != nil {
		return fmt.Errorf("flow run input: %w", store.ErrNotFound)
	}
	n, err := s.q.DeleteFlowRunInput(ctx, pgdb.DeleteFlowRunInputParams{FlowRunID: flowRunID, Key: key})
	if err != nil {
		return mapErr(err)
	}
	if n == 0 {
		return fmt.Errorf("flow run input: %w", store.ErrNotFound)
	}
	return nil
}

func inputFromRow(r pgdb.FlowRunInput) store.FlowRunInput {
	return store.FlowRunInput{ID: r.ID, Created: store.Truncate(r.Created), Updated: store.Truncate(r.Updated),
		FlowRunID: r.FlowRunID, Key: r.Key, Value: r.Value, Sender: ptrText(r.Sender)}
}

// ReadFlowRunState implements store.Store.
func (s *Store) ReadFlowRunState(ctx context.Context, id uuid.UUID) (orchestration.State, error) {
	row, err := s.q.OrchGetFlowRunState(ctx, id)
	if err != nil {
		return orchestration.State{}, notFound(err, "flow run state")
	}
	return flowStateFromRow(row.FlowRunState, row.ArtifactData)
}

// ReadFlowRunStates implements store.Store.
func (s *Store) ReadFlowRunStates(ctx context.Context, flowRunID uuid.UUID) ([]orchestration.State, error) {
	rows, err := s.q.ListFlowRunStates(ctx, flowRunID)
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

func flowRunFromRow(r pgdb.FlowRun, poolID uuid.NullUUID, poolName pgtype.Text) (store.FlowRun, error) {
	fr := store.FlowRun{
		RunCore:                  runCore(r.ID, r.StateID, r.StateType, r.StateName, r.StateTimestamp, r.RunCount, r.StartTime, r.EndTime, r.TotalRunTime, r.ExpectedStartTime, r.NextScheduledStartTime),
		Created:                  store.Truncate(r.Created),
		Updated:                  store.Truncate(r.Updated),
		FlowID:                   r.FlowID,
		Name:                     r.Name,
		DeploymentID:             uuidPtr(r.DeploymentID),
		DeploymentVersion:        ptrText(r.DeploymentVersion),
		WorkQueueID:              uuidPtr(r.WorkQueueID),
		WorkQueueName:            ptrText(r.WorkQueueName),
		WorkPoolID:               uuidPtr(poolID),
		WorkPoolName:             ptrText(poolName),
		FlowVersion:              ptrText(r.FlowVersion),
		IdempotencyKey:           ptrText(r.IdempotencyKey),
		InfrastructurePID:        ptrText(r.InfrastructurePid),
		InfrastructureDocumentID: uuidPtr(r.InfrastructureDocumentID),
		ParentTaskRunID:          uuidPtr(r.ParentTaskRunID),
		AutoScheduled:            r.AutoScheduled,
	}
	var err error
	if fr.Parameters, err = runcodec.DecodeMap(r.Parameters); err != nil {
		return fr, err
	}
	if fr.Context, err = runcodec.DecodeMap(r.Context); err != nil {
		return fr, err
	}
	if fr.EmpiricalPolicy, err = runcodec.DecodeFlowPolicy(r.EmpiricalPolicy); err != nil {
		return fr, err
	}
	if fr.Tags, err = rowcodec.DecodeTags(r.Tags); err != nil {
		return fr, err
	}
	if fr.Labels, err = rowcodec.DecodeObject(r.Labels); err != nil {
		return fr, err
	}
	if fr.JobVariables, err = rowcodec.DecodeObject(r.JobVariables); err != nil {
		return fr, err
	}
	if len(r.CreatedBy) > 0 && string(r.CreatedBy) != "null" {
		fr.CreatedBy = json.RawMessage(r.CreatedBy)
	}
	return fr, nil
}

func nullJSON(b json.RawMessage) []byte {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return b
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
