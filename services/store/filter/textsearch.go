package filter

import (
	"strings"
	"unicode"
)

// TextQuery is a parsed text search (logs and events share the syntax): any include term may match, no exclude
// term may match, every required term must match.
type TextQuery struct {
	Include, Exclude, Required []string
}

// ParseTextSearch reads Prefect's log search syntax (see LogFilterTextSearch).
// A prefix counts only when a term follows it directly; a quoted phrase may
// contain \" and \\ escapes and may be left unclosed.
func ParseTextSearch(query string) TextQuery {
	var q TextQuery
	rs := []rune(query)
	add := func(prefix rune, term string) {
		switch prefix {
		case '-', '!':
			q.Exclude = append(q.Exclude, term)
		case '+':
			q.Required = append(q.Required, term)
		default:
			q.Include = append(q.Include, term)
		}
	}
	for i := 0; i < len(rs); {
		if unicode.IsSpace(rs[i]) {
			i++
			continue
		}
		var prefix rune
		if strings.ContainsRune("-!+", rs[i]) {
			if i+1 >= len(rs) || unicode.IsSpace(rs[i+1]) {
				// A lone prefix character is dropped.
				i++
				continue
			}
			prefix = rs[i]
			i++
		}
		if rs[i] == '"' {
			i++
			start := i
			for i < len(rs) && rs[i] != '"' {
				if rs[i] == '\\' && i+1 < len(rs) {
					i += 2
					continue
				}
				i++
			}
			phrase := unescapePhrase(rs[start:min(i, len(rs))])
			if i < len(rs) {
				i++ // closing quote
			}
			if strings.TrimSpace(phrase) != "" {
				add(prefix, phrase)
			}
			continue
		}
		start := i
		for i < len(rs) && !unicode.IsSpace(rs[i]) && rs[i] != '"' {
			i++
		}
		if i > start {
			add(prefix, string(rs[start:i]))
		}
	}
	return q
}

// unescapePhrase resolves \" and \\ inside a quoted phrase; any other
// backslash is kept as written.
func unescapePhrase(rs []rune) string {
	var sb strings.Builder
	for i := 0; i < len(rs); i++ {
		if rs[i] == '\\' && i+1 < len(rs) && (rs[i+1] == '"' || rs[i+1] == '\\') {
			sb.WriteRune(rs[i+1])
			i++
			continue
		}
		sb.WriteRune(rs[i])
	}
	return sb.String()
}

// textSearch renders a log search as criteria over the message and logger
// name: one joining the include terms with OR, one each joining the
// exclude and the required terms with AND.
func (b *Builder) textSearch(query string) []string {
	q := ParseTextSearch(query)
	var parts []string
	terms := func(op Operator, negate bool, ts []string) {
		if len(ts) == 0 {
			return
		}
		p := make([]string, len(ts))
		for i, t := range ts {
			// lower() on both sides keeps PostgreSQL's LIKE case-insensitive.
			p[i] = "lower(log.message || ' ' || log.name) LIKE " +
				b.bindString("%"+escapeLike(strings.ToLower(t))+"%") + ` ESCAPE '\'`
			if negate {
				p[i] = not(p[i])
			}
		}
		parts = append(parts, b.combine(op, p))
	}
	terms(Or, false, q.Include)
	terms(And, true, q.Exclude)
	terms(And, false, q.Required)
	return parts
}
