package filter

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Dialect selects the SQL flavour the Builder writes.
type Dialect int

// The two engines the server runs on.
const (
	Postgres Dialect = iota
	SQLite
)

func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

// ErrInvalid marks filters the builder refuses; callers answer 422 for it.
var ErrInvalid = errors.New("invalid filter")

// SQLiteTimeLayout is the one sortable UTC text format timestamps are stored
// in on SQLite; comparisons on it are plain string comparisons.
const SQLiteTimeLayout = "2006-01-02T15:04:05.000000Z"

// SQLiteTime formats t the way SQLite columns store timestamps.
func SQLiteTime(t time.Time) string { return t.UTC().Format(SQLiteTimeLayout) }

// The always-true and always-false expressions. Prefect renders an empty
// criteria list as TRUE and an IN over an empty list as FALSE.
const (
	sqlTrue  = "1=1"
	sqlFalse = "1=0"
)

// Builder turns filters into SQL boolean expressions over the fixed table
// names flow, flow_run, task_run, deployment, work_pool, work_queue and log.
// Every user value becomes a bound parameter; Args returns them in
// placeholder order. One Builder serves one statement: several Where calls
// and Bind calls may be mixed, their placeholders number consecutively.
// After an error the Builder's state is unspecified; discard it.
type Builder struct {
	d    Dialect
	args []any
	err  error
}

// NewBuilder returns an empty Builder for the dialect.
func NewBuilder(d Dialect) *Builder { return &Builder{d: d} }

// Dialect reports the builder's dialect.
func (b *Builder) Dialect() Dialect { return b.d }

// Args returns the bound values in placeholder order.
func (b *Builder) Args() []any { return b.args }

// Bind adds a value (e.g. LIMIT or OFFSET) and returns its placeholder, so a
// whole statement can share one argument list with the filter expressions.
func (b *Builder) Bind(v any) string {
	b.args = append(b.args, v)
	if b.d == Postgres {
		return "$" + strconv.Itoa(len(b.args))
	}
	return "?"
}

func (b *Builder) fail(format string, a ...any) {
	if b.err == nil {
		b.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
	}
}

// result hands back an expression, or the first error met while building it.
func (b *Builder) result(expr string) (string, error) {
	if b.err == nil && len(b.args) > maxArgs {
		b.fail("too many values (%d parameters, at most %d)", len(b.args), maxArgs)
	}
	if b.err != nil {
		return "", b.err
	}
	return expr, nil
}

// checkPGString refuses NUL characters for PostgreSQL, whose text cannot
// hold them: the driver error would otherwise surface as a 500, not a 422.
func (b *Builder) checkPGString(s string) {
	if b.d == Postgres && strings.IndexByte(s, 0) >= 0 {
		b.fail("strings must not contain NUL characters")
	}
}

func (b *Builder) bindString(s string) string {
	b.checkPGString(s)
	return b.Bind(s)
}

func (b *Builder) bindUUID(u uuid.UUID) string {
	if b.d == SQLite {
		return b.Bind(u.String())
	}
	return b.Bind(u)
}

func (b *Builder) bindTime(t Time) string {
	if b.d == SQLite {
		return b.Bind(SQLiteTime(t.Time))
	}
	return b.Bind(t.UTC())
}

// combine joins criteria with the operator; none at all means TRUE.
func (b *Builder) combine(op Operator, parts []string) string {
	sep := " AND "
	switch op {
	case "", And:
	case Or:
		sep = " OR "
	default:
		b.fail("operator must be %q or %q, got %q", And, Or, string(op))
	}
	switch len(parts) {
	case 0:
		return sqlTrue
	case 1:
		return parts[0]
	}
	return "(" + strings.Join(parts, sep) + ")"
}

// longList is the list length from which a list travels as one array
// parameter instead of one parameter per value: engines cap the number of
// parameters (SQLite 32766, PostgreSQL 65535) and Prefect's UI can send
// thousands of ids.
const longList = 100

// maxArgs bounds a statement's parameters below both engines' limits; only
// pathological filters (e.g. thousands of startswith_ prefixes) reach it.
const maxArgs = 30000

func (b *Builder) inStrings(col string, vals []string) string {
	if len(vals) == 0 {
		return sqlFalse
	}
	if len(vals) >= longList {
		if b.d == Postgres {
			for _, v := range vals {
				b.checkPGString(v)
			}
			return col + " = ANY(" + b.Bind(vals) + "::text[])"
		}
		doc, _ := json.Marshal(vals)
		return col + " IN (SELECT value FROM json_each(" + b.Bind(string(doc)) + "))"
	}
	ph := make([]string, len(vals))
	for i, v := range vals {
		ph[i] = b.bindString(v)
	}
	return col + " IN (" + strings.Join(ph, ", ") + ")"
}

// stateTypes are the labels of PostgreSQL's state_type enum; any other value
// would make the database reject the statement, so it is refused up front.
var stateTypes = map[string]bool{
	"SCHEDULED": true, "PENDING": true, "RUNNING": true, "COMPLETED": true, "FAILED": true,
	"CANCELLED": true, "CRASHED": true, "PAUSED": true, "CANCELLING": true,
}

// inStateTypes validates and de-duplicates state types, which keeps the list
// short: a state_type enum column cannot be compared with a text[] array.
func (b *Builder) inStateTypes(col string, vals []string) string {
	var uniq []string
	seen := map[string]bool{}
	for _, v := range vals {
		if !stateTypes[v] {
			b.fail("unknown state type %q", v)
			return sqlFalse
		}
		if !seen[v] {
			seen[v] = true
			uniq = append(uniq, v)
		}
	}
	return b.inStrings(col, uniq)
}

func (b *Builder) inUUIDs(col string, vals []uuid.UUID) string {
	if len(vals) == 0 {
		return sqlFalse
	}
	if len(vals) >= longList {
		if b.d == Postgres {
			return col + " = ANY(" + b.Bind(vals) + "::uuid[])"
		}
		ids := make([]string, len(vals))
		for i, v := range vals {
			ids[i] = v.String()
		}
		doc, _ := json.Marshal(ids)
		return col + " IN (SELECT value FROM json_each(" + b.Bind(string(doc)) + "))"
	}
	ph := make([]string, len(vals))
	for i, v := range vals {
		ph[i] = b.bindUUID(v)
	}
	return col + " IN (" + strings.Join(ph, ", ") + ")"
}

// not negates an expression. Prefect adds no criterion for an empty not_any_
// list, so callers only negate non-empty IN lists.
func not(expr string) string { return "NOT (" + expr + ")" }

func isNull(col string, null bool) string {
	if null {
		return col + " IS NULL"
	}
	return col + " IS NOT NULL"
}

// escapeLike makes user text literal inside a LIKE pattern (escape char '\').
func escapeLike(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// ilike is a case-insensitive match of pattern (already escaped, with its
// own wildcards). SQLite's LIKE is case-insensitive for ASCII, as in Prefect.
func (b *Builder) ilike(col, pattern string) string {
	op := " ILIKE "
	if b.d == SQLite {
		op = " LIKE "
	}
	return col + op + b.bindString(pattern) + ` ESCAPE '\'`
}

func (b *Builder) contains(col, sub string) string {
	return b.ilike(col, "%"+escapeLike(sub)+"%")
}

// tagsAll: the JSON array column holds every tag (a superset).
func (b *Builder) tagsAll(col string, tags []string) string {
	if b.d == Postgres {
		for _, t := range tags {
			b.checkPGString(t)
		}
		doc, _ := json.Marshal(tags)
		return col + " @> " + b.Bind(string(doc)) + "::jsonb"
	}
	if len(tags) >= longList {
		doc, _ := json.Marshal(tags)
		return "NOT EXISTS (SELECT 1 FROM json_each(" + b.Bind(string(doc)) + ") AS wanted WHERE wanted.value NOT IN (SELECT json_each.value FROM json_each(" + col + ")))"
	}
	parts := make([]string, len(tags))
	for i, t := range tags {
		parts[i] = "EXISTS (SELECT 1 FROM json_each(" + col + ") WHERE json_each.value = " + b.bindString(t) + ")"
	}
	return b.combine(And, parts)
}

// tagsAny: the JSON array column holds at least one of the tags.
func (b *Builder) tagsAny(col string, tags []string) string {
	if len(tags) == 0 {
		return sqlFalse
	}
	if b.d == Postgres {
		if len(tags) >= longList {
			for _, t := range tags {
				b.checkPGString(t)
			}
			return col + " ?| " + b.Bind(tags) + "::text[]"
		}
		ph := make([]string, len(tags))
		for i, t := range tags {
			ph[i] = b.bindString(t)
		}
		return col + " ?| ARRAY[" + strings.Join(ph, ", ") + "]::text[]"
	}
	return "EXISTS (SELECT 1 FROM json_each(" + col + ") WHERE " + b.inStrings("json_each.value", tags) + ")"
}

// tagsIsNull: "no tags" is an empty array; a NULL column counts as none too.
func (b *Builder) tagsIsNull(col string, null bool) string {
	if b.d == Postgres {
		if null {
			return "(" + col + " IS NULL OR " + col + " = '[]'::jsonb)"
		}
		return "(" + col + " IS NOT NULL AND " + col + " <> '[]'::jsonb)"
	}
	if null {
		return "(" + col + " IS NULL OR json_array_length(" + col + ") = 0)"
	}
	return "json_array_length(" + col + ") > 0"
}

// jsonText extracts a top-level string member of a JSON object column.
func (b *Builder) jsonText(col, key string) string {
	if b.d == Postgres {
		return col + "->>'" + key + "'"
	}
	return "json_extract(" + col + ", '$." + key + "')"
}

func (b *Builder) timeRange(col string, before, after *Time) []string {
	var parts []string
	if before != nil {
		parts = append(parts, col+" <= "+b.bindTime(*before))
	}
	if after != nil {
		parts = append(parts, col+" >= "+b.bindTime(*after))
	}
	return parts
}

// ---- flows ----

func (b *Builder) flowFilter(f *FlowFilter) string {
	if f == nil {
		return sqlTrue
	}
	var parts []string
	if f.Id != nil {
		var p []string
		if f.Id.Any != nil {
			p = append(p, b.inUUIDs("flow.id", f.Id.Any))
		}
		if len(f.Id.NotAny) > 0 {
			p = append(p, not(b.inUUIDs("flow.id", f.Id.NotAny)))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Deployment != nil {
		var p []string
		if f.Deployment.IsNull != nil {
			exists := "EXISTS (SELECT 1 FROM deployment WHERE deployment.flow_id = flow.id)"
			if *f.Deployment.IsNull {
				exists = "NOT " + exists
			}
			p = append(p, exists)
		}
		parts = append(parts, b.combine(f.Deployment.Operator, p))
	}
	if f.Name != nil {
		var p []string
		if f.Name.Any != nil {
			p = append(p, b.inStrings("flow.name", f.Name.Any))
		}
		if f.Name.Like != nil && *f.Name.Like != "" {
			p = append(p, b.contains("flow.name", *f.Name.Like))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Tags != nil {
		var p []string
		if len(f.Tags.All) > 0 {
			p = append(p, b.tagsAll("flow.tags", f.Tags.All))
		}
		if f.Tags.IsNull != nil {
			p = append(p, b.tagsIsNull("flow.tags", *f.Tags.IsNull))
		}
		parts = append(parts, b.combine(f.Tags.Operator, p))
	}
	return b.combine(f.Operator, parts)
}

// ---- flow runs ----

func (b *Builder) flowRunFilter(f *FlowRunFilter) string {
	if f == nil {
		return sqlTrue
	}
	var parts []string
	if f.Id != nil {
		var p []string
		if f.Id.Any != nil {
			p = append(p, b.inUUIDs("flow_run.id", f.Id.Any))
		}
		if len(f.Id.NotAny) > 0 {
			p = append(p, not(b.inUUIDs("flow_run.id", f.Id.NotAny)))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Name != nil {
		var p []string
		if f.Name.Any != nil {
			p = append(p, b.inStrings("flow_run.name", f.Name.Any))
		}
		if f.Name.Like != nil && *f.Name.Like != "" {
			p = append(p, b.contains("flow_run.name", *f.Name.Like))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Tags != nil {
		var p []string
		if len(f.Tags.All) > 0 {
			p = append(p, b.tagsAll("flow_run.tags", f.Tags.All))
		}
		if f.Tags.Any != nil {
			p = append(p, b.tagsAny("flow_run.tags", f.Tags.Any))
		}
		if f.Tags.IsNull != nil {
			p = append(p, b.tagsIsNull("flow_run.tags", *f.Tags.IsNull))
		}
		parts = append(parts, b.combine(f.Tags.Operator, p))
	}
	if f.DeploymentId != nil {
		var p []string
		if f.DeploymentId.Any != nil {
			p = append(p, b.inUUIDs("flow_run.deployment_id", f.DeploymentId.Any))
		}
		if f.DeploymentId.IsNull != nil {
			p = append(p, isNull("flow_run.deployment_id", *f.DeploymentId.IsNull))
		}
		parts = append(parts, b.combine(f.DeploymentId.Operator, p))
	}
	if f.WorkQueueName != nil {
		var p []string
		if f.WorkQueueName.Any != nil {
			p = append(p, b.inStrings("flow_run.work_queue_name", f.WorkQueueName.Any))
		}
		if f.WorkQueueName.IsNull != nil {
			p = append(p, isNull("flow_run.work_queue_name", *f.WorkQueueName.IsNull))
		}
		parts = append(parts, b.combine(f.WorkQueueName.Operator, p))
	}
	// Prefect adds flow_version before state; the order only shows in the
	// SQL text, never in the result, but matching it keeps reviews simple.
	if f.FlowVersion != nil {
		var p []string
		if f.FlowVersion.Any != nil {
			p = append(p, b.inStrings("flow_run.flow_version", f.FlowVersion.Any))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.State != nil {
		// Unlike the other groups, state drops sub-filters without criteria,
		// so an empty {"type": {}} does not turn an or_ into TRUE.
		var p []string
		if t := f.State.Type; t != nil {
			var q []string
			if t.Any != nil {
				q = append(q, b.inStateTypes("flow_run.state_type", t.Any))
			}
			if len(t.NotAny) > 0 {
				q = append(q, not(b.inStateTypes("flow_run.state_type", t.NotAny)))
			}
			if len(q) > 0 {
				p = append(p, b.combine(And, q))
			}
		}
		if n := f.State.Name; n != nil {
			var q []string
			if n.Any != nil {
				q = append(q, b.inStrings("flow_run.state_name", n.Any))
			}
			if len(n.NotAny) > 0 {
				q = append(q, not(b.inStrings("flow_run.state_name", n.NotAny)))
			}
			if len(q) > 0 {
				p = append(p, b.combine(And, q))
			}
		}
		parts = append(parts, b.combine(f.State.Operator, p))
	}
	if f.StartTime != nil {
		// Runs that have not started are placed at their expected start.
		p := b.timeRange("COALESCE(flow_run.start_time, flow_run.expected_start_time)", f.StartTime.Before, f.StartTime.After)
		if f.StartTime.IsNull != nil {
			p = append(p, isNull("flow_run.start_time", *f.StartTime.IsNull))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.EndTime != nil {
		p := b.timeRange("flow_run.end_time", f.EndTime.Before, f.EndTime.After)
		if f.EndTime.IsNull != nil {
			p = append(p, isNull("flow_run.end_time", *f.EndTime.IsNull))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.ExpectedStartTime != nil {
		parts = append(parts, b.combine(And, b.timeRange("flow_run.expected_start_time", f.ExpectedStartTime.Before, f.ExpectedStartTime.After)))
	}
	if f.NextScheduledStartTime != nil {
		parts = append(parts, b.combine(And, b.timeRange("flow_run.next_scheduled_start_time", f.NextScheduledStartTime.Before, f.NextScheduledStartTime.After)))
	}
	if f.ParentFlowRunId != nil {
		var p []string
		if f.ParentFlowRunId.Any != nil {
			in := b.inUUIDs("task_run.flow_run_id", f.ParentFlowRunId.Any)
			if in == sqlFalse {
				p = append(p, sqlFalse)
			} else {
				p = append(p, "EXISTS (SELECT 1 FROM task_run WHERE task_run.id = flow_run.parent_task_run_id AND "+in+")")
			}
		}
		parts = append(parts, b.combine(f.ParentFlowRunId.Operator, p))
	}
	if f.ParentTaskRunId != nil {
		var p []string
		if f.ParentTaskRunId.Any != nil {
			p = append(p, b.inUUIDs("flow_run.parent_task_run_id", f.ParentTaskRunId.Any))
		}
		if f.ParentTaskRunId.IsNull != nil {
			p = append(p, isNull("flow_run.parent_task_run_id", *f.ParentTaskRunId.IsNull))
		}
		parts = append(parts, b.combine(f.ParentTaskRunId.Operator, p))
	}
	if f.IdempotencyKey != nil {
		var p []string
		if f.IdempotencyKey.Any != nil {
			p = append(p, b.inStrings("flow_run.idempotency_key", f.IdempotencyKey.Any))
		}
		if len(f.IdempotencyKey.NotAny) > 0 {
			p = append(p, not(b.inStrings("flow_run.idempotency_key", f.IdempotencyKey.NotAny)))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.CreatedBy != nil {
		var p []string
		if f.CreatedBy.Id != nil {
			// created_by stores ids as lowercase strings inside the JSON.
			ids := make([]string, len(f.CreatedBy.Id))
			for i, id := range f.CreatedBy.Id {
				ids[i] = id.String()
			}
			p = append(p, b.inStrings(b.jsonText("flow_run.created_by", "id"), ids))
		}
		if f.CreatedBy.Type != nil {
			p = append(p, b.inStrings(b.jsonText("flow_run.created_by", "type"), f.CreatedBy.Type))
		}
		if f.CreatedBy.IsNull != nil {
			p = append(p, isNull("flow_run.created_by", *f.CreatedBy.IsNull))
		}
		parts = append(parts, b.combine(f.CreatedBy.Operator, p))
	}
	return b.combine(f.Operator, parts)
}

// ---- task runs ----

func (b *Builder) taskRunFilter(f *TaskRunFilter) string {
	if f == nil {
		return sqlTrue
	}
	var parts []string
	if f.Id != nil {
		var p []string
		if f.Id.Any != nil {
			p = append(p, b.inUUIDs("task_run.id", f.Id.Any))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Name != nil {
		var p []string
		if f.Name.Any != nil {
			p = append(p, b.inStrings("task_run.name", f.Name.Any))
		}
		if f.Name.Like != nil && *f.Name.Like != "" {
			p = append(p, b.contains("task_run.name", *f.Name.Like))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Tags != nil {
		var p []string
		if len(f.Tags.All) > 0 {
			p = append(p, b.tagsAll("task_run.tags", f.Tags.All))
		}
		if f.Tags.IsNull != nil {
			p = append(p, b.tagsIsNull("task_run.tags", *f.Tags.IsNull))
		}
		parts = append(parts, b.combine(f.Tags.Operator, p))
	}
	if f.State != nil {
		// As for flow runs, sub-filters without criteria are dropped.
		var p []string
		if f.State.Type != nil && f.State.Type.Any != nil {
			p = append(p, b.inStateTypes("task_run.state_type", f.State.Type.Any))
		}
		if f.State.Name != nil && f.State.Name.Any != nil {
			p = append(p, b.inStrings("task_run.state_name", f.State.Name.Any))
		}
		parts = append(parts, b.combine(f.State.Operator, p))
	}
	if f.StartTime != nil {
		p := b.timeRange("task_run.start_time", f.StartTime.Before, f.StartTime.After)
		if f.StartTime.IsNull != nil {
			p = append(p, isNull("task_run.start_time", *f.StartTime.IsNull))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.EndTime != nil {
		p := b.timeRange("task_run.end_time", f.EndTime.Before, f.EndTime.After)
		if f.EndTime.IsNull != nil {
			p = append(p, isNull("task_run.end_time", *f.EndTime.IsNull))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.ExpectedStartTime != nil {
		parts = append(parts, b.combine(And, b.timeRange("task_run.expected_start_time", f.ExpectedStartTime.Before, f.ExpectedStartTime.After)))
	}
	if f.SubflowRuns != nil {
		var p []string
		if f.SubflowRuns.Exists != nil {
			exists := "EXISTS (SELECT 1 FROM flow_run WHERE flow_run.parent_task_run_id = task_run.id)"
			if !*f.SubflowRuns.Exists {
				exists = "NOT " + exists
			}
			p = append(p, exists)
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.FlowRunId != nil {
		var p []string
		// is_null_ defaults to false in the schema, so an empty object asks
		// for task runs that belong to some flow run; is_null_ true wins
		// over any_.
		switch {
		case f.FlowRunId.IsNull != nil && *f.FlowRunId.IsNull:
			p = append(p, "task_run.flow_run_id IS NULL")
		case f.FlowRunId.Any == nil:
			p = append(p, "task_run.flow_run_id IS NOT NULL")
		default:
			p = append(p, b.inUUIDs("task_run.flow_run_id", f.FlowRunId.Any))
		}
		parts = append(parts, b.combine(f.FlowRunId.Operator, p))
	}
	return b.combine(f.Operator, parts)
}

// ---- deployments ----

func (b *Builder) deploymentFilter(f *DeploymentFilter) string {
	if f == nil {
		return sqlTrue
	}
	var parts []string
	if f.Id != nil {
		var p []string
		if f.Id.Any != nil {
			p = append(p, b.inUUIDs("deployment.id", f.Id.Any))
		}
		if len(f.Id.NotAny) > 0 {
			p = append(p, not(b.inUUIDs("deployment.id", f.Id.NotAny)))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Name != nil {
		var p []string
		if f.Name.Any != nil {
			p = append(p, b.inStrings("deployment.name", f.Name.Any))
		}
		if f.Name.Like != nil && *f.Name.Like != "" {
			p = append(p, b.contains("deployment.name", *f.Name.Like))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.FlowOrDeploymentName != nil {
		var p []string
		if l := f.FlowOrDeploymentName.Like; l != nil && *l != "" {
			p = append(p, "("+b.contains("deployment.name", *l)+
				" OR EXISTS (SELECT 1 FROM flow WHERE flow.id = deployment.flow_id AND "+b.contains("flow.name", *l)+"))")
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Paused != nil {
		var p []string
		if f.Paused.Eq != nil {
			if *f.Paused.Eq {
				p = append(p, "deployment.paused IS TRUE")
			} else {
				p = append(p, "deployment.paused IS FALSE")
			}
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Tags != nil {
		var p []string
		if len(f.Tags.All) > 0 {
			p = append(p, b.tagsAll("deployment.tags", f.Tags.All))
		}
		if f.Tags.Any != nil {
			p = append(p, b.tagsAny("deployment.tags", f.Tags.Any))
		}
		if f.Tags.IsNull != nil {
			p = append(p, b.tagsIsNull("deployment.tags", *f.Tags.IsNull))
		}
		parts = append(parts, b.combine(f.Tags.Operator, p))
	}
	if f.WorkQueueName != nil {
		var p []string
		if f.WorkQueueName.Any != nil {
			p = append(p, b.inStrings("deployment.work_queue_name", f.WorkQueueName.Any))
		}
		parts = append(parts, b.combine(And, p))
	}
	// concurrency_limit is accepted and ignored: Prefect dropped it when the
	// column became a relationship and leaves it out of the criteria entirely.
	return b.combine(f.Operator, parts)
}

// ---- work pools and queues ----

func (b *Builder) workPoolFilter(f *WorkPoolFilter) string {
	if f == nil {
		return sqlTrue
	}
	var parts []string
	if f.Id != nil {
		var p []string
		if f.Id.Any != nil {
			p = append(p, b.inUUIDs("work_pool.id", f.Id.Any))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Name != nil {
		var p []string
		if f.Name.Any != nil {
			p = append(p, b.inStrings("work_pool.name", f.Name.Any))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Type != nil {
		var p []string
		if f.Type.Any != nil {
			p = append(p, b.inStrings("work_pool.type", f.Type.Any))
		}
		parts = append(parts, b.combine(And, p))
	}
	return b.combine(f.Operator, parts)
}

func (b *Builder) workQueueFilter(f *WorkQueueFilter) string {
	if f == nil {
		return sqlTrue
	}
	var parts []string
	if f.Id != nil {
		var p []string
		if f.Id.Any != nil {
			p = append(p, b.inUUIDs("work_queue.id", f.Id.Any))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Name != nil {
		var p []string
		if f.Name.Any != nil {
			p = append(p, b.inStrings("work_queue.name", f.Name.Any))
		}
		// An empty startswith_ list adds nothing, as SQLAlchemy's empty or_().
		if len(f.Name.StartsWith) > 0 {
			q := make([]string, len(f.Name.StartsWith))
			for i, s := range f.Name.StartsWith {
				q[i] = b.ilike("work_queue.name", escapeLike(s)+"%")
			}
			p = append(p, b.combine(Or, q))
		}
		parts = append(parts, b.combine(And, p))
	}
	return b.combine(f.Operator, parts)
}

// ---- logs ----

func (b *Builder) logFilter(f *LogFilter) string {
	if f == nil {
		return sqlTrue
	}
	var parts []string
	if f.Level != nil {
		var p []string
		if f.Level.Ge != nil {
			p = append(p, "log.level >= "+b.Bind(int64(*f.Level.Ge)))
		}
		if f.Level.Le != nil {
			p = append(p, "log.level <= "+b.Bind(int64(*f.Level.Le)))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Timestamp != nil {
		parts = append(parts, b.combine(And, b.timeRange("log.timestamp", f.Timestamp.Before, f.Timestamp.After)))
	}
	if f.FlowRunId != nil {
		var p []string
		if f.FlowRunId.Any != nil {
			p = append(p, b.inUUIDs("log.flow_run_id", f.FlowRunId.Any))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.TaskRunId != nil {
		var p []string
		if f.TaskRunId.Any != nil {
			p = append(p, b.inUUIDs("log.task_run_id", f.TaskRunId.Any))
		}
		if f.TaskRunId.IsNull != nil {
			p = append(p, isNull("log.task_run_id", *f.TaskRunId.IsNull))
		}
		parts = append(parts, b.combine(And, p))
	}
	if f.Text != nil {
		// The text search contributes its clauses straight to this filter's
		// list, so they are combined with this filter's operator.
		parts = append(parts, b.textSearch(f.Text.Query)...)
	}
	return b.combine(f.Operator, parts)
}

func (b *Builder) textSearch(query string) []string {
	q := parseTextSearch(query)
	const field = "lower(log.message || ' ' || log.name)"
	match := func(term string) string {
		// lower() on both sides keeps PostgreSQL's LIKE case-insensitive.
		return field + " LIKE " + b.bindString("%"+escapeLike(strings.ToLower(term))+"%") + ` ESCAPE '\'`
	}
	var parts []string
	if len(q.include) > 0 {
		p := make([]string, len(q.include))
		for i, t := range q.include {
			p[i] = match(t)
		}
		parts = append(parts, b.combine(Or, p))
	}
	if len(q.exclude) > 0 {
		p := make([]string, len(q.exclude))
		for i, t := range q.exclude {
			p[i] = not(match(t))
		}
		parts = append(parts, b.combine(And, p))
	}
	if len(q.required) > 0 {
		p := make([]string, len(q.required))
		for i, t := range q.required {
			p[i] = match(t)
		}
		parts = append(parts, b.combine(And, p))
	}
	return parts
}

// ---- the endpoint-level expressions ----

// FlowWhere is the WHERE expression over table flow for a /flows/filter
// body. Related filters become correlated EXISTS subqueries, as in Prefect's
// models/flows.py: deployments and work pools through deployment (joined to
// work_queue and work_pool), flow runs and task runs through flow_run
// (joined to task_run).
func (b *Builder) FlowWhere(s FlowFilterSet) (string, error) {
	var parts []string
	if s.Flows != nil {
		parts = append(parts, b.flowFilter(s.Flows))
	}
	if s.Deployments != nil || s.WorkPools != nil {
		from := "deployment"
		where := []string{"deployment.flow_id = flow.id"}
		if s.Deployments != nil {
			where = append(where, b.deploymentFilter(s.Deployments))
		}
		if s.WorkPools != nil {
			from += " JOIN work_queue ON work_queue.id = deployment.work_queue_id JOIN work_pool ON work_pool.id = work_queue.work_pool_id"
			where = append(where, b.workPoolFilter(s.WorkPools))
		}
		parts = append(parts, exists(from, where))
	}
	if s.FlowRuns != nil || s.TaskRuns != nil {
		from := "flow_run"
		where := []string{"flow_run.flow_id = flow.id"}
		if s.FlowRuns != nil {
			where = append(where, b.flowRunFilter(s.FlowRuns))
		}
		if s.TaskRuns != nil {
			from += " JOIN task_run ON task_run.flow_run_id = flow_run.id"
			where = append(where, b.taskRunFilter(s.TaskRuns))
		}
		parts = append(parts, exists(from, where))
	}
	return b.result(b.combine(And, parts))
}

// FlowRunWhere is the WHERE expression over table flow_run for a
// /flow_runs/filter body, following Prefect's models/flow_runs.py.
func (b *Builder) FlowRunWhere(s FlowRunFilterSet) (string, error) {
	var parts []string
	if s.FlowRuns != nil {
		parts = append(parts, b.flowRunFilter(s.FlowRuns))
	}
	if s.Deployments != nil {
		parts = append(parts, exists("deployment", []string{"deployment.id = flow_run.deployment_id", b.deploymentFilter(s.Deployments)}))
	}
	if s.WorkPools != nil {
		parts = append(parts, exists("work_queue JOIN work_pool ON work_pool.id = work_queue.work_pool_id",
			[]string{"work_queue.id = flow_run.work_queue_id", b.workPoolFilter(s.WorkPools)}))
	}
	if s.WorkPoolQueues != nil {
		parts = append(parts, exists("work_queue", []string{"work_queue.id = flow_run.work_queue_id", b.workQueueFilter(s.WorkPoolQueues)}))
	}
	// Prefect puts flow and task run criteria in one EXISTS over flow x
	// task_run; the flow side does not depend on the task run, so two
	// EXISTS are the same predicate and each can use its own index.
	if s.Flows != nil {
		parts = append(parts, exists("flow", []string{"flow.id = flow_run.flow_id", b.flowFilter(s.Flows)}))
	}
	if s.TaskRuns != nil {
		parts = append(parts, exists("task_run", []string{"task_run.flow_run_id = flow_run.id", b.taskRunFilter(s.TaskRuns)}))
	}
	return b.result(b.combine(And, parts))
}

// TaskRunWhere is the WHERE expression over table task_run for a
// /task_runs/filter body, following Prefect's models/task_runs.py: all
// related criteria go into one EXISTS over flow_run joined to the others.
func (b *Builder) TaskRunWhere(s TaskRunFilterSet) (string, error) {
	var parts []string
	if s.TaskRuns != nil {
		parts = append(parts, b.taskRunFilter(s.TaskRuns))
	}
	fr := s.FlowRuns
	onlyFlowRunIDs := fr != nil && len(fr.Id.anyIDs()) > 0 && fr.onlyFiltersOnID() &&
		s.Flows == nil && s.Deployments == nil && s.WorkPools == nil && s.WorkPoolQueues == nil
	switch {
	case onlyFlowRunIDs:
		// The common "task runs of these flow runs" query needs no subquery.
		b.combine(fr.Operator, nil) // still validates the operator
		parts = append(parts, b.inUUIDs("task_run.flow_run_id", fr.Id.Any))
	case fr != nil || s.Flows != nil || s.Deployments != nil || s.WorkPools != nil || s.WorkPoolQueues != nil:
		from := "flow_run"
		where := []string{"flow_run.id = task_run.flow_run_id"}
		if fr != nil {
			where = append(where, b.flowRunFilter(fr))
		}
		if s.Flows != nil {
			from += " JOIN flow ON flow.id = flow_run.flow_id"
			where = append(where, b.flowFilter(s.Flows))
		}
		if s.Deployments != nil {
			from += " JOIN deployment ON deployment.id = flow_run.deployment_id"
			where = append(where, b.deploymentFilter(s.Deployments))
		}
		if s.WorkPoolQueues != nil || s.WorkPools != nil {
			from += " JOIN work_queue ON work_queue.id = flow_run.work_queue_id"
		}
		if s.WorkPoolQueues != nil {
			where = append(where, b.workQueueFilter(s.WorkPoolQueues))
		}
		if s.WorkPools != nil {
			from += " JOIN work_pool ON work_pool.id = work_queue.work_pool_id"
			where = append(where, b.workPoolFilter(s.WorkPools))
		}
		parts = append(parts, exists(from, where))
	}
	return b.result(b.combine(And, parts))
}

// DeploymentWhere is the WHERE expression over table deployment for a
// /deployments/filter body, following Prefect's models/deployments.py.
func (b *Builder) DeploymentWhere(s DeploymentFilterSet) (string, error) {
	var parts []string
	if s.Deployments != nil {
		parts = append(parts, b.deploymentFilter(s.Deployments))
	}
	if s.Flows != nil {
		parts = append(parts, exists("flow", []string{"flow.id = deployment.flow_id", b.flowFilter(s.Flows)}))
	}
	if s.FlowRuns != nil || s.TaskRuns != nil {
		from := "flow_run"
		where := []string{"flow_run.deployment_id = deployment.id"}
		if s.FlowRuns != nil {
			where = append(where, b.flowRunFilter(s.FlowRuns))
		}
		if s.TaskRuns != nil {
			from += " JOIN task_run ON task_run.flow_run_id = flow_run.id"
			where = append(where, b.taskRunFilter(s.TaskRuns))
		}
		parts = append(parts, exists(from, where))
	}
	if s.WorkPools != nil || s.WorkPoolQueues != nil {
		from := "work_queue"
		where := []string{"work_queue.id = deployment.work_queue_id"}
		if s.WorkPoolQueues != nil {
			where = append(where, b.workQueueFilter(s.WorkPoolQueues))
		}
		if s.WorkPools != nil {
			from += " JOIN work_pool ON work_pool.id = work_queue.work_pool_id"
			where = append(where, b.workPoolFilter(s.WorkPools))
		}
		parts = append(parts, exists(from, where))
	}
	return b.result(b.combine(And, parts))
}

// LogWhere is the WHERE expression over table log for a /logs/filter body.
func (b *Builder) LogWhere(f *LogFilter) (string, error) {
	return b.result(b.logFilter(f))
}

// WorkPoolWhere is the WHERE expression over table work_pool for a
// /work_pools/filter body.
func (b *Builder) WorkPoolWhere(f *WorkPoolFilter) (string, error) {
	return b.result(b.workPoolFilter(f))
}

// WorkQueueWhere is the WHERE expression over table work_queue for the
// /work_queues/filter and /work_pools/{name}/queues/filter bodies.
func (b *Builder) WorkQueueWhere(f *WorkQueueFilter) (string, error) {
	return b.result(b.workQueueFilter(f))
}

func exists(from string, where []string) string {
	var kept []string
	for _, w := range where {
		if w != sqlTrue {
			kept = append(kept, w)
		}
	}
	return "EXISTS (SELECT 1 FROM " + from + " WHERE " + strings.Join(kept, " AND ") + ")"
}

// anyIDs tolerates a nil receiver so callers can chain through optional parts.
func (f *FlowRunFilterId) anyIDs() []uuid.UUID {
	if f == nil {
		return nil
	}
	return f.Any
}

// onlyFiltersOnID mirrors Prefect's FlowRunFilter.only_filters_on_id.
func (f *FlowRunFilter) onlyFiltersOnID() bool {
	return f.Id != nil && len(f.Id.Any) > 0 && len(f.Id.NotAny) == 0 &&
		f.Name == nil && f.Tags == nil && f.DeploymentId == nil && f.WorkQueueName == nil &&
		f.State == nil && f.FlowVersion == nil && f.StartTime == nil && f.EndTime == nil &&
		f.ExpectedStartTime == nil && f.NextScheduledStartTime == nil && f.ParentFlowRunId == nil &&
		f.ParentTaskRunId == nil && f.IdempotencyKey == nil && f.CreatedBy == nil
}
