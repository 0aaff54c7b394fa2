package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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

// trColumns is what every task run read selects: the row and its current
// state, in the order trScan reads them.
const trColumns = `task_run.id, task_run.created, task_run.updated, task_run.name, task_run.flow_run_id,
	task_run.task_key, task_run.dynamic_key, task_run.cache_key, task_run.cache_expiration, task_run.task_version,
	task_run.flow_run_run_count, task_run.empirical_policy, task_run.task_inputs, task_run.tags, task_run.labels,
	task_run.state_id, task_run.state_type::text, task_run.state_name, task_run.state_timestamp, task_run.run_count,
	task_run.expected_start_time, task_run.next_scheduled_start_time, task_run.start_time, task_run.end_time,
	task_run.total_run_time,
	trs.id, trs.type::text, trs.name, trs.timestamp, trs.message, trs.state_details, trs.data, tra.data`

// The result artifact holds the data of states written by set_state.
const trFrom = `task_run LEFT JOIN task_run_state trs ON trs.id = task_run.state_id
	LEFT JOIN artifact tra ON tra.id = trs.result_artifact_id`

// trMaxRows bounds the rows of one multi-row statement so that its bound
// parameters stay under PostgreSQL's 65535.
const trMaxRows = 1000

// CreateTaskRun implements store.Store.
func (s *Store) CreateTaskRun(ctx context.Context, in store.TaskRunCreate, opts orchestration.Options) (store.TaskRun, bool, store.SetStateResult, error) {
	var res store.SetStateResult
	for _, t := range []string{in.Name, in.TaskKey, in.DynamicKey, trDeref(in.CacheKey), trDeref(in.TaskVersion)} {
		if err := checkText(t); err != nil {
			return store.TaskRun{}, false, res, err
		}
	}
	policy, err := json.Marshal(in.EmpiricalPolicy)
	if err != nil {
		return store.TaskRun{}, false, res, fmt.Errorf("%w: empirical_policy: %v", store.ErrInvalid, err)
	}
	inputs := []byte(in.TaskInputs)
	if len(inputs) == 0 {
		inputs = []byte("{}")
	}
	id := uuid.New()
	if in.ID != nil {
		id = *in.ID
	}
	now := store.Now()
	var (
		tr      store.TaskRun
		created bool
	)
	err = s.inTx(ctx, func(q *pgdb.Queries, tx pgx.Tx) error {
		labels, err := s.trLabels(ctx, q, in)
		if err != nil {
			return err
		}
		arg := pgdb.InsertTaskRunParams{
			ID:              id,
			Created:         now,
			Name:            in.Name,
			FlowRunID:       trNullUUID(in.FlowRunID),
			TaskKey:         in.TaskKey,
			DynamicKey:      in.DynamicKey,
			CacheKey:        trText(in.CacheKey),
			CacheExpiration: trTimePtr(in.CacheExpiration),
			TaskVersion:     trText(in.TaskVersion),
			EmpiricalPolicy: policy,
			Tags:            rowcodec.EncodeTags(in.Tags),
			Labels:          labels,
			TaskInputs:      inputs,
		}
		runID := id
		if in.FlowRunID != nil {
			got, err := q.InsertTaskRun(ctx, arg)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				// The natural key exists: ON CONFLICT DO NOTHING waited
				// for its writer to commit, so this read sees the row.
				if runID, err = q.GetTaskRunIDByNaturalKey(ctx, pgdb.GetTaskRunIDByNaturalKeyParams{
					FlowRunID: arg.FlowRunID, TaskKey: in.TaskKey, DynamicKey: in.DynamicKey,
				}); err != nil {
					return err
				}
			case err != nil:
				return err
			default:
				runID, created = got, true
			}
		} else {
			// No unique index covers flow_run_id IS NULL: serialise the
			// creators of this key so two of them cannot both insert.
			if err := q.LockTaskRunsWithoutFlowRun(ctx, pgdb.LockTaskRunsWithoutFlowRunParams{TaskKey: in.TaskKey, DynamicKey: in.DynamicKey}); err != nil {
				return err
			}
			existing, err := q.GetTaskRunIDWithoutFlowRun(ctx, pgdb.GetTaskRunIDWithoutFlowRunParams{TaskKey: in.TaskKey, DynamicKey: in.DynamicKey})
			switch {
			case err == nil:
				runID = existing
			case errors.Is(err, pgx.ErrNoRows):
				if runID, err = q.InsertTaskRun(ctx, arg); err != nil {
					return err
				}
				created = true
			default:
				return err
			}
		}
		if created && in.State != nil {
			o := opts
			o.Force = true
			if res, err = s.applyTaskRunState(ctx, tx, runID, *in.State, o); err != nil {
				return err
			}
		}
		tr, err = s.trReadOne(ctx, tx, runID)
		return err
	})
	if err != nil {
		return store.TaskRun{}, false, store.SetStateResult{}, err
	}
	if !created {
		res = store.SetStateResult{}
	}
	return tr, created, res, nil
}

// trLabels is Prefect's with_system_labels_for_task_run: the flow run's
// labels, then prefect.flow-run.id, then the client's, later ones winning.
func (s *Store) trLabels(ctx context.Context, q *pgdb.Queries, in store.TaskRunCreate) ([]byte, error) {
	labels := map[string]any{}
	if in.FlowRunID != nil {
		raw, err := q.GetFlowRunLabelsForTaskRun(ctx, *in.FlowRunID)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, err
		}
		parent, err := rowcodec.DecodeObject(raw)
		if err != nil {
			return nil, err
		}
		maps.Copy(labels, parent)
		labels["prefect.flow-run.id"] = in.FlowRunID.String()
	}
	maps.Copy(labels, in.Labels)
	b, err := json.Marshal(labels)
	if err != nil {
		return nil, fmt.Errorf("%w: labels: %v", store.ErrInvalid, err)
	}
	return b, nil
}

// ReadTaskRun implements store.Store.
func (s *Store) ReadTaskRun(ctx context.Context, id uuid.UUID) (store.TaskRun, error) {
	return s.trReadOne(ctx, s.pool, id)
}

type trQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Store) trReadOne(ctx context.Context, db trQuerier, id uuid.UUID) (store.TaskRun, error) {
	tr, err := trScan(db.QueryRow(ctx, "SELECT "+trColumns+" FROM "+trFrom+" WHERE task_run.id = $1", id))
	if err != nil {
		return store.TaskRun{}, notFound(err, "task run")
	}
	return tr, nil
}

// ReadTaskRuns implements store.Store.
func (s *Store) ReadTaskRuns(ctx context.Context, q store.TaskRunQuery) ([]store.TaskRun, error) {
	b := filter.NewBuilder(filter.Postgres)
	where, err := b.TaskRunWhere(q.Filter)
	if err != nil {
		return nil, err
	}
	order, err := b.TaskRunOrderBy(q.Sort)
	if err != nil {
		return nil, err
	}
	var sb strings.Builder
	sb.WriteString("SELECT " + trColumns + " FROM " + trFrom + " WHERE " + where)
	rowcodec.Page(&sb, b, order, q.Limit, q.Offset)
	rows, err := s.pool.Query(ctx, sb.String(), b.Args()...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []store.TaskRun{}
	for rows.Next() {
		tr, err := trScan(rows)
		if err != nil {
			return nil, mapErr(err)
		}
		out = append(out, tr)
	}
	return out, mapErr(rows.Err())
}

// CountTaskRuns implements store.Store.
func (s *Store) CountTaskRuns(ctx context.Context, f filter.TaskRunFilterSet) (int64, error) {
	b := filter.NewBuilder(filter.Postgres)
	where, err := b.TaskRunWhere(f)
	if err != nil {
		return 0, err
	}
	var n int64
	return n, mapErr(s.pool.QueryRow(ctx, "SELECT count(*) FROM task_run WHERE "+where, b.Args()...).Scan(&n))
}

// TaskRunHistory implements store.Store.
func (s *Store) TaskRunHistory(ctx context.Context, q store.TaskRunHistoryQuery) ([]store.HistoryInterval, error) {
	hq := store.HistoryQuery{Start: q.Start, End: q.End, Interval: q.Interval}
	if store.HistoryIntervals(hq) == 0 {
		return []store.HistoryInterval{}, nil
	}
	b := filter.NewBuilder(filter.Postgres)
	where, err := b.TaskRunWhere(q.Filter)
	if err != nil {
		return nil, err
	}
	sql := `SELECT task_run.expected_start_time, task_run.state_type::text, task_run.state_name, task_run.state_timestamp,
		task_run.start_time, task_run.total_run_time
		FROM task_run WHERE task_run.expected_start_time >= ` + b.Bind(store.Truncate(q.Start)) +
		` AND task_run.expected_start_time < ` + b.Bind(store.Truncate(store.HistoryEnd(hq))) + ` AND ` + where
	var now time.Time
	var runs []orchestration.RunCore
	err = s.inTx(ctx, func(_ *pgdb.Queries, tx pgx.Tx) error {
		// The transaction's now() is the instant the estimates use, as
		// Prefect's SQL expressions do.
		if err := tx.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, sql, b.Args()...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				rc        orchestration.RunCore
				stateType *string
				stateName *string
				total     float64
			)
			if err := rows.Scan(&rc.ExpectedStartTime, &stateType, &stateName, &rc.StateTimestamp, &rc.StartTime, &total); err != nil {
				return err
			}
			// A run without a state has no place in a history of states
			// (Prefect's response model would refuse it).
			if stateType == nil {
				continue
			}
			rc.StateType = orchestration.StateType(*stateType)
			rc.StateName = trDeref(stateName)
			rc.TotalRunTime = trSeconds(total)
			runs = append(runs, rc)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return store.BucketHistory(hq, runs, now), nil
}

// UpdateTaskRun implements store.Store.
func (s *Store) UpdateTaskRun(ctx context.Context, id uuid.UUID, in store.TaskRunUpdate) error {
	var n int64
	var err error
	if in.Name != nil {
		if err := checkText(*in.Name); err != nil {
			return err
		}
		n, err = s.q.UpdateTaskRunName(ctx, pgdb.UpdateTaskRunNameParams{ID: id, Name: *in.Name, Updated: store.Now()})
	} else {
		n, err = s.q.TouchTaskRun(ctx, pgdb.TouchTaskRunParams{ID: id, Updated: store.Now()})
	}
	if err != nil {
		return mapErr(err)
	}
	if n == 0 {
		return fmt.Errorf("task run %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// DeleteTaskRun implements store.Store.
func (s *Store) DeleteTaskRun(ctx context.Context, id uuid.UUID) error {
	var n int64
	err := s.inTx(ctx, func(q *pgdb.Queries, _ pgx.Tx) error {
		var err error
		if n, err = q.DeleteTaskRun(ctx, id); err != nil || n == 0 {
			return err
		}
		// Prefect deletes the run's logs in a background job right after;
		// doing it in the same transaction leaves no window with orphans.
		return q.DeleteTaskRunLogs(ctx, uuid.NullUUID{UUID: id, Valid: true})
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("task run %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// ReadTaskRunState implements store.Store.
func (s *Store) ReadTaskRunState(ctx context.Context, id uuid.UUID) (orchestration.State, error) {
	row, err := s.q.GetTaskRunState(ctx, id)
	if err != nil {
		return orchestration.State{}, notFound(err, "task run state")
	}
	return trStateFromRow(row.ID, row.Type, row.Name, row.Timestamp, row.Message, row.StateDetails, row.Data, row.ArtifactData)
}

// ReadTaskRunStates implements store.Store.
func (s *Store) ReadTaskRunStates(ctx context.Context, taskRunID uuid.UUID) ([]orchestration.State, error) {
	rows, err := s.q.ListTaskRunStates(ctx, taskRunID)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]orchestration.State, 0, len(rows))
	for _, r := range rows {
		st, err := trStateFromRow(r.ID, r.Type, r.Name, r.Timestamp, r.Message, r.StateDetails, r.Data, r.ArtifactData)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// RecordTaskRunEvents implements store.Store.
func (s *Store) RecordTaskRunEvents(ctx context.Context, recs []store.TaskRunRecord) ([]store.TaskRunRecord, error) {
	for i := range recs {
		if err := trCheckRecord(&recs[i]); err != nil {
			return nil, err
		}
	}
	var skipped []store.TaskRunRecord
	err := s.inTx(ctx, func(_ *pgdb.Queries, tx pgx.Tx) error {
		skipped = nil
		kept, orphans, err := trDropOrphans(ctx, tx, recs)
		if err != nil {
			return err
		}
		skipped = orphans
		if len(kept) == 0 {
			return nil
		}
		plan := store.PlanTaskRunRecords(kept)
		existing, err := trLookup(ctx, tx, plan)
		if err != nil {
			return err
		}
		plan.Resolve(kept, existing)
		canonical, err := trUpsert(ctx, tx, kept, plan)
		if err != nil {
			return err
		}
		return trInsertStates(ctx, tx, kept, plan, canonical)
	})
	if err != nil {
		return nil, err
	}
	return skipped, nil
}

// trCheckRecord refuses text PostgreSQL cannot store before the batch
// starts, so that a bad record is reported rather than failing the batch
// with a driver error.
func trCheckRecord(r *store.TaskRunRecord) error {
	for _, t := range []string{r.Run.Name, r.Run.TaskKey, r.Run.DynamicKey, trDeref(r.Run.CacheKey), trDeref(r.Run.TaskVersion), r.State.Name, trDeref(r.State.Message)} {
		if err := checkText(t); err != nil {
			return fmt.Errorf("event %s: %w", r.EventID, err)
		}
	}
	return nil
}

// trDropOrphans splits off the records whose flow run does not exist: the
// foreign key would fail the whole batch for them.
func trDropOrphans(ctx context.Context, tx pgx.Tx, recs []store.TaskRunRecord) (kept, orphans []store.TaskRunRecord, err error) {
	seen := map[uuid.UUID]bool{}
	var ids []uuid.UUID
	for i := range recs {
		if fr := recs[i].Run.FlowRunID; fr != nil && !seen[*fr] {
			seen[*fr] = true
			ids = append(ids, *fr)
		}
	}
	if len(ids) == 0 {
		return recs, nil, nil
	}
	rows, err := tx.Query(ctx, "SELECT id FROM flow_run WHERE id = ANY($1::uuid[])", ids)
	if err != nil {
		return nil, nil, err
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, nil, err
	}
	if len(found) == len(ids) {
		return recs, nil, nil
	}
	exists := map[uuid.UUID]bool{}
	for _, id := range found {
		exists[id] = true
	}
	for i := range recs {
		if fr := recs[i].Run.FlowRunID; fr != nil && !exists[*fr] {
			orphans = append(orphans, recs[i])
		} else {
			kept = append(kept, recs[i])
		}
	}
	return kept, orphans, nil
}

// trLookup finds the rows the batch names by id or natural key.
func trLookup(ctx context.Context, tx pgx.Tx, plan *store.TaskRunRecordPlan) ([]store.ExistingTaskRun, error) {
	frs := make([]uuid.UUID, len(plan.LookupNaturalKeys))
	keys := make([]string, len(plan.LookupNaturalKeys))
	dyns := make([]string, len(plan.LookupNaturalKeys))
	for i, nk := range plan.LookupNaturalKeys {
		frs[i], keys[i], dyns[i] = nk.FlowRunID, nk.TaskKey, nk.DynamicKey
	}
	rows, err := tx.Query(ctx, `SELECT id, flow_run_id, task_key, dynamic_key FROM task_run
		WHERE id = ANY($1::uuid[])
		OR (flow_run_id, task_key, dynamic_key) IN (SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[]))`,
		plan.LookupIDs, frs, keys, dyns)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.ExistingTaskRun
	for rows.Next() {
		var (
			e       store.ExistingTaskRun
			fr      uuid.NullUUID
			key, dk string
		)
		if err := rows.Scan(&e.ID, &fr, &key, &dk); err != nil {
			return nil, err
		}
		if fr.Valid {
			e.NaturalKey = &store.TaskRunNaturalKey{FlowRunID: fr.UUID, TaskKey: key, DynamicKey: dk}
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// trUpsert writes one row per group, grouping rows with the same conflict
// target and columns into multi-row statements, and returns each group's
// canonical task run id.
func trUpsert(ctx context.Context, tx pgx.Tx, recs []store.TaskRunRecord, plan *store.TaskRunRecordPlan) ([]uuid.UUID, error) {
	canonical := make([]uuid.UUID, len(plan.Groups))
	type batchKey struct {
		target store.TaskRunConflictTarget
		sig    string
	}
	batches := map[batchKey][]int{}
	var order []batchKey
	for g := range plan.Groups {
		grp := &plan.Groups[g]
		k := batchKey{grp.Target, recs[grp.Winner].Set.Signature()}
		if _, ok := batches[k]; !ok {
			order = append(order, k)
		}
		batches[k] = append(batches[k], g)
		canonical[g] = grp.ID
	}
	now := store.Now()
	var natural []int
	for _, k := range order {
		groups := batches[k]
		for len(groups) > 0 {
			chunk := groups[:min(len(groups), trMaxRows)]
			groups = groups[len(chunk):]
			sql, args, err := trUpsertStatement(recs, plan, chunk, k.target, now)
			if err != nil {
				return nil, err
			}
			if _, err := tx.Exec(ctx, sql, args...); err != nil {
				return nil, err
			}
			if k.target == store.ConflictOnNaturalKey {
				natural = append(natural, chunk...)
			}
		}
	}
	if len(natural) == 0 {
		return canonical, nil
	}
	// A natural-key upsert may have updated a row with another id: read
	// back the ids the keys now hold.
	frs := make([]uuid.UUID, len(natural))
	keys := make([]string, len(natural))
	dyns := make([]string, len(natural))
	for i, g := range natural {
		w := &recs[plan.Groups[g].Winner].Run
		frs[i], keys[i], dyns[i] = *w.FlowRunID, w.TaskKey, w.DynamicKey
	}
	rows, err := tx.Query(ctx, `SELECT k.ord, task_run.id
		FROM unnest($1::uuid[], $2::text[], $3::text[]) WITH ORDINALITY AS k(flow_run_id, task_key, dynamic_key, ord)
		JOIN task_run ON task_run.flow_run_id = k.flow_run_id AND task_run.task_key = k.task_key AND task_run.dynamic_key = k.dynamic_key`,
		frs, keys, dyns)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			ord int64
			id  uuid.UUID
		)
		if err := rows.Scan(&ord, &id); err != nil {
			return nil, err
		}
		canonical[natural[ord-1]] = id
	}
	return canonical, rows.Err()
}

// trUpsertStatement renders INSERT ... ON CONFLICT DO UPDATE for the
// groups' winning records. Only the columns the records carry are written,
// and an existing row changes only when the incoming state is newer
// (Prefect's WHERE task_run.state_timestamp < excluded.state_timestamp).
func trUpsertStatement(recs []store.TaskRunRecord, plan *store.TaskRunRecordPlan, groups []int, target store.TaskRunConflictTarget, now time.Time) (string, []any, error) {
	set := recs[plan.Groups[groups[0]].Winner].Set
	cols := []string{"id", "created", "updated", "name", "flow_run_id", "task_key", "dynamic_key",
		"state_id", "state_type", "state_name", "state_timestamp"}
	opt := trOptionalColumns(set)
	cols = append(cols, opt...)
	var sb strings.Builder
	sb.WriteString("INSERT INTO task_run (" + strings.Join(cols, ", ") + ") VALUES ")
	args := make([]any, 0, len(groups)*len(cols))
	for i, g := range groups {
		grp := &plan.Groups[g]
		r := &recs[grp.Winner]
		vals, err := trRowValues(r, grp.ID, now, opt)
		if err != nil {
			return "", nil, err
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('(')
		for j, v := range vals {
			if j > 0 {
				sb.WriteString(", ")
			}
			args = append(args, v)
			fmt.Fprintf(&sb, "$%d", len(args))
			if cols[j] == "state_type" {
				sb.WriteString("::state_type")
			}
		}
		sb.WriteByte(')')
	}
	if target == store.ConflictOnNaturalKey {
		sb.WriteString(" ON CONFLICT (flow_run_id, task_key, dynamic_key) DO UPDATE SET ")
	} else {
		sb.WriteString(" ON CONFLICT (id) DO UPDATE SET ")
	}
	first := true
	for _, c := range cols {
		if c == "id" || c == "created" {
			continue
		}
		if !first {
			sb.WriteString(", ")
		}
		first = false
		sb.WriteString(c + " = excluded." + c)
	}
	sb.WriteString(" WHERE task_run.state_timestamp < excluded.state_timestamp")
	return sb.String(), args, nil
}

// trOptionalColumns lists the optional columns a record set carries, in
// table order.
func trOptionalColumns(f store.TaskRunFields) []string {
	var cols []string
	add := func(set bool, col string) {
		if set {
			cols = append(cols, col)
		}
	}
	add(f.CacheKey, "cache_key")
	add(f.CacheExpiration, "cache_expiration")
	add(f.TaskVersion, "task_version")
	add(f.EmpiricalPolicy, "empirical_policy")
	add(f.Tags, "tags")
	add(f.Labels, "labels")
	add(f.TaskInputs, "task_inputs")
	add(f.RunCount, "run_count")
	add(f.FlowRunRunCount, "flow_run_run_count")
	add(f.ExpectedStartTime, "expected_start_time")
	add(f.NextScheduledStartTime, "next_scheduled_start_time")
	add(f.StartTime, "start_time")
	add(f.EndTime, "end_time")
	add(f.TotalRunTime, "total_run_time")
	return cols
}

func trRowValues(r *store.TaskRunRecord, id uuid.UUID, now time.Time, opt []string) ([]any, error) {
	run := &r.Run
	vals := []any{id, now, now, run.Name, trNullUUID(run.FlowRunID), run.TaskKey, run.DynamicKey,
		r.State.ID, string(r.State.Type), r.State.Name, store.Truncate(r.State.Timestamp)}
	for _, c := range opt {
		switch c {
		case "cache_key":
			vals = append(vals, trText(run.CacheKey))
		case "cache_expiration":
			vals = append(vals, trTimePtr(run.CacheExpiration))
		case "task_version":
			vals = append(vals, trText(run.TaskVersion))
		case "empirical_policy":
			b, err := json.Marshal(run.EmpiricalPolicy)
			if err != nil {
				return nil, fmt.Errorf("%w: empirical_policy: %v", store.ErrInvalid, err)
			}
			vals = append(vals, b)
		case "tags":
			vals = append(vals, rowcodec.EncodeTags(run.Tags))
		case "labels":
			b, err := rowcodec.EncodeObject(run.Labels)
			if err != nil {
				return nil, fmt.Errorf("%w: labels: %v", store.ErrInvalid, err)
			}
			vals = append(vals, b)
		case "task_inputs":
			b := []byte(run.TaskInputs)
			if len(b) == 0 {
				b = []byte("{}")
			}
			vals = append(vals, b)
		case "run_count":
			vals = append(vals, int32(run.RunCount))
		case "flow_run_run_count":
			vals = append(vals, int32(run.FlowRunRunCount))
		case "expected_start_time":
			vals = append(vals, trTimePtr(run.ExpectedStartTime))
		case "next_scheduled_start_time":
			vals = append(vals, trTimePtr(run.NextScheduledStartTime))
		case "start_time":
			vals = append(vals, trTimePtr(run.StartTime))
		case "end_time":
			vals = append(vals, trTimePtr(run.EndTime))
		case "total_run_time":
			vals = append(vals, run.TotalRunTime.Seconds())
		}
	}
	return vals, nil
}

// trInsertStates inserts every record's state (not only the winners': the
// run's history keeps them all), skipping states that exist.
func trInsertStates(ctx context.Context, tx pgx.Tx, recs []store.TaskRunRecord, plan *store.TaskRunRecordPlan, canonical []uuid.UUID) error {
	now := store.Now()
	const cols = 10
	for start := 0; start < len(recs); start += trMaxRows {
		end := min(len(recs), start+trMaxRows)
		var sb strings.Builder
		sb.WriteString("INSERT INTO task_run_state (id, created, updated, task_run_id, type, name, timestamp, message, state_details, data) VALUES ")
		args := make([]any, 0, (end-start)*cols)
		for i := start; i < end; i++ {
			r := &recs[i]
			runID := canonical[plan.GroupOf[i]]
			st := r.State
			st.StateDetails.TaskRunID = &runID
			st.StateDetails.FlowRunID = r.Run.FlowRunID
			details, err := json.Marshal(st.StateDetails)
			if err != nil {
				return fmt.Errorf("%w: state_details: %v", store.ErrInvalid, err)
			}
			var data []byte
			if len(st.Data) > 0 && string(st.Data) != "null" {
				data = st.Data
			}
			if i > start {
				sb.WriteString(", ")
			}
			n := len(args)
			fmt.Fprintf(&sb, "($%d, $%d, $%d, $%d, $%d::state_type, $%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8, n+9, n+10)
			args = append(args, st.ID, now, now, runID, string(st.Type), st.Name, store.Truncate(st.Timestamp), trText(st.Message), details, data)
		}
		// No conflict target: a redelivered event (same id) is a no-op,
		// and so is a state colliding on (task_run_id, timestamp), which
		// would otherwise fail the whole batch over one duplicate.
		sb.WriteString(" ON CONFLICT DO NOTHING")
		if _, err := tx.Exec(ctx, sb.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

type trScanner interface {
	Scan(dest ...any) error
}

func trScan(row trScanner) (store.TaskRun, error) {
	var (
		tr                               store.TaskRun
		flowRunID, stateID               uuid.NullUUID
		cacheKey, taskVersion, stateName *string
		stateType                        *string
		policy, inputs, tags, labels     []byte
		runCount, frRunCount             int32
		total                            float64
		sID                              uuid.NullUUID
		sType, sName, sMessage           *string
		sTimestamp                       *time.Time
		sDetails, sData, sArtifact       []byte
		created, updated                 time.Time
		cacheExp, stateTS, expStart, nxt *time.Time
		startTime, endTime               *time.Time
	)
	err := row.Scan(&tr.ID, &created, &updated, &tr.Name, &flowRunID,
		&tr.TaskKey, &tr.DynamicKey, &cacheKey, &cacheExp, &taskVersion,
		&frRunCount, &policy, &inputs, &tags, &labels,
		&stateID, &stateType, &stateName, &stateTS, &runCount,
		&expStart, &nxt, &startTime, &endTime,
		&total,
		&sID, &sType, &sName, &sTimestamp, &sMessage, &sDetails, &sData, &sArtifact)
	if err != nil {
		return store.TaskRun{}, err
	}
	tr.Created, tr.Updated = store.Truncate(created), store.Truncate(updated)
	if flowRunID.Valid {
		tr.FlowRunID = &flowRunID.UUID
	}
	tr.CacheKey, tr.TaskVersion = cacheKey, taskVersion
	tr.CacheExpiration = trTimePtr(cacheExp)
	tr.FlowRunRunCount, tr.RunCount = int(frRunCount), int(runCount)
	if len(policy) > 0 {
		if err := json.Unmarshal(policy, &tr.EmpiricalPolicy); err != nil {
			return store.TaskRun{}, fmt.Errorf("task run %s empirical_policy: %w", tr.ID, err)
		}
	}
	tr.TaskInputs = json.RawMessage(inputs)
	if len(tr.TaskInputs) == 0 {
		tr.TaskInputs = json.RawMessage("{}")
	}
	if tr.Tags, err = rowcodec.DecodeTags(tags); err != nil {
		return store.TaskRun{}, err
	}
	if tr.Labels, err = rowcodec.DecodeObject(labels); err != nil {
		return store.TaskRun{}, err
	}
	if stateID.Valid {
		tr.StateID = &stateID.UUID
	}
	if stateType != nil {
		tr.StateType = orchestration.StateType(*stateType)
	}
	tr.StateName = trDeref(stateName)
	tr.StateTimestamp = trTimePtr(stateTS)
	tr.ExpectedStartTime, tr.NextScheduledStartTime = trTimePtr(expStart), trTimePtr(nxt)
	tr.StartTime, tr.EndTime = trTimePtr(startTime), trTimePtr(endTime)
	tr.TotalRunTime = trSeconds(total)
	if sID.Valid && sType != nil && sTimestamp != nil {
		st, err := runcodec.DecodeState(runcodec.StateParts{ID: sID.UUID, Type: *sType, Name: trDeref(sName), Timestamp: *sTimestamp,
			Message: sMessage, Details: sDetails, Data: sData, ArtifactData: sArtifact})
		if err != nil {
			return store.TaskRun{}, err
		}
		tr.State = &st
	}
	return tr, nil
}

func trStateFromRow(id uuid.UUID, typ pgdb.StateType, name string, ts time.Time, msg pgtype.Text, details, data, artifact []byte) (orchestration.State, error) {
	var m *string
	if msg.Valid {
		m = &msg.String
	}
	return runcodec.DecodeState(runcodec.StateParts{ID: id, Type: string(typ), Name: name, Timestamp: ts, Message: m,
		Details: details, Data: data, ArtifactData: artifact})
}

func trSeconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond)
}

func trTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := store.Truncate(*t)
	return &v
}

func trNullUUID(id *uuid.UUID) uuid.NullUUID {
	if id == nil {
		return uuid.NullUUID{}
	}
	return uuid.NullUUID{UUID: *id, Valid: true}
}

func trText(s *string) pgtype.Text {
	if s == nil {
		return pgtype.Text{}
	}
	return pgtype.Text{String: *s, Valid: true}
}

func trDeref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
