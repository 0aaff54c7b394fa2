package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Values are normalised to the Go types listed on Settings.Value.

func defaultValue(f *Field) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(f.Default))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if v == nil {
		return nil, nil
	}
	return parseValue(f, v)
}

// parseString parses text from an environment variable, a .env file or a
// profile, as pydantic-settings would hand it to the field's validators.
func parseString(f *Field, s string) (any, error) {
	switch f.Kind {
	case KindBool:
		return parseBool(s)
	case KindInt:
		return parseInt(f, s)
	case KindFloat:
		return parseFloat(f, s)
	case KindString:
		return s, nil
	case KindPath:
		return cleanPath(s), nil
	case KindEnum:
		return parseEnum(f, s)
	case KindDuration:
		d, err := parseDuration(s)
		if err != nil {
			return nil, err
		}
		return checkBounds(f, d, d.Seconds())
	case KindSeconds:
		return parseSeconds(f, s)
	case KindSet:
		if list, ok := decodeJSON(s).([]any); ok {
			return parseSet(f, list)
		}
		return parseSet(f, splitItems(s, false))
	case KindVacuumSet:
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true", "1":
			return true, nil
		case "false", "0", "":
			return false, nil
		}
		set, err := parseSet(f, splitItems(s, true))
		if err != nil {
			return nil, err
		}
		return checkVacuumTypes(set.([]string))
	case KindJSON:
		v := decodeJSON(s)
		if v == nil {
			return nil, fmt.Errorf("invalid JSON %q", s)
		}
		return parseValue(f, v)
	case KindJSONOrString:
		if v := decodeJSON(s); v != nil {
			return parseValue(f, v)
		}
		return s, nil
	}
	return nil, fmt.Errorf("unsupported setting kind %q", f.Kind)
}

// parseValue checks a typed value (from TOML or the embedded JSON) against
// the field, coercing the way pydantic's lax mode does.
func parseValue(f *Field, v any) (any, error) {
	if v == nil {
		if f.Nullable {
			return nil, nil
		}
		return nil, errors.New("a value is required")
	}
	if s, ok := v.(string); ok {
		return parseString(f, s)
	}
	switch f.Kind {
	case KindBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		if n, ok := number(v); ok && (n == 0 || n == 1) {
			return n == 1, nil
		}
	case KindInt:
		if n, ok := number(v); ok && n == math.Trunc(n) && !math.IsInf(n, 0) {
			return checkBounds(f, int64(n), n)
		}
	case KindFloat:
		if n, ok := number(v); ok {
			return checkBounds(f, n, n)
		}
	case KindDuration, KindSeconds:
		if n, ok := number(v); ok {
			d := secondsDuration(n)
			return checkBounds(f, d, n)
		}
	case KindSet:
		if list, ok := v.([]any); ok {
			return parseSet(f, list)
		}
	case KindVacuumSet:
		switch x := v.(type) {
		case bool:
			return x, nil
		case []any:
			set, err := parseSet(f, x)
			if err != nil {
				return nil, err
			}
			return checkVacuumTypes(set.([]string))
		}
	case KindJSON, KindJSONOrString:
		switch x := v.(type) {
		case map[string]any:
			if f.ItemKind == KindSeconds {
				out := make(map[string]any, len(x))
				for k, item := range x {
					d, err := parseValue(&Field{Kind: KindSeconds, Gt: ptr(0)}, item)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", k, err)
					}
					out[k] = d
				}
				return out, nil
			}
			return x, nil
		case []any:
			if f.ItemKind == KindFloat {
				return floatList(x), nil
			}
			return x, nil
		}
		if f.Kind == KindJSONOrString {
			return v, nil
		}
	}
	return nil, fmt.Errorf("invalid %s value %v", describeKind(f), v)
}

// validVacuumTypes is _VALID_VACUUM_TYPES of Prefect's services settings;
// Prefect rejects other kinds when the vacuum service reads the setting.
var validVacuumTypes = []string{"events", "flow_runs", "orphans"}

func checkVacuumTypes(set []string) (any, error) {
	for _, t := range set {
		if !slices.Contains(validVacuumTypes, t) {
			return nil, fmt.Errorf("invalid vacuum type %q, expected some of %s", t, strings.Join(validVacuumTypes, ", "))
		}
	}
	return set, nil
}

// floatList makes the numbers of a list floats when the field's list member
// is list[float]; other items are left for the union's other members.
func floatList(items []any) []any {
	out := make([]any, len(items))
	for i, item := range items {
		if n, ok := item.(json.Number); ok {
			if x, err := n.Float64(); err == nil {
				out[i] = x
				continue
			}
		}
		out[i] = item
	}
	return out
}

func ptr(f float64) *float64 { return &f }

func describeKind(f *Field) string {
	switch f.Kind {
	case KindEnum:
		return "value, expected one of " + strings.Join(f.Choices, ", ") + ";"
	case KindSeconds:
		return "duration (seconds or ISO 8601)"
	case KindSet, KindVacuumSet:
		return "list"
	case KindJSON:
		return "JSON"
	}
	return string(f.Kind)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// decodeJSON returns nil when s is not JSON (or is JSON null).
func decodeJSON(s string) any {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil
	}
	return v
}

// parseBool accepts exactly the strings pydantic does.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "true", "t", "yes", "y", "on":
		return true, nil
	case "0", "false", "f", "no", "n", "off":
		return false, nil
	}
	return false, fmt.Errorf("invalid bool value %q (use true or false)", s)
}

func parseInt(f *Field, s string) (any, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(t, "+")
	if !strings.HasPrefix(t, "_") && !strings.HasSuffix(t, "_") {
		t = strings.ReplaceAll(t, "_", "")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		// pydantic accepts "4.0" but not "4.5".
		x, ferr := strconv.ParseFloat(t, 64)
		if ferr != nil || x != math.Trunc(x) || math.IsInf(x, 0) || math.Abs(x) > 1<<53 {
			return nil, fmt.Errorf("invalid int value %q", s)
		}
		n = int64(x)
	}
	return checkBounds(f, n, float64(n))
}

func parseFloat(f *Field, s string) (any, error) {
	x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return nil, fmt.Errorf("invalid float value %q", s)
	}
	return checkBounds(f, x, x)
}

func parseEnum(f *Field, s string) (any, error) {
	for _, c := range f.Choices {
		if c == s || (f.CaseInsensitive && strings.EqualFold(c, s)) {
			return c, nil
		}
	}
	return nil, fmt.Errorf("invalid value %q, expected one of %s", s, strings.Join(f.Choices, ", "))
}

// parseSeconds is Prefect's SecondsTimeDelta: a number is seconds, anything
// else goes to the timedelta parser.
func parseSeconds(f *Field, s string) (any, error) {
	if x, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
		return checkBounds(f, secondsDuration(x), x)
	}
	d, err := parseDuration(s)
	if err != nil {
		return nil, err
	}
	return checkBounds(f, d, d.Seconds())
}

func secondsDuration(x float64) time.Duration {
	return time.Duration(math.Round(x*1e6)) * time.Microsecond
}

func checkBounds(f *Field, v any, x float64) (any, error) {
	bad := func(op string, b float64) error {
		return fmt.Errorf("value %s must be %s %s", strconv.FormatFloat(x, 'g', -1, 64), op, strconv.FormatFloat(b, 'g', -1, 64))
	}
	switch {
	case f.Gt != nil && !(x > *f.Gt):
		return nil, bad(">", *f.Gt)
	case f.Ge != nil && !(x >= *f.Ge):
		return nil, bad(">=", *f.Ge)
	case f.Lt != nil && !(x < *f.Lt):
		return nil, bad("<", *f.Lt)
	case f.Le != nil && !(x <= *f.Le):
		return nil, bad("<=", *f.Le)
	}
	return v, nil
}

// splitItems splits a comma-separated set; blank text is the empty set.
func splitItems(s string, dropEmpty bool) []any {
	out := []any{}
	if strings.TrimSpace(s) == "" {
		return out
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" && dropEmpty {
			continue
		}
		out = append(out, part)
	}
	return out
}

// parseSet validates the items of a set: []int64 for int items (status
// codes), else []string; sorted and without duplicates either way.
func parseSet(f *Field, items []any) (any, error) {
	if f.ItemKind == KindInt {
		item := &Field{Kind: KindInt, Ge: f.ItemGe, Le: f.ItemLe}
		out := make([]int64, 0, len(items))
		for _, x := range items {
			v, err := parseValue(item, x)
			if err != nil {
				return nil, fmt.Errorf("set item: %w", err)
			}
			out = append(out, v.(int64))
		}
		slices.Sort(out)
		return slices.Compact(out), nil
	}
	out := make([]string, 0, len(items))
	for _, x := range items {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("expected a list of strings, got %v", x)
		}
		out = append(out, s)
	}
	return sortedSet(out), nil
}

func sortedSet(items []string) []string {
	out := slices.Clone(items)
	slices.Sort(out)
	return slices.Compact(out)
}

// cleanPath normalises like Python's pathlib.Path: repeated separators, "."
// segments and a trailing separator go, ".." stays.
func cleanPath(s string) string {
	if s == "" {
		return "."
	}
	abs := strings.HasPrefix(s, "/")
	var parts []string
	for _, p := range strings.Split(s, "/") {
		if p != "" && p != "." {
			parts = append(parts, p)
		}
	}
	out := strings.Join(parts, "/")
	switch {
	case abs:
		return "/" + out
	case out == "":
		return "."
	}
	return out
}

// parseDuration accepts what pydantic's timedelta parser accepts from text:
// ISO 8601 durations (P1DT2H, PT1.5S, P1W; a year is 365 days and a month 30)
// and "[-][D day[s], ]HH:MM[:SS[.ffffff]]" or "Nd".
func parseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	neg := false
	if rest, ok := strings.CutPrefix(t, "-"); ok {
		neg, t = true, rest
	} else {
		t = strings.TrimPrefix(t, "+")
	}
	var d time.Duration
	var err error
	switch {
	case strings.HasPrefix(t, "P") || strings.HasPrefix(t, "p"):
		d, err = parseISODuration(t[1:])
	default:
		d, err = parseClockDuration(t)
	}
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use seconds where accepted, ISO 8601 such as PT1H, or HH:MM:SS)", s)
	}
	if neg {
		d = -d
	}
	return d, nil
}

func parseISODuration(t string) (time.Duration, error) {
	if t == "" {
		return 0, errors.New("empty")
	}
	units := map[byte]float64{'Y': 365 * 86400, 'M': 30 * 86400, 'W': 7 * 86400, 'D': 86400}
	timeUnits := map[byte]float64{'H': 3600, 'M': 60, 'S': 1}
	var total float64
	inTime := false
	num := ""
	seen := false
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == 'T' || c == 't':
			if inTime || num != "" {
				return 0, errors.New("misplaced T")
			}
			inTime = true
		case (c >= '0' && c <= '9') || c == '.':
			num += string(c)
		default:
			table := units
			if inTime {
				table = timeUnits
			}
			mult, ok := table[c&^0x20]
			if !ok || num == "" {
				return 0, errors.New("bad unit")
			}
			x, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, err
			}
			total += x * mult
			num = ""
			seen = true
		}
	}
	if num != "" || !seen {
		return 0, errors.New("incomplete")
	}
	return secondsDuration(total), nil
}

func parseClockDuration(t string) (time.Duration, error) {
	var days float64
	if before, after, ok := strings.Cut(t, ","); ok {
		n, err := parseDays(before)
		if err != nil {
			return 0, err
		}
		days, t = n, strings.TrimSpace(after)
	} else if n, err := parseDays(t); err == nil {
		return secondsDuration(n * 86400), nil
	}
	parts := strings.Split(t, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, errors.New("not a clock time")
	}
	var secs float64
	for i, p := range parts {
		if p == "" {
			return 0, errors.New("empty field")
		}
		x, err := strconv.ParseFloat(p, 64)
		if err != nil || x < 0 || (i < len(parts)-1 && strings.Contains(p, ".")) {
			return 0, errors.New("bad field")
		}
		secs += x * []float64{3600, 60, 1}[i]
	}
	return secondsDuration(days*86400 + secs), nil
}

// parseDays reads "3 days", "1 day" or "2d".
func parseDays(s string) (float64, error) {
	s = strings.TrimSpace(s)
	for _, suffix := range []string{"days", "day", "d"} {
		if rest, ok := strings.CutSuffix(s, suffix); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, errors.New("no day unit")
}

// formatDuration renders a duration the way pydantic serialises timedelta to
// JSON: ISO 8601 with 365-day years, e.g. PT1H, P7D, P1Y35D, PT1.5S.
func formatDuration(d time.Duration) string {
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	micros := int64(d / time.Microsecond)
	const day = 86400 * 1_000_000
	days, rest := micros/day, micros%day
	b.WriteByte('P')
	if y := days / 365; y > 0 {
		fmt.Fprintf(&b, "%dY", y)
	}
	if dd := days % 365; dd > 0 {
		fmt.Fprintf(&b, "%dD", dd)
	}
	if rest == 0 {
		if days == 0 {
			return b.String() + "T0S"
		}
		return b.String()
	}
	b.WriteByte('T')
	secs, frac := rest/1_000_000, rest%1_000_000
	if h := secs / 3600; h > 0 {
		fmt.Fprintf(&b, "%dH", h)
	}
	if m := secs % 3600 / 60; m > 0 {
		fmt.Fprintf(&b, "%dM", m)
	}
	if s := secs % 60; s > 0 || frac > 0 {
		fmt.Fprintf(&b, "%d", s)
		if frac > 0 {
			b.WriteString(strings.TrimRight(fmt.Sprintf(".%06d", frac), "0"))
		}
		b.WriteByte('S')
	}
	return b.String()
}

// formatFloat renders a float like Python's repr, which is what pydantic
// writes: 30.0, 0.1, 1e-07, 1e+16.
func formatFloat(x float64) string {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return "null"
	}
	e := strconv.FormatFloat(x, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return e
	}
	s := strconv.FormatFloat(x, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}
