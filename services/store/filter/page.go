package filter

import "strings"

// Sorted pages on SQLite.
//
// SQLite's planner does not weigh a LIMIT when it chooses between walking an
// index in the ORDER BY's order (and stopping after one page) and reading
// every matching row to sort them. A state filter over a large table is the
// case that hurts: "state_type IN ('COMPLETED', 'FAILED') ... ORDER BY
// expected_start_time DESC LIMIT 200" reads and sorts every completed and
// failed run. For one state type the planner walks the (state_type,
// expected_start_time) index instead, because equality on the first column
// leaves the index in the ORDER BY's order. So a filter admitting several
// state types is read as one such walk per type, each limited to the page,
// and the page is taken from their union: at most types x (limit + offset)
// rows, whatever the table's size.

// FlowRunPageWhere is FlowRunWhere for one page of the flow runs ordered by
// orderBy (as FlowRunOrderBy returns it) with the given limit and offset;
// the caller still adds ORDER BY, LIMIT and OFFSET. A limit of zero or less
// means no limit.
func (b *Builder) FlowRunPageWhere(s FlowRunFilterSet, orderBy string, limit, offset int) (string, error) {
	split := s.splitStateTypes()
	if b.d != SQLite || limit <= 0 || len(split) < 2 || !b.armsFit(len(split), func(sb *Builder) { _, _ = sb.FlowRunWhere(s) }) {
		return b.FlowRunWhere(s)
	}
	arms := make([]string, len(split))
	for i, arm := range split {
		where, err := b.FlowRunWhere(arm)
		if err != nil {
			return "", err
		}
		arms[i] = b.pageArm("flow_run", where, orderBy, limit+offset)
	}
	return b.result(unionOfArms("flow_run", arms))
}

// TaskRunPageWhere is FlowRunPageWhere for task runs (orderBy as
// (*Builder).TaskRunOrderBy returns it).
func (b *Builder) TaskRunPageWhere(s TaskRunFilterSet, orderBy string, limit, offset int) (string, error) {
	split := s.splitStateTypes()
	if b.d != SQLite || limit <= 0 || len(split) < 2 || !b.armsFit(len(split), func(sb *Builder) { _, _ = sb.TaskRunWhere(s) }) {
		return b.TaskRunWhere(s)
	}
	arms := make([]string, len(split))
	for i, arm := range split {
		where, err := b.TaskRunWhere(arm)
		if err != nil {
			return "", err
		}
		arms[i] = b.pageArm("task_run", where, orderBy, limit+offset)
	}
	return b.result(unionOfArms("task_run", arms))
}

// armsFit reports whether n copies of the filter that build writes, plus
// their limits, stay within the statement's parameter bound: a filter that
// fits once must not be refused for being read in arms.
func (b *Builder) armsFit(n int, build func(*Builder)) bool {
	scratch := NewBuilder(b.d)
	build(scratch)
	return len(b.args)+n*(len(scratch.args)+1) <= maxArgs
}

// pageArm selects the rowids of the first n rows of table matching where.
func (b *Builder) pageArm(table, where, orderBy string, n int) string {
	return "SELECT " + table + ".rowid AS page_rowid FROM " + table + " WHERE " + where +
		" ORDER BY " + orderBy + " LIMIT " + b.Bind(int64(n))
}

// unionOfArms is the membership test of table's rows in the arms' union. Each
// arm is a FROM subquery so that it keeps its own ORDER BY and LIMIT.
func unionOfArms(table string, arms []string) string {
	parts := make([]string, len(arms))
	for i, a := range arms {
		parts[i] = "SELECT page_rowid FROM (" + a + ")"
	}
	return table + ".rowid IN (" + strings.Join(parts, " UNION ALL ") + ")"
}

// distinctStateTypes returns the state types of an any_ list once each, or
// nil when one is not a state type: the unsplit filter then reports it.
func distinctStateTypes(types []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range types {
		if !stateTypes[t] {
			return nil
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// splitStateTypes returns one copy of the set per state type when the flow
// run filter requires one of several state types (and_ all the way down to
// state.type.any_): the copies' matches are disjoint and together exactly
// the set's. Otherwise it returns nil.
func (s FlowRunFilterSet) splitStateTypes() []FlowRunFilterSet {
	f := s.FlowRuns
	if f == nil || f.Operator == Or || f.State == nil || f.State.Operator == Or || f.State.Type == nil {
		return nil
	}
	types := distinctStateTypes(f.State.Type.Any)
	if len(types) < 2 {
		return nil
	}
	out := make([]FlowRunFilterSet, len(types))
	for i, t := range types {
		typ := *f.State.Type
		typ.Any = []string{t}
		state := *f.State
		state.Type = &typ
		fr := *f
		fr.State = &state
		out[i] = s
		out[i].FlowRuns = &fr
	}
	return out
}

// splitStateTypes is FlowRunFilterSet.splitStateTypes over the task run
// filter.
func (s TaskRunFilterSet) splitStateTypes() []TaskRunFilterSet {
	f := s.TaskRuns
	if f == nil || f.Operator == Or || f.State == nil || f.State.Operator == Or || f.State.Type == nil {
		return nil
	}
	types := distinctStateTypes(f.State.Type.Any)
	if len(types) < 2 {
		return nil
	}
	out := make([]TaskRunFilterSet, len(types))
	for i, t := range types {
		typ := *f.State.Type
		typ.Any = []string{t}
		state := *f.State
		state.Type = &typ
		tr := *f
		tr.State = &state
		out[i] = s
		out[i].TaskRuns = &tr
	}
	return out
}
