package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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

// trColumns is what every task run read selects: the row and its current
// state, in the order trScan reads them.
const trColumns = `task_run.id, task_run.created, task_run.updated, task_run.name, task_run.flow_run_id,
	task_run.task_key, task_run.dynamic_key, task_run.cache_key, task_run.cache_expiration, task_run.task_version,
	task_run.flow_run_run_count, task_run.empirical_policy, task_run.task_inputs, task_run.tags, task_run.labels,
	task_run.state_id, task_run.state_type, task_run.state_name, task_run.state_timestamp, task_run.run_count,
	task_run.expected_start_time, task_run.next_scheduled_start_time, task_run.start_time, task_run.end_time,
	task_run.total_run_time,
	trs.id, trs.type, trs.name, trs.timestamp, trs.message, trs.state_details, trs.data, tra.data`

// The result artifact holds the data of states written by set_state.
const trFrom = `task_run LEFT JOIN task_run_state trs ON trs.id = task_run.state_id
	LEFT JOIN artifact tra ON tra.id = trs.result_artifact_id`

// trMaxRows bounds the rows of one multi-row statement so that its bound
// parameters stay under SQLite's limit (32766).
const trMaxRows = 1000

// trLookupChunk bounds the keys of one lookup statement (three parameters
// per natural key).
const trLookupChunk = 3000

// CreateTaskRun implements store.Store.
func (s *Store) CreateTaskRun(ctx context.Context, in store.TaskRunCreate, opts orchestration.Options) (store.TaskRun, bool, store.SetStateResult, error) {
	var res store.SetStateResult
	policy, err := json.Marshal(in.EmpiricalPolicy)
	if err != nil {
		return store.TaskRun{}, false, res, fmt.Errorf("%w: empirical_policy: %v", store.ErrInvalid, err)
	}
	inputs := string(in.TaskInputs)
	if inputs == "" {
		inputs = "{}"
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
	err = s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, tx *sql.Tx) error {
		labels, err := trLabels(ctx, q, in)
		if err != nil {
			return err
		}
		arg := sqlitedb.InsertTaskRunParams{
			ID:              id.String(),
			Created:         formatTime(now),
			Name:            in.Name,
			FlowRunID:       trNullID(in.FlowRunID),
			TaskKey:         in.TaskKey,
			DynamicKey:      in.DynamicKey,
			CacheKey:        trNullStr(in.CacheKey),
			CacheExpiration: trNullTime(in.CacheExpiration),
			TaskVersion:     trNullStr(in.TaskVersion),
			EmpiricalPolicy: string(policy),
			Tags:            string(rowcodec.EncodeTags(in.Tags)),
			Labels:          sql.NullString{String: string(labels), Valid: true},
			TaskInputs:      inputs,
		}
		runID := arg.ID
		if in.FlowRunID != nil {
			got, err := q.InsertTaskRun(ctx, arg)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				if runID, err = q.GetTaskRunIDByNaturalKey(ctx, sqlitedb.GetTaskRunIDByNaturalKeyParams{
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
			// The single writer serialises creators, so the check and the
			// insert cannot interleave with another's.
			existing, err := q.GetTaskRunIDWithoutFlowRun(ctx, sqlitedb.GetTaskRunIDWithoutFlowRunParams{TaskKey: in.TaskKey, DynamicKey: in.DynamicKey})
			switch {
			case err == nil:
				runID = existing
			case errors.Is(err, sql.ErrNoRows):
				if runID, err = q.InsertTaskRun(ctx, arg); err != nil {
					return err
				}
				created = true
			default:
				return err
			}
		}
		rid, err := uuid.Parse(runID)
		if err != nil {
			return fmt.Errorf("task run id %q: %w", runID, err)
		}
		if created && in.State != nil {
			o := opts
			o.Force = true
			if res, err = s.applyTaskRunState(ctx, tx, rid, *in.State, o); err != nil {
				return err
			}
		}
		tr, err = trReadOne(ctx, tx, rid)
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
func trLabels(ctx context.Context, q *sqlitedb.Queries, in store.TaskRunCreate) ([]byte, error) {
	labels := map[string]any{}
	if in.FlowRunID != nil {
		raw, err := q.GetFlowRunLabelsForTaskRun(ctx, in.FlowRunID.String())
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		if raw.Valid {
			parent, err := rowcodec.DecodeObject([]byte(raw.String))
			if err != nil {
				return nil, err
			}
			maps.Copy(labels, parent)
		}
		labels["prefect.flow-run.id"] = in.FlowRunID.String()
	}
	maps.Copy(labels, in.Labels)
	b, err := json.Marshal(labels)
	if err != nil {
		return nil, fmt.Errorf("%w: labels: %v", store.ErrInvalid, err)
	}
	return b, nil
}

type trQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func trReadOne(ctx context.Context, db trQuerier, id uuid.UUID) (store.TaskRun, error) {
	tr, err := trScan(db.QueryRowContext(ctx, "SELECT "+trColumns+" FROM "+trFrom+" WHERE task_run.id = ?", id.String()))
	if err != nil {
		return store.TaskRun{}, notFound(err, "task run")
	}
	return tr, nil
}

// ReadTaskRun implements store.Store.
func (s *Store) ReadTaskRun(ctx context.Context, id uuid.UUID) (store.TaskRun, error) {
	return trReadOne(ctx, s.reader, id)
}

// ReadTaskRuns implements store.Store.
func (s *Store) ReadTaskRuns(ctx context.Context, q store.TaskRunQuery) ([]store.TaskRun, error) {
	b := filter.NewBuilder(filter.SQLite)
	order, err := b.TaskRunOrderBy(q.Sort)
	if err != nil {
		return nil, err
	}
	where, err := b.TaskRunPageWhere(q.Filter, order, q.Limit, q.Offset)
	if err != nil {
		return nil, err
	}
	var sb strings.Builder
	sb.WriteString("SELECT " + trColumns + " FROM " + trFrom + " WHERE " + where)
	rowcodec.Page(&sb, b, order, q.Limit, q.Offset)
	rows, err := s.reader.QueryContext(ctx, sb.String(), b.Args()...)
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
	b := filter.NewBuilder(filter.SQLite)
	where, err := b.TaskRunWhere(f)
	if err != nil {
		return 0, err
	}
	var n int64
	return n, mapErr(s.reader.QueryRowContext(ctx, "SELECT count(*) FROM task_run WHERE "+where, b.Args()...).Scan(&n))
}

// TaskRunHistory implements store.Store.
func (s *Store) TaskRunHistory(ctx context.Context, q store.TaskRunHistoryQuery) ([]store.HistoryInterval, error) {
	hq := store.HistoryQuery{Start: q.Start, End: q.End, Interval: q.Interval}
	if store.HistoryIntervals(hq) == 0 {
		return []store.HistoryInterval{}, nil
	}
	b := filter.NewBuilder(filter.SQLite)
	where, err := b.TaskRunWhere(q.Filter)
	if err != nil {
		return nil, err
	}
	query := `SELECT task_run.expected_start_time, task_run.state_type, task_run.state_name, task_run.state_timestamp,
		task_run.start_time, task_run.total_run_time
		FROM task_run WHERE task_run.expected_start_time >= ` + b.Bind(formatTime(q.Start)) +
		` AND task_run.expected_start_time < ` + b.Bind(formatTime(store.HistoryEnd(hq))) + ` AND ` + where
	now := store.Now()
	rows, err := s.reader.QueryContext(ctx, query, b.Args()...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var runs []orchestration.RunCore
	for rows.Next() {
		var (
			rc                             orchestration.RunCore
			expStart, stateType, stateName sql.NullString
			stateTS, startTime             sql.NullString
			total                          float64
		)
		if err := rows.Scan(&expStart, &stateType, &stateName, &stateTS, &startTime, &total); err != nil {
			return nil, mapErr(err)
		}
		// A run without a state has no place in a history of states
		// (Prefect's response model would refuse it).
		if !stateType.Valid {
			continue
		}
		rc.StateType = orchestration.StateType(stateType.String)
		rc.StateName = stateName.String
		if rc.ExpectedStartTime, err = trParseNullTime(expStart); err != nil {
			return nil, err
		}
		if rc.StateTimestamp, err = trParseNullTime(stateTS); err != nil {
			return nil, err
		}
		if rc.StartTime, err = trParseNullTime(startTime); err != nil {
			return nil, err
		}
		rc.TotalRunTime = trSeconds(total)
		runs = append(runs, rc)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(err)
	}
	return store.BucketHistory(hq, runs, now), nil
}

// UpdateTaskRun implements store.Store.
func (s *Store) UpdateTaskRun(ctx context.Context, id uuid.UUID, in store.TaskRunUpdate) error {
	var n int64
	err := s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, _ *sql.Tx) error {
		var err error
		now := formatTime(store.Now())
		if in.Name != nil {
			n, err = q.UpdateTaskRunName(ctx, sqlitedb.UpdateTaskRunNameParams{ID: id.String(), Name: *in.Name, Updated: now})
		} else {
			n, err = q.TouchTaskRun(ctx, sqlitedb.TouchTaskRunParams{ID: id.String(), Updated: now})
		}
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("task run %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// DeleteTaskRun implements store.Store.
func (s *Store) DeleteTaskRun(ctx context.Context, id uuid.UUID) error {
	var n int64
	err := s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, _ *sql.Tx) error {
		var err error
		if n, err = q.DeleteTaskRun(ctx, id.String()); err != nil || n == 0 {
			return err
		}
		// Prefect deletes the run's logs in a background job right after;
		// doing it in the same transaction leaves no window with orphans.
		return q.DeleteTaskRunLogs(ctx, sql.NullString{String: id.String(), Valid: true})
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
	row, err := s.rq.GetTaskRunState(ctx, id.String())
	if err != nil {
		return orchestration.State{}, notFound(err, "task run state")
	}
	return trState(row.ID, row.Type, row.Name, row.Timestamp, row.Message, row.StateDetails, row.Data, row.ArtifactData)
}

// ReadTaskRunStates implements store.Store.
func (s *Store) ReadTaskRunStates(ctx context.Context, taskRunID uuid.UUID) ([]orchestration.State, error) {
	rows, err := s.rq.ListTaskRunStates(ctx, taskRunID.String())
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]orchestration.State, 0, len(rows))
	for _, r := range rows {
		st, err := trState(r.ID, r.Type, r.Name, r.Timestamp, r.Message, r.StateDetails, r.Data, r.ArtifactData)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// RecordTaskRunEvents implements store.Store.
func (s *Store) RecordTaskRunEvents(ctx context.Context, recs []store.TaskRunRecord) ([]store.TaskRunRecord, error) {
	// Everything that can be computed without the database is prepared
	// before the writer is taken: other writes wait while it is held.
	pre := make([]trPrepared, len(recs))
	for i := range recs {
		p, err := trPrepare(&recs[i])
		if err != nil {
			return nil, err
		}
		pre[i] = p
	}
	var skipped []store.TaskRunRecord
	// The recorder's batches yield to the API's writes (writeBackground).
	err := s.writeBackground(ctx, func(ctx context.Context, _ *sqlitedb.Queries, tx *sql.Tx) error {
		skipped = nil
		keep, err := trDropOrphans(ctx, tx, recs)
		if err != nil {
			return err
		}
		kept := make([]store.TaskRunRecord, 0, len(keep))
		keptPre := make([]trPrepared, 0, len(keep))
		for i, ok := range keep {
			if ok {
				kept = append(kept, recs[i])
				keptPre = append(keptPre, pre[i])
			} else {
				skipped = append(skipped, recs[i])
			}
		}
		if len(kept) == 0 {
			return nil
		}
		plan := store.PlanTaskRunRecords(kept)
		existing, err := trLookup(ctx, tx, plan)
		if err != nil {
			return err
		}
		plan.Resolve(kept, existing)
		canonical, err := trUpsert(ctx, tx, kept, keptPre, plan)
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

// trPrepared holds a record's JSON columns, encoded once.
type trPrepared struct {
	policy, labels, tags, inputs string
	labelsNull                   bool
}

func trPrepare(r *store.TaskRunRecord) (trPrepared, error) {
	var p trPrepared
	b, err := json.Marshal(r.Run.EmpiricalPolicy)
	if err != nil {
		return p, fmt.Errorf("%w: event %s: empirical_policy: %v", store.ErrInvalid, r.EventID, err)
	}
	p.policy = string(b)
	lb, err := rowcodec.EncodeObject(r.Run.Labels)
	if err != nil {
		return p, fmt.Errorf("%w: event %s: labels: %v", store.ErrInvalid, r.EventID, err)
	}
	p.labels, p.labelsNull = string(lb), lb == nil
	p.tags = string(rowcodec.EncodeTags(r.Run.Tags))
	p.inputs = string(r.Run.TaskInputs)
	if p.inputs == "" {
		p.inputs = "{}"
	}
	return p, nil
}

// trDropOrphans reports which records' flow runs exist: the foreign key
// would fail the whole batch for the others.
func trDropOrphans(ctx context.Context, tx *sql.Tx, recs []store.TaskRunRecord) ([]bool, error) {
	keep := make([]bool, len(recs))
	seen := map[uuid.UUID]bool{}
	var ids []any
	for i := range recs {
		keep[i] = true
		if fr := recs[i].Run.FlowRunID; fr != nil && !seen[*fr] {
			seen[*fr] = true
			ids = append(ids, fr.String())
		}
	}
	exists := map[string]bool{}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), trLookupChunk)]
		ids = ids[len(chunk):]
		rows, err := tx.QueryContext(ctx, "SELECT id FROM flow_run WHERE id IN ("+trPlaceholders(len(chunk))+")", chunk...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			exists[id] = true
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
	}
	for i := range recs {
		if fr := recs[i].Run.FlowRunID; fr != nil && !exists[fr.String()] {
			keep[i] = false
		}
	}
	return keep, nil
}

// trLookup finds the rows the batch names by id or natural key.
func trLookup(ctx context.Context, tx *sql.Tx, plan *store.TaskRunRecordPlan) ([]store.ExistingTaskRun, error) {
	var out []store.ExistingTaskRun
	scan := func(query string, args []any) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				id, key, dk string
				fr          sql.NullString
			)
			if err := rows.Scan(&id, &fr, &key, &dk); err != nil {
				return err
			}
			e := store.ExistingTaskRun{}
			if e.ID, err = uuid.Parse(id); err != nil {
				return fmt.Errorf("task run id %q: %w", id, err)
			}
			if fr.Valid {
				frID, err := uuid.Parse(fr.String)
				if err != nil {
					return fmt.Errorf("flow run id %q: %w", fr.String, err)
				}
				e.NaturalKey = &store.TaskRunNaturalKey{FlowRunID: frID, TaskKey: key, DynamicKey: dk}
			}
			out = append(out, e)
		}
		return rows.Err()
	}
	ids := plan.LookupIDs
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), trLookupChunk)]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id.String()
		}
		if err := scan("SELECT id, flow_run_id, task_key, dynamic_key FROM task_run WHERE id IN ("+trPlaceholders(len(chunk))+")", args); err != nil {
			return nil, err
		}
	}
	nks := plan.LookupNaturalKeys
	for len(nks) > 0 {
		chunk := nks[:min(len(nks), trLookupChunk/3)]
		nks = nks[len(chunk):]
		if err := scan("SELECT id, flow_run_id, task_key, dynamic_key FROM task_run WHERE (flow_run_id, task_key, dynamic_key) IN ("+trTriples(len(chunk))+")", trNaturalArgs(chunk)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func trPlaceholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func trTriples(n int) string {
	return "VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", n), ", ")
}

func trNaturalArgs(nks []store.TaskRunNaturalKey) []any {
	args := make([]any, 0, 3*len(nks))
	for _, nk := range nks {
		args = append(args, nk.FlowRunID.String(), nk.TaskKey, nk.DynamicKey)
	}
	return args
}

// trUpsert writes one row per group, grouping rows with the same conflict
// target and columns into multi-row statements, and returns each group's
// canonical task run id.
func trUpsert(ctx context.Context, tx *sql.Tx, recs []store.TaskRunRecord, pre []trPrepared, plan *store.TaskRunRecordPlan) ([]uuid.UUID, error) {
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
	now := formatTime(store.Now())
	var natural []int
	for _, k := range order {
		groups := batches[k]
		for len(groups) > 0 {
			chunk := groups[:min(len(groups), trMaxRows)]
			groups = groups[len(chunk):]
			query, args := trUpsertStatement(recs, pre, plan, chunk, k.target, now)
			if _, err := tx.ExecContext(ctx, query, args...); err != nil {
				return nil, err
			}
			if k.target == store.ConflictOnNaturalKey {
				natural = append(natural, chunk...)
			}
		}
	}
	// A natural-key upsert may have updated a row with another id: read
	// back the ids the keys now hold.
	for len(natural) > 0 {
		chunk := natural[:min(len(natural), trLookupChunk/3)]
		natural = natural[len(chunk):]
		nks := make([]store.TaskRunNaturalKey, len(chunk))
		pos := map[store.TaskRunNaturalKey]int{}
		for i, g := range chunk {
			w := &recs[plan.Groups[g].Winner].Run
			nks[i] = store.TaskRunNaturalKey{FlowRunID: *w.FlowRunID, TaskKey: w.TaskKey, DynamicKey: w.DynamicKey}
			pos[nks[i]] = g
		}
		rows, err := tx.QueryContext(ctx, "SELECT id, flow_run_id, task_key, dynamic_key FROM task_run WHERE (flow_run_id, task_key, dynamic_key) IN ("+trTriples(len(chunk))+")", trNaturalArgs(nks)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id, fr, key, dk string
			if err := rows.Scan(&id, &fr, &key, &dk); err != nil {
				rows.Close()
				return nil, err
			}
			rid, err1 := uuid.Parse(id)
			frID, err2 := uuid.Parse(fr)
			if err := errors.Join(err1, err2); err != nil {
				rows.Close()
				return nil, fmt.Errorf("task run row %q: %w", id, err)
			}
			if g, ok := pos[store.TaskRunNaturalKey{FlowRunID: frID, TaskKey: key, DynamicKey: dk}]; ok {
				canonical[g] = rid
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
	}
	return canonical, nil
}

// trUpsertStatement renders INSERT ... ON CONFLICT DO UPDATE for the
// groups' winning records. Only the columns the records carry are written,
// and an existing row changes only when the incoming state is newer
// (Prefect's WHERE task_run.state_timestamp < excluded.state_timestamp;
// the fixed-width text format compares like the instants).
func trUpsertStatement(recs []store.TaskRunRecord, pre []trPrepared, plan *store.TaskRunRecordPlan, groups []int, target store.TaskRunConflictTarget, now string) (string, []any) {
	set := recs[plan.Groups[groups[0]].Winner].Set
	cols := []string{"id", "created", "updated", "name", "flow_run_id", "task_key", "dynamic_key",
		"state_id", "state_type", "state_name", "state_timestamp"}
	opt := trOptionalColumns(set)
	cols = append(cols, opt...)
	row := "(" + trPlaceholders(len(cols)) + ")"
	var sb strings.Builder
	sb.WriteString("INSERT INTO task_run (" + strings.Join(cols, ", ") + ") VALUES ")
	args := make([]any, 0, len(groups)*len(cols))
	for i, g := range groups {
		grp := &plan.Groups[g]
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(row)
		args = append(args, trRowValues(&recs[grp.Winner], &pre[grp.Winner], grp.ID, now, opt)...)
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
	return sb.String(), args
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

func trRowValues(r *store.TaskRunRecord, p *trPrepared, id uuid.UUID, now string, opt []string) []any {
	run := &r.Run
	vals := []any{id.String(), now, now, run.Name, trNullID(run.FlowRunID), run.TaskKey, run.DynamicKey,
		r.State.ID.String(), string(r.State.Type), r.State.Name, formatTime(r.State.Timestamp)}
	for _, c := range opt {
		switch c {
		case "cache_key":
			vals = append(vals, trNullStr(run.CacheKey))
		case "cache_expiration":
			vals = append(vals, trNullTime(run.CacheExpiration))
		case "task_version":
			vals = append(vals, trNullStr(run.TaskVersion))
		case "empirical_policy":
			vals = append(vals, p.policy)
		case "tags":
			vals = append(vals, p.tags)
		case "labels":
			vals = append(vals, sql.NullString{String: p.labels, Valid: !p.labelsNull})
		case "task_inputs":
			vals = append(vals, p.inputs)
		case "run_count":
			vals = append(vals, int64(run.RunCount))
		case "flow_run_run_count":
			vals = append(vals, int64(run.FlowRunRunCount))
		case "expected_start_time":
			vals = append(vals, trNullTime(run.ExpectedStartTime))
		case "next_scheduled_start_time":
			vals = append(vals, trNullTime(run.NextScheduledStartTime))
		case "start_time":
			vals = append(vals, trNullTime(run.StartTime))
		case "end_time":
			vals = append(vals, trNullTime(run.EndTime))
		case "total_run_time":
			vals = append(vals, run.TotalRunTime.Seconds())
		}
	}
	return vals
}

// trInsertStates inserts every record's state (not only the winners': the
// run's history keeps them all), skipping states that exist.
func trInsertStates(ctx context.Context, tx *sql.Tx, recs []store.TaskRunRecord, plan *store.TaskRunRecordPlan, canonical []uuid.UUID) error {
	now := formatTime(store.Now())
	const row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	for start := 0; start < len(recs); start += trMaxRows {
		end := min(len(recs), start+trMaxRows)
		var sb strings.Builder
		sb.WriteString("INSERT INTO task_run_state (id, created, updated, task_run_id, type, name, timestamp, message, state_details, data) VALUES ")
		args := make([]any, 0, (end-start)*10)
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
			var data sql.NullString
			if len(st.Data) > 0 && string(st.Data) != "null" {
				data = sql.NullString{String: string(st.Data), Valid: true}
			}
			if i > start {
				sb.WriteString(", ")
			}
			sb.WriteString(row)
			args = append(args, st.ID.String(), now, now, runID.String(), string(st.Type), st.Name,
				formatTime(st.Timestamp), trNullStr(st.Message), string(details), data)
		}
		// No conflict target: a redelivered event (same id) is a no-op,
		// and so is a state colliding on (task_run_id, timestamp), which
		// would otherwise fail the whole batch over one duplicate.
		sb.WriteString(" ON CONFLICT DO NOTHING")
		if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
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
		tr                                         store.TaskRun
		id, created, updated                       string
		flowRunID, cacheKey, cacheExp, taskVersion sql.NullString
		policy, inputs, tags                       string
		labels, stateID, stateType, stateName      sql.NullString
		stateTS, expStart, nxt, startTime, endTime sql.NullString
		frRunCount, runCount                       int64
		total                                      float64
		sID, sType, sName, sTimestamp, sMessage    sql.NullString
		sDetails, sData, sArtifact                 sql.NullString
	)
	err := row.Scan(&id, &created, &updated, &tr.Name, &flowRunID,
		&tr.TaskKey, &tr.DynamicKey, &cacheKey, &cacheExp, &taskVersion,
		&frRunCount, &policy, &inputs, &tags, &labels,
		&stateID, &stateType, &stateName, &stateTS, &runCount,
		&expStart, &nxt, &startTime, &endTime,
		&total,
		&sID, &sType, &sName, &sTimestamp, &sMessage, &sDetails, &sData, &sArtifact)
	if err != nil {
		return store.TaskRun{}, err
	}
	if tr.ID, err = uuid.Parse(id); err != nil {
		return store.TaskRun{}, fmt.Errorf("task run id %q: %w", id, err)
	}
	if tr.Created, err = parseTime(created); err != nil {
		return store.TaskRun{}, err
	}
	if tr.Updated, err = parseTime(updated); err != nil {
		return store.TaskRun{}, err
	}
	if tr.FlowRunID, err = trParseNullID(flowRunID); err != nil {
		return store.TaskRun{}, err
	}
	if cacheKey.Valid {
		tr.CacheKey = &cacheKey.String
	}
	if taskVersion.Valid {
		tr.TaskVersion = &taskVersion.String
	}
	if tr.CacheExpiration, err = trParseNullTime(cacheExp); err != nil {
		return store.TaskRun{}, err
	}
	tr.FlowRunRunCount, tr.RunCount = int(frRunCount), int(runCount)
	if policy != "" {
		if err := json.Unmarshal([]byte(policy), &tr.EmpiricalPolicy); err != nil {
			return store.TaskRun{}, fmt.Errorf("task run %s empirical_policy: %w", tr.ID, err)
		}
	}
	tr.TaskInputs = json.RawMessage(inputs)
	if len(tr.TaskInputs) == 0 {
		tr.TaskInputs = json.RawMessage("{}")
	}
	if tr.Tags, err = rowcodec.DecodeTags([]byte(tags)); err != nil {
		return store.TaskRun{}, err
	}
	if labels.Valid {
		if tr.Labels, err = rowcodec.DecodeObject([]byte(labels.String)); err != nil {
			return store.TaskRun{}, err
		}
	}
	if tr.StateID, err = trParseNullID(stateID); err != nil {
		return store.TaskRun{}, err
	}
	tr.StateType = orchestration.StateType(stateType.String)
	tr.StateName = stateName.String
	for _, f := range []struct {
		dst **time.Time
		src sql.NullString
	}{{&tr.StateTimestamp, stateTS}, {&tr.ExpectedStartTime, expStart}, {&tr.NextScheduledStartTime, nxt}, {&tr.StartTime, startTime}, {&tr.EndTime, endTime}} {
		if *f.dst, err = trParseNullTime(f.src); err != nil {
			return store.TaskRun{}, err
		}
	}
	tr.TotalRunTime = trSeconds(total)
	if sID.Valid && sType.Valid && sTimestamp.Valid {
		st, err := trState(sID.String, sType.String, sName.String, sTimestamp.String, sMessage, sDetails.String, sData, sArtifact)
		if err != nil {
			return store.TaskRun{}, err
		}
		tr.State = &st
	}
	return tr, nil
}

func trState(id, typ, name, ts string, msg sql.NullString, details string, data, artifact sql.NullString) (orchestration.State, error) {
	sid, err := uuid.Parse(id)
	if err != nil {
		return orchestration.State{}, fmt.Errorf("task run state id %q: %w", id, err)
	}
	t, err := parseTime(ts)
	if err != nil {
		return orchestration.State{}, err
	}
	p := runcodec.StateParts{ID: sid, Type: typ, Name: name, Timestamp: t, Details: []byte(details)}
	if msg.Valid {
		p.Message = &msg.String
	}
	if data.Valid {
		p.Data = []byte(data.String)
	}
	if artifact.Valid {
		p.ArtifactData = []byte(artifact.String)
	}
	return runcodec.DecodeState(p)
}

func trParseNullTime(s sql.NullString) (*time.Time, error) {
	if !s.Valid {
		return nil, nil
	}
	t, err := parseTime(s.String)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func trParseNullID(s sql.NullString) (*uuid.UUID, error) {
	if !s.Valid {
		return nil, nil
	}
	id, err := uuid.Parse(s.String)
	if err != nil {
		return nil, fmt.Errorf("stored id %q: %w", s.String, err)
	}
	return &id, nil
}

func trSeconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond)
}

func trNullID(id *uuid.UUID) sql.NullString {
	if id == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: id.String(), Valid: true}
}

func trNullStr(s *string) sql.NullString {
	if s == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: *s, Valid: true}
}

func trNullTime(t *time.Time) sql.NullString {
	if t == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: formatTime(*t), Valid: true}
}
