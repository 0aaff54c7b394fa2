package store

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// TaskRun is a row of table task_run with its current state (Prefect's
// TaskRun model, whose state relationship the API always serves).
type TaskRun struct {
	// RunCore holds id, the denormalised state columns, run_count and the
	// timing columns the orchestration transforms maintain.
	orchestration.RunCore
	Created         time.Time
	Updated         time.Time
	Name            string
	FlowRunID       *uuid.UUID
	TaskKey         string
	DynamicKey      string
	CacheKey        *string
	CacheExpiration *time.Time
	TaskVersion     *string
	FlowRunRunCount int
	EmpiricalPolicy orchestration.TaskRunPolicy
	Tags            []string       // never nil
	Labels          map[string]any // nil means SQL NULL
	// TaskInputs is the task_inputs JSON object as stored ({} when empty).
	TaskInputs json.RawMessage
	// State is the row state_id points at; nil when the run has none.
	State *orchestration.State
}

// EstimatedRunTime is Prefect's TaskRun.estimated_run_time at now.
func (r *TaskRun) EstimatedRunTime(now time.Time) time.Duration {
	return EstimatedRunTime(&r.RunCore, now)
}

// EstimatedStartTimeDelta is Prefect's TaskRun.estimated_start_time_delta
// at now.
func (r *TaskRun) EstimatedStartTimeDelta(now time.Time) time.Duration {
	return EstimatedStartTimeDelta(&r.RunCore, now)
}

// TaskRunCreate is what CreateTaskRun writes (Prefect's TaskRunCreate after
// the API layer filled its defaults).
type TaskRunCreate struct {
	ID              *uuid.UUID // nil: a new uuid4
	Name            string
	FlowRunID       *uuid.UUID
	TaskKey         string
	DynamicKey      string
	CacheKey        *string
	CacheExpiration *time.Time
	TaskVersion     *string
	EmpiricalPolicy orchestration.TaskRunPolicy
	Tags            []string
	// Labels are the client's; CreateTaskRun merges the flow run's labels
	// and prefect.flow-run.id beneath them, as Prefect does.
	Labels     map[string]any
	TaskInputs json.RawMessage // nil: {}
	// State is applied with force in the creating transaction; nil creates
	// the run without a state.
	State *orchestration.State
}

// TaskRunUpdate lists the columns a PATCH may set; nil fields are left
// alone.
type TaskRunUpdate struct {
	Name *string
}

// TaskRunQuery selects a page of task runs.
type TaskRunQuery struct {
	Filter filter.TaskRunFilterSet
	Sort   string // a TaskRunSort enum value; "" means ID_DESC
	Limit  int    // <= 0: no limit
	Offset int    // <= 0: from the first row
}

// TaskRunHistoryQuery is the body of POST /task_runs/history: task runs
// are bucketed by expected_start_time into intervals of Interval from
// Start, at most 500 of them, covering End.
type TaskRunHistoryQuery struct {
	Start    time.Time
	End      time.Time
	Interval time.Duration // at least one second
	Filter   filter.TaskRunFilterSet
}

// TaskRunRecord is one prefect.task-run.* event as the task run recorder
// reads it (Prefect's task_run_from_event): the run's columns from
// payload.task_run, the state from payload.validated_state with the event's
// id and occurred time.
type TaskRunRecord struct {
	// EventID identifies the event in logs.
	EventID uuid.UUID
	// Run carries the columns; only those named in Set are written (the
	// event's payload omits unset and null fields, and an omitted field
	// must not overwrite what an earlier event recorded). ID, FlowRunID,
	// TaskKey, DynamicKey and Name are always written.
	Run TaskRun
	Set TaskRunFields
	// State is the validated state; its ID is the event id and its
	// Timestamp the event's occurred time.
	State orchestration.State
}

// TaskRunFields names the optional task_run columns a record carries.
type TaskRunFields struct {
	CacheKey, CacheExpiration, TaskVersion, EmpiricalPolicy, Tags, Labels,
	TaskInputs, RunCount, FlowRunRunCount, ExpectedStartTime,
	NextScheduledStartTime, StartTime, EndTime, TotalRunTime bool
}

// TaskRunStore is the persistence of task_run and task_run_state rows.
type TaskRunStore interface {
	// CreateTaskRun is Prefect's create_task_run: with a flow run, an
	// existing (flow_run_id, task_key, dynamic_key) returns that run
	// untouched with created=false; without one, the same holds for
	// (task_key, dynamic_key) among runs without a flow run. A new run
	// gets in.State applied with force in the same transaction, and the
	// result of that orchestration is returned (its effects are the
	// caller's to publish). ErrNotFound is never returned: a flow_run_id
	// that does not exist is ErrConflict (the foreign key).
	CreateTaskRun(ctx context.Context, in TaskRunCreate, opts orchestration.Options) (tr TaskRun, created bool, res SetStateResult, err error)
	// ReadTaskRun returns ErrNotFound when no task run has the id.
	ReadTaskRun(ctx context.Context, id uuid.UUID) (TaskRun, error)
	// ReadTaskRuns returns one page; filter.ErrInvalid-wrapped errors mean
	// a bad filter or sort.
	ReadTaskRuns(ctx context.Context, q TaskRunQuery) ([]TaskRun, error)
	// CountTaskRuns counts the task runs the filter matches.
	CountTaskRuns(ctx context.Context, f filter.TaskRunFilterSet) (int64, error)
	// TaskRunHistory is Prefect's run_history for task runs.
	TaskRunHistory(ctx context.Context, q TaskRunHistoryQuery) ([]HistoryInterval, error)
	// UpdateTaskRun sets the given columns and bumps updated; ErrNotFound
	// when no task run has the id.
	UpdateTaskRun(ctx context.Context, id uuid.UUID, in TaskRunUpdate) error
	// DeleteTaskRun deletes the run and its states; ErrNotFound when no
	// task run has the id.
	DeleteTaskRun(ctx context.Context, id uuid.UUID) error
	// ReadTaskRunState returns one task_run_state row; ErrNotFound when
	// absent.
	ReadTaskRunState(ctx context.Context, id uuid.UUID) (orchestration.State, error)
	// ReadTaskRunStates returns a task run's states, oldest first (empty,
	// not an error, for an unknown run).
	ReadTaskRunStates(ctx context.Context, taskRunID uuid.UUID) ([]orchestration.State, error)
	// RecordTaskRunEvents is the task run recorder's write path, in one
	// transaction: each run is upserted on its id or its natural key
	// (flow_run_id, task_key, dynamic_key), and an existing row changes
	// only when the incoming state is newer than the one it holds; every
	// record's state is inserted unless a state with its id exists.
	// Records whose flow run does not exist are skipped and returned, so
	// one orphan cannot hold back the batch.
	RecordTaskRunEvents(ctx context.Context, recs []TaskRunRecord) (skipped []TaskRunRecord, err error)
}

// TaskRunNaturalKey is the unique (flow_run_id, task_key, dynamic_key) of a
// task run that belongs to a flow run.
type TaskRunNaturalKey struct {
	FlowRunID  uuid.UUID
	TaskKey    string
	DynamicKey string
}

// ExistingTaskRun is a task_run row the recorder's lookup found.
type ExistingTaskRun struct {
	ID         uuid.UUID
	NaturalKey *TaskRunNaturalKey // nil for a run without a flow run
}

// TaskRunConflictTarget is the ON CONFLICT target of one recorder upsert.
type TaskRunConflictTarget int

// The two targets: the primary key, or the natural key's unique index.
const (
	ConflictOnID TaskRunConflictTarget = iota
	ConflictOnNaturalKey
)

// TaskRunRecordGroup is a set of records that name the same task run,
// through its id or its natural key, directly or transitively; one upsert
// writes its latest record.
type TaskRunRecordGroup struct {
	// Winner indexes the record with the latest state timestamp (the last
	// one given, among equals).
	Winner int
	// Target and ID are set by Resolve: the conflict target and the id the
	// row is inserted with, which is an existing row's id when the group
	// names that row only through a key the statement cannot target.
	Target TaskRunConflictTarget
	ID     uuid.UUID

	ids  []uuid.UUID
	nats []TaskRunNaturalKey
}

// TaskRunRecordPlan is the dialect-neutral part of RecordTaskRunEvents:
// Prefect's coalescing of a batch by id and natural key, and its choice of
// conflict target against the rows that exist. Adapters look up LookupIDs
// and LookupNaturalKeys, call Resolve, then write one row per group.
type TaskRunRecordPlan struct {
	Groups []TaskRunRecordGroup
	// GroupOf[i] is the index in Groups of record i.
	GroupOf []int
	// LookupIDs and LookupNaturalKeys are every key the batch names.
	LookupIDs         []uuid.UUID
	LookupNaturalKeys []TaskRunNaturalKey
}

// NaturalKeyOf returns the record's natural key, nil without a flow run.
func (r *TaskRunRecord) NaturalKeyOf() *TaskRunNaturalKey {
	if r.Run.FlowRunID == nil {
		return nil
	}
	return &TaskRunNaturalKey{FlowRunID: *r.Run.FlowRunID, TaskKey: r.Run.TaskKey, DynamicKey: r.Run.DynamicKey}
}

// PlanTaskRunRecords groups the records: two records belong together when
// they share an id or a natural key. Each group's winner is its record with
// the latest state timestamp, so that an older event in the same batch
// never overwrites a newer one.
func PlanTaskRunRecords(recs []TaskRunRecord) *TaskRunRecordPlan {
	// Union-find over keys; a key is either an id or a natural key.
	type key struct {
		id  uuid.UUID
		nat TaskRunNaturalKey
	}
	parent := map[key]key{}
	var find func(k key) key
	find = func(k key) key {
		p, ok := parent[k]
		if !ok {
			parent[k] = k
			return k
		}
		if p == k {
			return k
		}
		root := find(p)
		parent[k] = root
		return root
	}
	union := func(a, b key) {
		ra, rb := find(a), find(b)
		if ra != rb {
			parent[rb] = ra
		}
	}
	for i := range recs {
		idKey := key{id: recs[i].Run.ID}
		find(idKey)
		if nk := recs[i].NaturalKeyOf(); nk != nil {
			union(idKey, key{nat: *nk})
		}
	}

	p := &TaskRunRecordPlan{GroupOf: make([]int, len(recs))}
	groupIdx := map[key]int{}
	seenID := map[uuid.UUID]bool{}
	seenNat := map[TaskRunNaturalKey]bool{}
	for i := range recs {
		r := &recs[i]
		root := find(key{id: r.Run.ID})
		g, ok := groupIdx[root]
		if !ok {
			g = len(p.Groups)
			groupIdx[root] = g
			p.Groups = append(p.Groups, TaskRunRecordGroup{Winner: i})
		}
		p.GroupOf[i] = g
		grp := &p.Groups[g]
		// Later records win ties, as Prefect's stable sort by timestamp
		// followed by "last one assigned wins" does.
		if !r.State.Timestamp.Before(recs[grp.Winner].State.Timestamp) {
			grp.Winner = i
		}
		if !seenID[r.Run.ID] {
			seenID[r.Run.ID] = true
			p.LookupIDs = append(p.LookupIDs, r.Run.ID)
		}
		if !slices.Contains(grp.ids, r.Run.ID) {
			grp.ids = append(grp.ids, r.Run.ID)
		}
		if nk := r.NaturalKeyOf(); nk != nil {
			if !seenNat[*nk] {
				seenNat[*nk] = true
				p.LookupNaturalKeys = append(p.LookupNaturalKeys, *nk)
			}
			if !slices.Contains(grp.nats, *nk) {
				grp.nats = append(grp.nats, *nk)
			}
		}
	}
	return p
}

// Resolve picks each group's conflict target and insert id against the rows
// that exist, as Prefect's recorder does: the natural key when the winner's
// exists; else the id when the winner's exists; else the id of any existing
// row another record of the group names; else the natural key for runs of
// a flow run and the id for the others. Groups are then sorted by target
// and key, so that concurrent writers lock rows in one order.
func (p *TaskRunRecordPlan) Resolve(recs []TaskRunRecord, existing []ExistingTaskRun) {
	byID := map[uuid.UUID]bool{}
	byNat := map[TaskRunNaturalKey]uuid.UUID{}
	for _, e := range existing {
		byID[e.ID] = true
		if e.NaturalKey != nil {
			byNat[*e.NaturalKey] = e.ID
		}
	}
	for g := range p.Groups {
		grp := &p.Groups[g]
		w := &recs[grp.Winner]
		grp.ID = w.Run.ID
		nk := w.NaturalKeyOf()
		switch {
		case nk != nil && byNat[*nk] != uuid.Nil:
			grp.Target = ConflictOnNaturalKey
		case byID[w.Run.ID]:
			grp.Target = ConflictOnID
		default:
			grp.Target = ConflictOnID
			if id, ok := grp.existingAlias(byID, byNat); ok {
				grp.ID = id
			} else if nk != nil {
				grp.Target = ConflictOnNaturalKey
			}
		}
	}
	// Remap GroupOf after sorting.
	order := make([]int, len(p.Groups))
	for i := range order {
		order[i] = i
	}
	sortKey := func(g *TaskRunRecordGroup) string {
		w := &recs[g.Winner]
		if g.Target == ConflictOnNaturalKey {
			return "1" + w.Run.FlowRunID.String() + "\x00" + w.Run.TaskKey + "\x00" + w.Run.DynamicKey
		}
		return "0" + g.ID.String()
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return strings.Compare(sortKey(&p.Groups[a]), sortKey(&p.Groups[b]))
	})
	newPos := make([]int, len(order))
	groups := make([]TaskRunRecordGroup, len(order))
	for pos, old := range order {
		groups[pos] = p.Groups[old]
		newPos[old] = pos
	}
	p.Groups = groups
	for i, g := range p.GroupOf {
		p.GroupOf[i] = newPos[g]
	}
}

// existingAlias finds an existing row that some record of the group names,
// trying keys in a fixed order so that the choice is deterministic.
func (g *TaskRunRecordGroup) existingAlias(byID map[uuid.UUID]bool, byNat map[TaskRunNaturalKey]uuid.UUID) (uuid.UUID, bool) {
	ids := slices.Clone(g.ids)
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	for _, id := range ids {
		if byID[id] {
			return id, true
		}
	}
	nats := slices.Clone(g.nats)
	slices.SortFunc(nats, func(a, b TaskRunNaturalKey) int {
		return strings.Compare(a.FlowRunID.String()+a.TaskKey+"\x00"+a.DynamicKey, b.FlowRunID.String()+b.TaskKey+"\x00"+b.DynamicKey)
	})
	for _, nk := range nats {
		if id, ok := byNat[nk]; ok {
			return id, true
		}
	}
	return uuid.Nil, false
}

// Signature names the optional columns a record writes, so that records
// with the same columns can share one multi-row statement.
func (f TaskRunFields) Signature() string {
	b := []byte("..............")
	for i, set := range []bool{f.CacheKey, f.CacheExpiration, f.TaskVersion, f.EmpiricalPolicy, f.Tags, f.Labels,
		f.TaskInputs, f.RunCount, f.FlowRunRunCount, f.ExpectedStartTime, f.NextScheduledStartTime, f.StartTime,
		f.EndTime, f.TotalRunTime} {
		if set {
			b[i] = 'x'
		}
	}
	return string(b)
}
