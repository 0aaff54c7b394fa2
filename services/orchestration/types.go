package orchestration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// StateType is the canonical type of a state. The empty value stands for
// "no state" (a run that has never had one, or a transition that writes
// nothing), which Prefect writes as None.
type StateType string

// The nine state types of Prefect 3.
const (
	NoState    StateType = ""
	Scheduled  StateType = "SCHEDULED"
	Pending    StateType = "PENDING"
	Running    StateType = "RUNNING"
	Completed  StateType = "COMPLETED"
	Failed     StateType = "FAILED"
	Cancelled  StateType = "CANCELLED"
	Crashed    StateType = "CRASHED"
	Paused     StateType = "PAUSED"
	Cancelling StateType = "CANCELLING"
)

// StateTypes lists every real state type in Prefect's declaration order.
var StateTypes = []StateType{Scheduled, Pending, Running, Completed, Failed, Cancelled, Crashed, Paused, Cancelling}

// Valid reports whether t is one of the nine real state types.
func (t StateType) Valid() bool { return slices.Contains(StateTypes, t) }

// IsTerminal reports whether t is COMPLETED, FAILED, CANCELLED or CRASHED.
func (t StateType) IsTerminal() bool {
	return t == Completed || t == Failed || t == Cancelled || t == Crashed
}

// DefaultName is the name Prefect gives a state created without one:
// the type, capitalised ("Scheduled", "Cancelling").
func (t StateType) DefaultName() string {
	if t == NoState {
		return ""
	}
	s := strings.ToLower(string(t))
	return strings.ToUpper(s[:1]) + s[1:]
}

// StateSet is a set of state types; NoState may be a member. Rules declare
// the transitions they govern with two of these.
type StateSet []StateType

// Has reports membership.
func (s StateSet) Has(t StateType) bool { return slices.Contains(s, t) }

// Without returns a copy of s minus the given types.
func (s StateSet) Without(ts ...StateType) StateSet {
	out := make(StateSet, 0, len(s))
	for _, t := range s {
		if !slices.Contains(ts, t) {
			out = append(out, t)
		}
	}
	return out
}

// AllStates is every state type plus NoState (Prefect's
// ALL_ORCHESTRATION_STATES).
var AllStates = append(StateSet{NoState}, StateTypes...)

// TerminalStates is Prefect's TERMINAL_STATES (NoState is not a member).
var TerminalStates = StateSet{Completed, Cancelled, Failed, Crashed}

// StateDetails mirrors every field of Prefect's server StateDetails. The
// JSON names are Prefect's, so the value can be stored and served as is.
type StateDetails struct {
	FlowRunID                    *uuid.UUID        `json:"flow_run_id"`
	TaskRunID                    *uuid.UUID        `json:"task_run_id"`
	ChildFlowRunID               *uuid.UUID        `json:"child_flow_run_id"`
	ScheduledTime                *time.Time        `json:"scheduled_time"`
	CacheKey                     *string           `json:"cache_key"`
	CacheExpiration              *time.Time        `json:"cache_expiration"`
	Deferred                     *bool             `json:"deferred"`
	UntrackableResult            bool              `json:"untrackable_result"`
	PauseTimeout                 *time.Time        `json:"pause_timeout"`
	PauseReschedule              bool              `json:"pause_reschedule"`
	PauseKey                     *string           `json:"pause_key"`
	RunInputKeyset               map[string]string `json:"run_input_keyset"`
	RefreshCache                 *bool             `json:"refresh_cache"`
	Retriable                    *bool             `json:"retriable"`
	TransitionID                 *uuid.UUID        `json:"transition_id"`
	TaskParametersID             *uuid.UUID        `json:"task_parameters_id"`
	Traceparent                  *string           `json:"traceparent"`
	DeploymentConcurrencyLeaseID *uuid.UUID        `json:"deployment_concurrency_lease_id"`
}

// State is a flow- or task-run state. Data is the state's result exactly
// as the client sent it (JSON), nil when there is none. An empty Name means
// "not given"; NormalizeState fills it in.
type State struct {
	ID           uuid.UUID       `json:"id"`
	Type         StateType       `json:"type"`
	Name         string          `json:"name"`
	Timestamp    time.Time       `json:"timestamp"`
	Message      *string         `json:"message"`
	Data         json.RawMessage `json:"data"`
	StateDetails StateDetails    `json:"state_details"`
}

// TypeOf returns the type of s, NoState when s is nil.
func TypeOf(s *State) StateType {
	if s == nil {
		return NoState
	}
	return s.Type
}

// Clone returns a deep copy: rules may mutate it without touching s.
func (s *State) Clone() *State {
	if s == nil {
		return nil
	}
	c := *s
	c.Message = clonePtr(s.Message)
	if s.Data != nil {
		c.Data = bytes.Clone(s.Data)
	}
	d := &c.StateDetails
	d.FlowRunID = clonePtr(d.FlowRunID)
	d.TaskRunID = clonePtr(d.TaskRunID)
	d.ChildFlowRunID = clonePtr(d.ChildFlowRunID)
	d.ScheduledTime = clonePtr(d.ScheduledTime)
	d.CacheKey = clonePtr(d.CacheKey)
	d.CacheExpiration = clonePtr(d.CacheExpiration)
	d.Deferred = clonePtr(d.Deferred)
	d.PauseTimeout = clonePtr(d.PauseTimeout)
	d.PauseKey = clonePtr(d.PauseKey)
	d.RunInputKeyset = maps.Clone(d.RunInputKeyset)
	d.RefreshCache = clonePtr(d.RefreshCache)
	d.Retriable = clonePtr(d.Retriable)
	d.TransitionID = clonePtr(d.TransitionID)
	d.TaskParametersID = clonePtr(d.TaskParametersID)
	d.Traceparent = clonePtr(d.Traceparent)
	d.DeploymentConcurrencyLeaseID = clonePtr(d.DeploymentConcurrencyLeaseID)
	return &c
}

// FreshCopy is Prefect's State.fresh_copy: a deep copy with a new id and
// the given timestamp.
func (s *State) FreshCopy(now time.Time) *State {
	c := s.Clone()
	c.ID = newID()
	c.Timestamp = now
	return c
}

// NewState builds a state the way Prefect's helpers (states.Scheduled,
// states.Failed, ...) do: new uuid7 id, timestamp now, default name, and a
// scheduled time of now for SCHEDULED states.
func NewState(t StateType, name string, now time.Time) *State {
	s := &State{Type: t, Name: name, Timestamp: now}
	NormalizeState(s, now)
	return s
}

// NormalizeState applies what Prefect's StateCreate/State validators do to
// a state received from a client: an id and timestamp when missing, the
// default name, and scheduled_time = now for SCHEDULED states without one.
// Timestamps are truncated to microseconds, the precision Prefect stores.
func NormalizeState(s *State, now time.Time) {
	now = now.UTC().Truncate(time.Microsecond)
	if s.ID == uuid.Nil {
		s.ID = newID()
	}
	if s.Timestamp.IsZero() {
		s.Timestamp = now
	}
	s.Timestamp = s.Timestamp.UTC().Truncate(time.Microsecond)
	if s.Name == "" {
		s.Name = s.Type.DefaultName()
	}
	if s.Type == Scheduled && s.StateDetails.ScheduledTime == nil {
		s.StateDetails.ScheduledTime = &now
	}
}

// HasPersistedResult mirrors Prefect's check for "this state carries result
// metadata": the data is a non-empty JSON object whose "type" is not
// "unpersisted".
func HasPersistedResult(data json.RawMessage) bool {
	var obj map[string]json.RawMessage
	if len(data) == 0 || json.Unmarshal(data, &obj) != nil || len(obj) == 0 {
		return false
	}
	var typ string
	if raw, ok := obj["type"]; ok {
		// a non-string "type" cannot equal "unpersisted"
		if json.Unmarshal(raw, &typ) != nil {
			return true
		}
	}
	return typ != "unpersisted"
}

// RetryType is FlowRunPolicy.retry_type: "in_process", "reschedule" or
// unset.
type RetryType string

// Retry types Prefect records on a flow run.
const (
	RetryInProcess  RetryType = "in_process"
	RetryReschedule RetryType = "reschedule"
)

// FlowRunPolicy is a flow run's empirical_policy column.
type FlowRunPolicy struct {
	MaxRetries        int        `json:"max_retries"`
	RetryDelaySeconds float64    `json:"retry_delay_seconds"`
	Retries           *int       `json:"retries"`
	RetryDelay        *int       `json:"retry_delay"`
	PauseKeys         []string   `json:"pause_keys"`
	Resuming          bool       `json:"resuming"`
	RetryType         *RetryType `json:"retry_type"`
}

func (p FlowRunPolicy) clone() FlowRunPolicy {
	p.Retries = clonePtr(p.Retries)
	p.RetryDelay = clonePtr(p.RetryDelay)
	p.PauseKeys = slices.Clone(p.PauseKeys)
	p.RetryType = clonePtr(p.RetryType)
	return p
}

// TaskRunPolicy is a task run's empirical_policy column.
type TaskRunPolicy struct {
	MaxRetries        int        `json:"max_retries"`
	RetryDelaySeconds float64    `json:"retry_delay_seconds"`
	Retries           *int       `json:"retries"`
	RetryDelay        RetryDelay `json:"retry_delay"`
	RetryJitterFactor *float64   `json:"retry_jitter_factor"`
}

// RetryDelay is TaskRunPolicy.retry_delay: null, one number of seconds, or
// a list with one delay per retry.
type RetryDelay struct {
	Seconds []float64
	IsList  bool
}

// MarshalJSON writes null, a number, or a list, as it was read.
func (d RetryDelay) MarshalJSON() ([]byte, error) {
	switch {
	case d.IsList:
		if d.Seconds == nil {
			return []byte("[]"), nil
		}
		return json.Marshal(d.Seconds)
	case len(d.Seconds) == 0:
		return []byte("null"), nil
	default:
		return json.Marshal(d.Seconds[0])
	}
}

// UnmarshalJSON accepts null, a number or a list of numbers.
func (d *RetryDelay) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*d = RetryDelay{}
	case len(b) > 0 && b[0] == '[':
		var xs []float64
		if err := json.Unmarshal(b, &xs); err != nil {
			return fmt.Errorf("retry_delay: %w", err)
		}
		*d = RetryDelay{Seconds: xs, IsList: true}
	default:
		var x float64
		if err := json.Unmarshal(b, &x); err != nil {
			return fmt.Errorf("retry_delay: %w", err)
		}
		*d = RetryDelay{Seconds: []float64{x}}
	}
	return nil
}

// RunCore holds the columns flow runs and task runs share and that the
// orchestration transforms maintain. StateType NoState and StateName ""
// mean SQL NULL.
type RunCore struct {
	ID                     uuid.UUID
	StateID                *uuid.UUID
	StateType              StateType
	StateName              string
	StateTimestamp         *time.Time
	RunCount               int
	StartTime              *time.Time
	EndTime                *time.Time
	TotalRunTime           time.Duration
	ExpectedStartTime      *time.Time
	NextScheduledStartTime *time.Time
}

// FlowRun is the part of a flow_run row the flow rules read or write.
type FlowRun struct {
	RunCore
	DeploymentID      *uuid.UUID
	ParentTaskRunID   *uuid.UUID
	InfrastructurePID *string
	EmpiricalPolicy   FlowRunPolicy
}

// TaskRun is the part of a task_run row the task rules read or write.
type TaskRun struct {
	RunCore
	FlowRunID *uuid.UUID
	TaskKey   string
	Tags      []string
	// FlowRunRunCount is the run_count of the flow run when this task run
	// last entered RUNNING; a smaller value than the flow run's current
	// count means the flow is retrying.
	FlowRunRunCount int
	EmpiricalPolicy TaskRunPolicy
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func ptr[T any](v T) *T { return &v }

// newID makes a time-ordered id for a state, as Prefect's uuid7 default.
func newID() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only when the system random source does; a v4 id is
		// still unique, only not time-ordered.
		return uuid.New()
	}
	return id
}
