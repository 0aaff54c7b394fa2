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

// inValues renders col IN (...) with one parameter per value; a long list
// travels as one array parameter (cast to pgArray on PostgreSQL) or, on
// SQLite, as one JSON document of the values' text.
func inValues[T any](b *Builder, col string, vals []T, bind func(T) string, pgArray string, text func(T) string) string {
	if len(vals) == 0 {
		return sqlFalse
	}
	if len(vals) < longList {
		return col + " IN (" + bindEach(vals, bind) + ")"
	}
	if b.d == Postgres {
		return col + " = ANY(" + b.Bind(vals) + pgArray + ")"
	}
	texts := make([]string, len(vals))
	for i, v := range vals {
		texts[i] = text(v)
	}
	return col + " IN (SELECT value FROM json_each(" + b.bindJSON(texts) + "))"
}

// bindEach binds the values one by one and lists their placeholders.
func bindEach[T any](vals []T, bind func(T) string) string {
	ph := make([]string, len(vals))
	for i, v := range vals {
		ph[i] = bind(v)
	}
	return strings.Join(ph, ", ")
}

// bindJSON binds the strings as one JSON array document.
func (b *Builder) bindJSON(vals []string) string {
	doc, _ := json.Marshal(vals)
	return b.Bind(string(doc))
}

// checkPGStrings is checkPGString for values bound as one array parameter.
func (b *Builder) checkPGStrings(vals []string) {
	for _, v := range vals {
		b.checkPGString(v)
	}
}

func (b *Builder) inStrings(col string, vals []string) string {
	if len(vals) >= longList {
		b.checkPGStrings(vals)
	}
	return inValues(b, col, vals, b.bindString, "::text[]", func(s string) string { return s })
}

func (b *Builder) inUUIDs(col string, vals []uuid.UUID) string {
	return inValues(b, col, vals, b.bindUUID, "::uuid[]", uuid.UUID.String)
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

// not negates an expression.
func not(expr string) string { return "NOT (" + expr + ")" }

// ---- criteria ----
//
// The criteria helpers below render the members of one sub-filter object
// (any_, not_any_, like_, is_null_, ...) as a list of SQL clauses, empty
// when the request leaves them out; clauses.add joins a sub-filter's lists.

// oneOf is an any_/not_any_ pair over col. A present any_ list restricts,
// even an empty one (which matches nothing); Prefect adds no criterion for
// an empty not_any_ list, so only non-empty lists are negated.
func oneOf[T any](in func(col string, vals []T) string, col string, anyOf, notAny []T) []string {
	var p []string
	if anyOf != nil {
		p = append(p, in(col, anyOf))
	}
	if len(notAny) > 0 {
		p = append(p, not(in(col, notAny)))
	}
	return p
}

// ids is oneOf over a uuid column.
func (b *Builder) ids(col string, anyOf, notAny []uuid.UUID) []string {
	return oneOf(b.inUUIDs, col, anyOf, notAny)
}

// strs is oneOf over a text column.
func (b *Builder) strs(col string, anyOf, notAny []string) []string {
	return oneOf(b.inStrings, col, anyOf, notAny)
}

// isNull is an is_null_ criterion.
func isNull(col string, null *bool) []string {
	switch {
	case null == nil:
		return nil
	case *null:
		return []string{col + " IS NULL"}
	}
	return []string{col + " IS NOT NULL"}
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

// like is a like_ (substring) criterion; an empty like_ adds nothing.
func (b *Builder) like(col string, sub *string) []string {
	if sub == nil || *sub == "" {
		return nil
	}
	return []string{b.contains(col, *sub)}
}

// startsWith is a startswith_ criterion: any of the case-insensitive
// prefixes. An empty list adds nothing, as SQLAlchemy's empty or_().
func (b *Builder) startsWith(col string, prefixes []string) []string {
	if len(prefixes) == 0 {
		return nil
	}
	q := make([]string, len(prefixes))
	for i, s := range prefixes {
		q[i] = b.ilike(col, escapeLike(s)+"%")
	}
	return []string{b.combine(Or, q)}
}

// tags is a tag sub-filter (all_, any_, is_null_) over a JSON array column.
func (b *Builder) tags(col string, all, anyOf []string, null *bool) []string {
	var p []string
	if len(all) > 0 {
		p = append(p, b.tagsAll(col, all))
	}
	if anyOf != nil {
		p = append(p, b.tagsAny(col, anyOf))
	}
	if null != nil {
		p = append(p, b.tagsIsNull(col, *null))
	}
	return p
}

// tagsAll: the JSON array column holds every tag (a superset).
func (b *Builder) tagsAll(col string, tags []string) string {
	if b.d == Postgres {
		b.checkPGStrings(tags)
		return col + " @> " + b.bindJSON(tags) + "::jsonb"
	}
	if len(tags) >= longList {
		return "NOT EXISTS (SELECT 1 FROM json_each(" + b.bindJSON(tags) + ") AS wanted WHERE wanted.value NOT IN (SELECT json_each.value FROM json_each(" + col + ")))"
	}
	// Every instr() test comes before the first json_each: SQLite tests
	// the terms in this order, and a row that lacks any tag's text then
	// costs no JSON parse at all.
	parts := make([]string, 0, 2*len(tags))
	for _, t := range tags {
		if text, ok := tagText(t); ok {
			parts = append(parts, "instr("+col+", "+b.Bind(text)+") > 0")
		}
	}
	for _, t := range tags {
		parts = append(parts, "EXISTS (SELECT 1 FROM json_each("+col+") WHERE json_each.value = "+b.bindString(t)+")")
	}
	return b.combine(And, parts)
}

// tagText is how a tag appears inside a stored tags array, for tags whose
// JSON encoding is the tag itself in quotes under any encoder: printable
// ASCII without the characters encoders escape (quote, backslash, and the
// <, > and & that Go's encoder escapes). A tags column without this text
// cannot hold the tag, and instr() over the column's text is several times
// cheaper than json_each's parse, so it rules rows out before the exact
// json_each test (a tag's text may also occur inside another tag, hence the
// test remains).
func tagText(tag string) (string, bool) {
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return "", false
		}
	}
	return `"` + tag + `"`, true
}

// tagsAny: the JSON array column holds at least one of the tags.
func (b *Builder) tagsAny(col string, tags []string) string {
	if len(tags) == 0 {
		return sqlFalse
	}
	if b.d == SQLite {
		// As in tagsAll, but only when every tag has its text: a tag
		// without it could be in any row.
		var texts []string
		for _, t := range tags {
			text, ok := tagText(t)
			if !ok || len(tags) >= longList {
				texts = nil
				break
			}
			texts = append(texts, text)
		}
		pre := make([]string, len(texts))
		for i, text := range texts {
			pre[i] = "instr(" + col + ", " + b.Bind(text) + ") > 0"
		}
		exists := "EXISTS (SELECT 1 FROM json_each(" + col + ") WHERE " + b.inStrings("json_each.value", tags) + ")"
		if len(pre) == 0 {
			return exists
		}
		return "(" + b.combine(Or, pre) + " AND " + exists + ")"
	}
	if len(tags) >= longList {
		b.checkPGStrings(tags)
		return col + " ?| " + b.Bind(tags) + "::text[]"
	}
	return col + " ?| ARRAY[" + bindEach(tags, b.bindString) + "]::text[]"
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

// timeRange is a before_/after_ pair; both bounds are inclusive.
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

// existsIf is a boolean criterion (exists_, is_null_) on whether a
// correlated row exists: EXISTS when the flag equals when, else NOT EXISTS.
func existsIf(flag *bool, when bool, subquery string) []string {
	switch {
	case flag == nil:
		return nil
	case *flag == when:
		return []string{"EXISTS (" + subquery + ")"}
	}
	return []string{"NOT EXISTS (" + subquery + ")"}
}

// someOf joins a sub-filter's criteria, or adds nothing when it has none.
func (b *Builder) someOf(p []string) []string {
	if len(p) == 0 {
		return nil
	}
	return []string{b.combine(And, p)}
}

// clauses collects the criteria of one filter object.
type clauses struct {
	b     *Builder
	parts []string
}

// add adds a present sub-filter: its criteria joined by its operator. One
// without criteria adds TRUE, as in Prefect, even under an or_.
func (c *clauses) add(op Operator, lists ...[]string) {
	var p []string
	for _, l := range lists {
		p = append(p, l...)
	}
	c.parts = append(c.parts, c.b.combine(op, p))
}

func (c *clauses) join(op Operator) string { return c.b.combine(op, c.parts) }

// ---- flows ----

func (b *Builder) flowFilter(f *FlowFilter) string {
	if f == nil {
		return sqlTrue
	}
	c := clauses{b: b}
	if x := f.Id; x != nil {
		c.add(And, b.ids("flow.id", x.Any, x.NotAny))
	}
	if x := f.Deployment; x != nil {
		c.add(x.Operator, existsIf(x.IsNull, false, "SELECT 1 FROM deployment WHERE deployment.flow_id = flow.id"))
	}
	if x := f.Name; x != nil {
		c.add(And, b.strs("flow.name", x.Any, nil), b.like("flow.name", x.Like))
	}
	if x := f.Tags; x != nil {
		c.add(x.Operator, b.tags("flow.tags", x.All, nil, x.IsNull))
	}
	return c.join(f.Operator)
}

// ---- flow runs ----

func (b *Builder) flowRunFilter(f *FlowRunFilter) string {
	if f == nil {
		return sqlTrue
	}
	c := clauses{b: b}
	if x := f.Id; x != nil {
		c.add(And, b.ids("flow_run.id", x.Any, x.NotAny))
	}
	if x := f.Name; x != nil {
		c.add(And, b.strs("flow_run.name", x.Any, nil), b.like("flow_run.name", x.Like))
	}
	if x := f.Tags; x != nil {
		c.add(x.Operator, b.tags("flow_run.tags", x.All, x.Any, x.IsNull))
	}
	if x := f.DeploymentId; x != nil {
		c.add(x.Operator, b.ids("flow_run.deployment_id", x.Any, nil), isNull("flow_run.deployment_id", x.IsNull))
	}
	if x := f.WorkQueueName; x != nil {
		c.add(x.Operator, b.strs("flow_run.work_queue_name", x.Any, nil), isNull("flow_run.work_queue_name", x.IsNull))
	}
	// Prefect adds flow_version before state; the order only shows in the
	// SQL text, never in the result, but matching it keeps reviews simple.
	if x := f.FlowVersion; x != nil {
		c.add(And, b.strs("flow_run.flow_version", x.Any, nil))
	}
	if x := f.State; x != nil {
		// Unlike the other groups, state drops sub-filters without criteria,
		// so an empty {"type": {}} does not turn an or_ into TRUE.
		var types, names []string
		if t := x.Type; t != nil {
			types = b.someOf(oneOf(b.inStateTypes, "flow_run.state_type", t.Any, t.NotAny))
		}
		if n := x.Name; n != nil {
			names = b.someOf(b.strs("flow_run.state_name", n.Any, n.NotAny))
		}
		c.add(x.Operator, types, names)
	}
	if x := f.StartTime; x != nil {
		// Runs that have not started are placed at their expected start.
		c.add(And, b.timeRange("COALESCE(flow_run.start_time, flow_run.expected_start_time)", x.Before, x.After),
			isNull("flow_run.start_time", x.IsNull))
	}
	if x := f.EndTime; x != nil {
		c.add(And, b.timeRange("flow_run.end_time", x.Before, x.After), isNull("flow_run.end_time", x.IsNull))
	}
	if x := f.ExpectedStartTime; x != nil {
		c.add(And, b.timeRange("flow_run.expected_start_time", x.Before, x.After))
	}
	if x := f.NextScheduledStartTime; x != nil {
		c.add(And, b.timeRange("flow_run.next_scheduled_start_time", x.Before, x.After))
	}
	if x := f.ParentFlowRunId; x != nil {
		var p []string
		if x.Any != nil {
			in := b.inUUIDs("task_run.flow_run_id", x.Any)
			if in == sqlFalse {
				p = append(p, sqlFalse)
			} else {
				p = append(p, "EXISTS (SELECT 1 FROM task_run WHERE task_run.id = flow_run.parent_task_run_id AND "+in+")")
			}
		}
		c.add(x.Operator, p)
	}
	if x := f.ParentTaskRunId; x != nil {
		c.add(x.Operator, b.ids("flow_run.parent_task_run_id", x.Any, nil), isNull("flow_run.parent_task_run_id", x.IsNull))
	}
	if x := f.IdempotencyKey; x != nil {
		c.add(And, b.strs("flow_run.idempotency_key", x.Any, x.NotAny))
	}
	if x := f.CreatedBy; x != nil {
		// created_by stores ids as lowercase strings inside the JSON.
		var ids []string
		if x.Id != nil {
			ids = make([]string, len(x.Id))
			for i, id := range x.Id {
				ids[i] = id.String()
			}
		}
		c.add(x.Operator,
			b.strs(b.jsonText("flow_run.created_by", "id"), ids, nil),
			b.strs(b.jsonText("flow_run.created_by", "type"), x.Type, nil),
			isNull("flow_run.created_by", x.IsNull))
	}
	return c.join(f.Operator)
}

// ---- task runs ----

func (b *Builder) taskRunFilter(f *TaskRunFilter) string {
	if f == nil {
		return sqlTrue
	}
	c := clauses{b: b}
	if x := f.Id; x != nil {
		c.add(And, b.ids("task_run.id", x.Any, nil))
	}
	if x := f.Name; x != nil {
		c.add(And, b.strs("task_run.name", x.Any, nil), b.like("task_run.name", x.Like))
	}
	if x := f.Tags; x != nil {
		c.add(x.Operator, b.tags("task_run.tags", x.All, nil, x.IsNull))
	}
	if x := f.State; x != nil {
		// As for flow runs, sub-filters without criteria are dropped.
		var types, names []string
		if t := x.Type; t != nil {
			types = oneOf(b.inStateTypes, "task_run.state_type", t.Any, nil)
		}
		if n := x.Name; n != nil {
			names = b.strs("task_run.state_name", n.Any, nil)
		}
		c.add(x.Operator, types, names)
	}
	if x := f.StartTime; x != nil {
		c.add(And, b.timeRange("task_run.start_time", x.Before, x.After), isNull("task_run.start_time", x.IsNull))
	}
	if x := f.EndTime; x != nil {
		c.add(And, b.timeRange("task_run.end_time", x.Before, x.After), isNull("task_run.end_time", x.IsNull))
	}
	if x := f.ExpectedStartTime; x != nil {
		c.add(And, b.timeRange("task_run.expected_start_time", x.Before, x.After))
	}
	if x := f.SubflowRuns; x != nil {
		c.add(And, existsIf(x.Exists, true, "SELECT 1 FROM flow_run WHERE flow_run.parent_task_run_id = task_run.id"))
	}
	if x := f.FlowRunId; x != nil {
		// is_null_ defaults to false in the schema, so an empty object asks
		// for task runs that belong to some flow run; is_null_ true wins
		// over any_.
		var p string
		switch {
		case x.IsNull != nil && *x.IsNull:
			p = "task_run.flow_run_id IS NULL"
		case x.Any == nil:
			p = "task_run.flow_run_id IS NOT NULL"
		default:
			p = b.inUUIDs("task_run.flow_run_id", x.Any)
		}
		c.add(x.Operator, []string{p})
	}
	return c.join(f.Operator)
}

// ---- deployments ----

func (b *Builder) deploymentFilter(f *DeploymentFilter) string {
	if f == nil {
		return sqlTrue
	}
	c := clauses{b: b}
	if x := f.Id; x != nil {
		c.add(And, b.ids("deployment.id", x.Any, x.NotAny))
	}
	if x := f.Name; x != nil {
		c.add(And, b.strs("deployment.name", x.Any, nil), b.like("deployment.name", x.Like))
	}
	if x := f.FlowOrDeploymentName; x != nil {
		var p []string
		if l := x.Like; l != nil && *l != "" {
			p = append(p, "("+b.contains("deployment.name", *l)+
				" OR EXISTS (SELECT 1 FROM flow WHERE flow.id = deployment.flow_id AND "+b.contains("flow.name", *l)+"))")
		}
		c.add(And, p)
	}
	if x := f.Paused; x != nil {
		var p []string
		if x.Eq != nil {
			if *x.Eq {
				p = append(p, "deployment.paused IS TRUE")
			} else {
				p = append(p, "deployment.paused IS FALSE")
			}
		}
		c.add(And, p)
	}
	if x := f.Tags; x != nil {
		c.add(x.Operator, b.tags("deployment.tags", x.All, x.Any, x.IsNull))
	}
	if x := f.WorkQueueName; x != nil {
		c.add(And, b.strs("deployment.work_queue_name", x.Any, nil))
	}
	// concurrency_limit is accepted and ignored: Prefect dropped it when the
	// column became a relationship and leaves it out of the criteria entirely.
	return c.join(f.Operator)
}

// ---- work pools and queues ----

func (b *Builder) workPoolFilter(f *WorkPoolFilter) string {
	if f == nil {
		return sqlTrue
	}
	c := clauses{b: b}
	if x := f.Id; x != nil {
		c.add(And, b.ids("work_pool.id", x.Any, nil))
	}
	if x := f.Name; x != nil {
		c.add(And, b.strs("work_pool.name", x.Any, nil))
	}
	if x := f.Type; x != nil {
		c.add(And, b.strs("work_pool.type", x.Any, nil))
	}
	return c.join(f.Operator)
}

func (b *Builder) workQueueFilter(f *WorkQueueFilter) string {
	if f == nil {
		return sqlTrue
	}
	c := clauses{b: b}
	if x := f.Id; x != nil {
		c.add(And, b.ids("work_queue.id", x.Any, nil))
	}
	if x := f.Name; x != nil {
		c.add(And, b.strs("work_queue.name", x.Any, nil), b.startsWith("work_queue.name", x.StartsWith))
	}
	return c.join(f.Operator)
}

// ---- logs ----

func (b *Builder) logFilter(f *LogFilter) string {
	if f == nil {
		return sqlTrue
	}
	c := clauses{b: b}
	if x := f.Level; x != nil {
		var p []string
		if x.Ge != nil {
			p = append(p, "log.level >= "+b.Bind(int64(*x.Ge)))
		}
		if x.Le != nil {
			p = append(p, "log.level <= "+b.Bind(int64(*x.Le)))
		}
		c.add(And, p)
	}
	if x := f.Timestamp; x != nil {
		c.add(And, b.timeRange("log.timestamp", x.Before, x.After))
	}
	if x := f.FlowRunId; x != nil {
		c.add(And, b.ids("log.flow_run_id", x.Any, nil))
	}
	if x := f.TaskRunId; x != nil {
		c.add(And, b.ids("log.task_run_id", x.Any, nil), isNull("log.task_run_id", x.IsNull))
	}
	if f.Text != nil {
		// The text search contributes its clauses straight to this filter's
		// list, so they are combined with this filter's operator.
		c.parts = append(c.parts, b.textSearch(f.Text.Query)...)
	}
	return c.join(f.Operator)
}

// ---- the endpoint-level expressions ----

// joinWorkPool joins a work queue's pool to a FROM clause.
const joinWorkPool = " JOIN work_pool ON work_pool.id = work_queue.work_pool_id"

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
			from += " JOIN work_queue ON work_queue.id = deployment.work_queue_id" + joinWorkPool
			where = append(where, b.workPoolFilter(s.WorkPools))
		}
		parts = append(parts, exists(from, where))
	}
	if s.FlowRuns != nil || s.TaskRuns != nil {
		parts = append(parts, b.flowRunsExist("flow_run.flow_id = flow.id", s.FlowRuns, s.TaskRuns))
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
		parts = append(parts, exists("work_queue"+joinWorkPool,
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
		parts = append(parts, b.queuesExist(from, where, s.WorkPoolQueues, s.WorkPools))
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
		parts = append(parts, b.flowRunsExist("flow_run.deployment_id = deployment.id", s.FlowRuns, s.TaskRuns))
	}
	if s.WorkPools != nil || s.WorkPoolQueues != nil {
		parts = append(parts, b.queuesExist("work_queue", []string{"work_queue.id = deployment.work_queue_id"}, s.WorkPoolQueues, s.WorkPools))
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

// flowRunsExist is the EXISTS over flow runs correlated by cond, joined to
// their task runs when those are filtered too.
func (b *Builder) flowRunsExist(cond string, fr *FlowRunFilter, tr *TaskRunFilter) string {
	from, where := "flow_run", []string{cond}
	if fr != nil {
		where = append(where, b.flowRunFilter(fr))
	}
	if tr != nil {
		from += " JOIN task_run ON task_run.flow_run_id = flow_run.id"
		where = append(where, b.taskRunFilter(tr))
	}
	return exists(from, where)
}

// queuesExist is the EXISTS over from, which holds work_queue, with the
// work queue criteria and, joining work_pool, the work pool criteria added.
func (b *Builder) queuesExist(from string, where []string, wq *WorkQueueFilter, wp *WorkPoolFilter) string {
	if wq != nil {
		where = append(where, b.workQueueFilter(wq))
	}
	if wp != nil {
		from += joinWorkPool
		where = append(where, b.workPoolFilter(wp))
	}
	return exists(from, where)
}

// exists is EXISTS over the FROM clause with the criteria that are not TRUE.
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
