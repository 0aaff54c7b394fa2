package taskrunrecorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
)

// ErrInvalidEvent marks a task run event the recorder cannot turn into a
// task run (Prefect's model validation would refuse it too).
var ErrInvalidEvent = errors.New("invalid task run event")

// Wants reports whether the recorder records e: task run events the
// client emitted (the server's own task run events carry another
// prefect.orchestration label, or none).
func Wants(e *events.Event) bool {
	return strings.HasPrefix(e.Event, "prefect.task-run") && e.Resource["prefect.orchestration"] == "client"
}

// RecordFromEvent is Prefect's task_run_from_event: the task run id from
// the resource (prefect.task-run.<id>), the flow run from the related
// resource in role flow-run, the columns from payload.task_run and the
// state from payload.validated_state, whose id is the event's id and whose
// timestamp is the event's occurred time.
func RecordFromEvent(e *events.ReceivedEvent) (store.TaskRunRecord, error) {
	var rec store.TaskRunRecord
	rec.EventID = e.ID
	id, err := objectID(e.Resource.ID(), "prefect.task-run")
	if err != nil {
		return rec, err
	}
	rec.Run.ID = id
	// Prefect indexes related resources by role; a later one wins.
	for _, r := range e.Related {
		if r["prefect.resource.role"] == "flow-run" {
			fr, err := objectID(r.ID(), "prefect.flow-run")
			if err != nil {
				return rec, err
			}
			rec.Run.FlowRunID = &fr
		}
	}
	var payload struct {
		TaskRun        map[string]json.RawMessage `json:"task_run"`
		ValidatedState json.RawMessage            `json:"validated_state"`
	}
	if err := json.Unmarshal(e.Payload, &payload); err != nil {
		return rec, fmt.Errorf("%w: payload: %v", ErrInvalidEvent, err)
	}
	if isNull(payload.ValidatedState) {
		return rec, fmt.Errorf("%w: payload.validated_state is required", ErrInvalidEvent)
	}
	if payload.TaskRun == nil {
		return rec, fmt.Errorf("%w: payload.task_run is required", ErrInvalidEvent)
	}
	if rec.State, err = stateFromPayload(e, payload.ValidatedState); err != nil {
		return rec, err
	}
	rec.State.StateDetails.TaskRunID = &rec.Run.ID
	rec.State.StateDetails.FlowRunID = rec.Run.FlowRunID
	if err := taskRunFromPayload(&rec, payload.TaskRun); err != nil {
		return rec, err
	}
	// The denormalised state columns follow the state.
	rec.Run.StateID = &rec.State.ID
	rec.Run.StateType = rec.State.Type
	rec.Run.StateName = rec.State.Name
	ts := rec.State.Timestamp
	rec.Run.StateTimestamp = &ts
	return rec, nil
}

// objectID parses "<kind>.<uuid>", as Prefect's prefect_object_id.
func objectID(resourceID, kind string) (uuid.UUID, error) {
	rest, ok := strings.CutPrefix(resourceID, kind+".")
	if !ok {
		return uuid.Nil, fmt.Errorf("%w: resource %q is not a %s", ErrInvalidEvent, resourceID, kind)
	}
	id, err := uuid.Parse(rest)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%w: resource %q: %v", ErrInvalidEvent, resourceID, err)
	}
	return id, nil
}

func isNull(b json.RawMessage) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || bytes.Equal(b, []byte("null"))
}

// stateFromPayload is State.model_validate({"id": event.id, "timestamp":
// event.occurred, **validated_state}): keys of the payload win.
func stateFromPayload(e *events.ReceivedEvent, raw json.RawMessage) (orchestration.State, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return orchestration.State{}, fmt.Errorf("%w: validated_state: %v", ErrInvalidEvent, err)
	}
	st := orchestration.State{ID: e.ID, Timestamp: e.Occurred.Time}
	for k, v := range fields {
		var err error
		switch k {
		case "id":
			err = json.Unmarshal(v, &st.ID)
		case "timestamp":
			var t openapi.Time
			if err = json.Unmarshal(v, &t); err == nil {
				st.Timestamp = t.Time
			}
		case "type":
			err = json.Unmarshal(v, &st.Type)
		case "name":
			if !isNull(v) {
				err = json.Unmarshal(v, &st.Name)
			}
		case "message":
			err = json.Unmarshal(v, &st.Message)
		case "data":
			if !isNull(v) {
				st.Data = append(json.RawMessage(nil), v...)
			}
		case "state_details":
			if !isNull(v) {
				err = decodeStateDetails(v, &st.StateDetails)
			}
		}
		if err != nil {
			return st, fmt.Errorf("%w: validated_state.%s: %v", ErrInvalidEvent, k, err)
		}
	}
	if !st.Type.Valid() {
		return st, fmt.Errorf("%w: validated_state.type %q", ErrInvalidEvent, st.Type)
	}
	if st.Timestamp.IsZero() {
		return st, fmt.Errorf("%w: the state has no timestamp", ErrInvalidEvent)
	}
	orchestration.NormalizeState(&st, e.Occurred.Time)
	return st, nil
}

// decodeStateDetails reads state details, accepting timestamps in every
// form pydantic does (the struct's own fields only take RFC 3339).
func decodeStateDetails(raw json.RawMessage, d *orchestration.StateDetails) error {
	// Clients send RFC 3339 (or null) timestamps, which the struct reads in
	// one pass; only when that fails do the lenient forms need the
	// field-by-field reading below, which costs three passes.
	var direct orchestration.StateDetails
	if json.Unmarshal(raw, &direct) == nil {
		for _, t := range []**time.Time{&direct.ScheduledTime, &direct.CacheExpiration, &direct.PauseTimeout} {
			if *t != nil {
				v := store.Truncate(**t)
				*t = &v
			}
		}
		*d = direct
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return err
	}
	times := map[string]**time.Time{
		"scheduled_time":   &d.ScheduledTime,
		"cache_expiration": &d.CacheExpiration,
		"pause_timeout":    &d.PauseTimeout,
	}
	rest := map[string]json.RawMessage{}
	for k, v := range fields {
		dst, ok := times[k]
		if !ok {
			rest[k] = v
			continue
		}
		if isNull(v) {
			*dst = nil
			continue
		}
		var t openapi.Time
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		v := store.Truncate(t.Time)
		*dst = &v
	}
	b, err := json.Marshal(rest)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, d)
}

// taskRunFromPayload reads payload.task_run. The client omits None fields,
// so only the keys present are marked as set; an explicit null sets a
// nullable column to NULL and is invalid for the others.
func taskRunFromPayload(rec *store.TaskRunRecord, fields map[string]json.RawMessage) error {
	run, set := &rec.Run, &rec.Set
	required := map[string]*string{"name": &run.Name, "task_key": &run.TaskKey, "dynamic_key": &run.DynamicKey}
	for k, dst := range required {
		v, ok := fields[k]
		if !ok || isNull(v) {
			return fmt.Errorf("%w: payload.task_run.%s is required", ErrInvalidEvent, k)
		}
		if err := decodeString(v, dst); err != nil {
			return fmt.Errorf("%w: payload.task_run.%s: %v", ErrInvalidEvent, k, err)
		}
	}
	if run.Name == "" {
		// Prefect's name validator replaces an empty name with a slug.
		run.Name = store.GenerateSlug()
	}
	run.Tags = []string{}
	for k, v := range fields {
		var err error
		null := isNull(v)
		switch k {
		case "cache_key":
			set.CacheKey = true
			if !null {
				run.CacheKey = new(string)
				err = decodeString(v, run.CacheKey)
			}
		case "cache_expiration":
			set.CacheExpiration = true
			run.CacheExpiration, err = optTime(v)
		case "task_version":
			set.TaskVersion = true
			if !null {
				run.TaskVersion = new(string)
				err = decodeString(v, run.TaskVersion)
			}
		case "empirical_policy":
			set.EmpiricalPolicy = true
			if null {
				err = errors.New("must not be null")
			} else if err = json.Unmarshal(v, &run.EmpiricalPolicy); err == nil {
				run.EmpiricalPolicy = deprecatedPolicyFields(run.EmpiricalPolicy)
			}
		case "tags":
			set.Tags = true
			if null {
				err = errors.New("must not be null")
			} else {
				err = json.Unmarshal(v, &run.Tags)
			}
		case "labels":
			set.Labels = true
			if !null {
				err = json.Unmarshal(v, &run.Labels)
			}
		case "task_inputs":
			set.TaskInputs = true
			// The payload's decoding has validated the value; only its
			// kind is left to check.
			if t := bytes.TrimSpace(v); len(t) == 0 || t[0] != '{' {
				err = errors.New("must be an object")
			} else {
				run.TaskInputs = append(json.RawMessage(nil), v...)
			}
		case "run_count":
			set.RunCount = true
			err = decodeInt(v, &run.RunCount)
		case "flow_run_run_count":
			set.FlowRunRunCount = true
			err = decodeInt(v, &run.FlowRunRunCount)
		case "expected_start_time":
			set.ExpectedStartTime = true
			run.ExpectedStartTime, err = optTime(v)
		case "next_scheduled_start_time":
			set.NextScheduledStartTime = true
			run.NextScheduledStartTime, err = optTime(v)
		case "start_time":
			set.StartTime = true
			run.StartTime, err = optTime(v)
		case "end_time":
			set.EndTime = true
			run.EndTime, err = optTime(v)
		case "total_run_time":
			set.TotalRunTime = true
			run.TotalRunTime, err = duration(v)
		}
		if err != nil {
			return fmt.Errorf("%w: payload.task_run.%s: %v", ErrInvalidEvent, k, err)
		}
	}
	return nil
}

// deprecatedPolicyFields is Prefect's set_run_policy_deprecated_fields.
func deprecatedPolicyFields(p orchestration.TaskRunPolicy) orchestration.TaskRunPolicy {
	if (p.Retries == nil || *p.Retries == 0) && p.MaxRetries != 0 {
		r := p.MaxRetries
		p.Retries = &r
	}
	unset := len(p.RetryDelay.Seconds) == 0 || (!p.RetryDelay.IsList && p.RetryDelay.Seconds[0] == 0)
	if unset && p.RetryDelaySeconds != 0 {
		p.RetryDelay = orchestration.RetryDelay{Seconds: []float64{p.RetryDelaySeconds}}
	}
	return p
}

func optTime(v json.RawMessage) (*time.Time, error) {
	if isNull(v) {
		return nil, nil
	}
	var t openapi.Time
	if text, ok := plainString(v); ok {
		var err error
		if t.Time, err = openapi.ParseTime(text); err != nil {
			return nil, err
		}
	} else if err := json.Unmarshal(v, &t); err != nil {
		return nil, err
	}
	u := store.Truncate(t.Time)
	return &u, nil
}

// plainString is the text of a JSON string that holds no escapes and valid
// UTF-8, the form nearly every string of a client's event takes; ok is false
// for anything else, which encoding/json then decodes. A task run event has
// a dozen such values, and encoding/json's validation pass and reflection
// for each cost more than the recorder's other work on the event.
func plainString(v json.RawMessage) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	body := v[1 : len(v)-1]
	for _, c := range body {
		if c == '"' || c == '\\' || c < 0x20 {
			return "", false
		}
	}
	if !utf8.Valid(body) {
		return "", false // encoding/json would substitute U+FFFD
	}
	return string(body), true
}

// decodeString is json.Unmarshal into a string, through plainString when
// it can.
func decodeString(v json.RawMessage, dst *string) error {
	if s, ok := plainString(v); ok {
		*dst = s
		return nil
	}
	return json.Unmarshal(v, dst)
}

// decodeInt is json.Unmarshal into an int, parsing plain integers itself.
func decodeInt(v json.RawMessage, dst *int) error {
	if len(v) > 0 && len(v) < 19 {
		digits := v
		if digits[0] == '-' {
			digits = digits[1:]
		}
		plain := len(digits) > 0
		for _, c := range digits {
			if c < '0' || c > '9' {
				plain = false
				break
			}
		}
		if plain {
			n, err := strconv.Atoi(string(v))
			if err == nil {
				*dst = n
				return nil
			}
		}
	}
	return json.Unmarshal(v, dst)
}

// duration reads a pydantic timedelta: a number of seconds, or an ISO 8601
// duration such as "PT1.5S" or "P1DT2H".
func duration(v json.RawMessage) (time.Duration, error) {
	var f float64
	if err := json.Unmarshal(v, &f); err == nil {
		return time.Duration(f * float64(time.Second)).Round(time.Microsecond), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return 0, errors.New("must be a number of seconds or an ISO 8601 duration")
	}
	return isoDuration(s)
}

func isoDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q", s)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	rest, ok := strings.CutPrefix(s, "P")
	if !ok || rest == "" {
		return 0, bad
	}
	var total float64
	inTime := false
	for rest != "" {
		if rest[0] == 'T' {
			inTime, rest = true, rest[1:]
			continue
		}
		i := strings.IndexAny(rest, "WDHMS")
		if i <= 0 {
			return 0, bad
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0, bad
		}
		unit := map[byte]float64{'W': 7 * 86400, 'D': 86400, 'H': 3600, 'M': 60, 'S': 1}[rest[i]]
		if !inTime && rest[i] != 'W' && rest[i] != 'D' {
			return 0, bad
		}
		total += n * unit
		rest = rest[i+1:]
	}
	if neg {
		total = -total
	}
	return time.Duration(total * float64(time.Second)).Round(time.Microsecond), nil
}
