package eventsql

import (
	"strings"
	"unicode"
)

// textQuery is a parsed text search: any include term may match, no exclude
// term may match, every required term must match.
//
// The syntax is shared with the log search of services/store/filter, whose
// parser is unexported; this is the same grammar over a different field.
type textQuery struct {
	include, exclude, required []string
}

// parseTextSearch reads Prefect's search syntax: space-separated terms,
// "-term" or "!term" to exclude, "+term" to require, "quoted phrases" with
// \" and \\ escapes (an unclosed quote runs to the end). A prefix followed by
// a space is dropped.
func parseTextSearch(query string) textQuery {
	var q textQuery
	rs := []rune(query)
	add := func(prefix rune, term string) {
		switch prefix {
		case '-', '!':
			q.exclude = append(q.exclude, term)
		case '+':
			q.required = append(q.required, term)
		default:
			q.include = append(q.include, term)
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
				i++
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
