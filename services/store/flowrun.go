package store

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"math/big"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// FlowRun is a row of table flow_run, plus what Prefect's FlowRunResponse
// joins in: the current state (with its result data) and the work pool of
// the run's work queue. The embedded RunCore holds the id and the columns
// the orchestration transforms maintain.
type FlowRun struct {
	orchestration.RunCore
	Created                  time.Time
	Updated                  time.Time
	FlowID                   uuid.UUID
	Name                     string
	DeploymentID             *uuid.UUID
	DeploymentVersion        *string
	WorkQueueID              *uuid.UUID
	WorkQueueName            *string
	WorkPoolID               *uuid.UUID // joined through work_queue
	WorkPoolName             *string    // joined through work_queue
	FlowVersion              *string
	Parameters               map[string]any // never nil
	IdempotencyKey           *string
	Context                  map[string]any // never nil
	EmpiricalPolicy          orchestration.FlowRunPolicy
	Tags                     []string       // never nil
	Labels                   map[string]any // nil means SQL NULL
	CreatedBy                json.RawMessage
	InfrastructurePID        *string
	JobVariables             map[string]any // nil means SQL NULL
	InfrastructureDocumentID *uuid.UUID
	ParentTaskRunID          *uuid.UUID
	AutoScheduled            bool
	// State is the current state (state_id's row), nil when there is none.
	State *orchestration.State
}

// EstimatedRunTime is Prefect's FlowRun.estimated_run_time: the stored
// total plus, while RUNNING, the time since the state was entered.
func (r *FlowRun) EstimatedRunTime(now time.Time) time.Duration {
	return EstimatedRunTime(&r.RunCore, now)
}

// EstimatedStartTimeDelta is Prefect's estimated_start_time_delta: how late
// the run started, or (not started, not terminal, past due) is so far.
func (r *FlowRun) EstimatedStartTimeDelta(now time.Time) time.Duration {
	return EstimatedStartTimeDelta(&r.RunCore, now)
}

// EstimatedRunTime computes Prefect's estimated_run_time for any run.
func EstimatedRunTime(c *orchestration.RunCore, now time.Time) time.Duration {
	d := c.TotalRunTime
	if c.StateType == orchestration.Running && c.StateTimestamp != nil {
		d += now.Sub(*c.StateTimestamp)
	}
	return d
}

// EstimatedStartTimeDelta computes Prefect's estimated_start_time_delta for
// any run.
func EstimatedStartTimeDelta(c *orchestration.RunCore, now time.Time) time.Duration {
	switch {
	case c.ExpectedStartTime == nil:
		return 0
	case c.StartTime != nil:
		if c.StartTime.After(*c.ExpectedStartTime) {
			return c.StartTime.Sub(*c.ExpectedStartTime)
		}
		return 0
	case !c.StateType.IsTerminal() && c.ExpectedStartTime.Before(now):
		return now.Sub(*c.ExpectedStartTime)
	}
	return 0
}

// FlowRunCreate is what CreateFlowRun writes. Nil maps and slices are
// stored as the columns' defaults ({} / []).
type FlowRunCreate struct {
	FlowID uuid.UUID
	// Name defaults to a random two-word slug, as Prefect's.
	Name              string
	DeploymentID      *uuid.UUID
	DeploymentVersion *string
	WorkQueueID       *uuid.UUID
	WorkQueueName     *string
	// WorkPoolName, when set, selects the work queue: WorkQueueName in that
	// pool, or the pool's default queue (Prefect's create route). A missing
	// pool or queue is ErrNotFound.
	WorkPoolName             *string
	FlowVersion              *string
	Parameters               map[string]any
	IdempotencyKey           *string
	Context                  map[string]any
	EmpiricalPolicy          *orchestration.FlowRunPolicy
	Tags                     []string
	Labels                   map[string]any
	CreatedBy                json.RawMessage
	InfrastructureDocumentID *uuid.UUID
	ParentTaskRunID          *uuid.UUID
	JobVariables             map[string]any
	AutoScheduled            bool
	// State is the initial state, applied with Options{Force: true} in the
	// same transaction. Nil means no state (Prefect's models layer); the
	// HTTP route passes Pending when the body has none.
	State *orchestration.State
}

// FlowRunCreated is the answer of CreateFlowRun.
type FlowRunCreated struct {
	Run FlowRun
	// Created is false when the (flow_id, idempotency_key) pair existed: Run
	// is then the existing run, untouched, and no state was applied.
	Created bool
	Effects
}

// FlowRunUpdate lists the columns a PATCH may set; nil fields are left
// alone. For nullable columns a non-nil pointer to nil clears the column.
type FlowRunUpdate struct {
	Name              *string
	FlowVersion       **string
	Parameters        *map[string]any
	EmpiricalPolicy   *orchestration.FlowRunPolicy
	Tags              *[]string
	InfrastructurePID **string
	JobVariables      *map[string]any
}

// FlowRunQuery selects a page of flow runs.
type FlowRunQuery struct {
	Filter filter.FlowRunFilterSet
	Sort   string // a FlowRunSort value; "" means ID_DESC
	Limit  int    // <= 0: no limit
	Offset int
}

// HistoryQuery is the body of POST /flow_runs/history.
type HistoryQuery struct {
	Start, End time.Time
	Interval   time.Duration // at least one second
	Filter     filter.FlowRunFilterSet
}

// HistoryInterval is one interval of a run history.
type HistoryInterval struct {
	Start, End time.Time
	States     []HistoryState // never nil
}

// HistoryState aggregates the runs of one interval in one state.
type HistoryState struct {
	StateType            orchestration.StateType
	StateName            string
	CountRuns            int
	SumEstimatedRunTime  float64 // seconds
	SumEstimatedLateness float64 // seconds
}

// BucketHistory is Prefect's run_history aggregation over runs already
// selected by expected_start_time in [Start, Start+n*Interval): at most 500
// intervals, states sorted by type and name within an interval.
func BucketHistory(q HistoryQuery, runs []orchestration.RunCore, now time.Time) []HistoryInterval {
	n := HistoryIntervals(q)
	out := make([]HistoryInterval, n)
	type key struct {
		t    orchestration.StateType
		name string
	}
	buckets := make([]map[key]*HistoryState, n)
	for i := range out {
		out[i] = HistoryInterval{
			Start:  q.Start.Add(time.Duration(i) * q.Interval).UTC(),
			End:    q.Start.Add(time.Duration(i+1) * q.Interval).UTC(),
			States: []HistoryState{},
		}
		buckets[i] = map[key]*HistoryState{}
	}
	for i := range runs {
		r := &runs[i]
		if r.ExpectedStartTime == nil {
			continue
		}
		idx := int(r.ExpectedStartTime.Sub(q.Start) / q.Interval)
		if r.ExpectedStartTime.Before(q.Start) || idx < 0 || idx >= n {
			continue
		}
		k := key{r.StateType, r.StateName}
		hs := buckets[idx][k]
		if hs == nil {
			hs = &HistoryState{StateType: r.StateType, StateName: r.StateName}
			buckets[idx][k] = hs
		}
		hs.CountRuns++
		hs.SumEstimatedRunTime += max(0, EstimatedRunTime(r, now).Seconds())
		hs.SumEstimatedLateness += max(0, EstimatedStartTimeDelta(r, now).Seconds())
	}
	for i := range out {
		for _, hs := range buckets[i] {
			out[i].States = append(out[i].States, *hs)
		}
		sort.Slice(out[i].States, func(a, b int) bool {
			x, y := out[i].States[a], out[i].States[b]
			if x.StateType != y.StateType {
				return x.StateType < y.StateType
			}
			return x.StateName < y.StateName
		})
	}
	return out
}

// HistoryIntervals is the number of intervals Prefect reports: the span
// divided by the interval, rounded up, at most 500.
func HistoryIntervals(q HistoryQuery) int {
	elapsed := q.End.Sub(q.Start)
	if elapsed <= 0 || q.Interval <= 0 {
		return 0
	}
	n := int64((elapsed + q.Interval - 1) / q.Interval)
	return int(min(n, 500))
}

// HistoryEnd is the exclusive upper bound of expected_start_time a history
// selects.
func HistoryEnd(q HistoryQuery) time.Time {
	return q.Start.Add(time.Duration(HistoryIntervals(q)) * q.Interval)
}

// FlowRunInput is a row of flow_run_input.
type FlowRunInput struct {
	ID        uuid.UUID
	Created   time.Time
	Updated   time.Time
	FlowRunID uuid.UUID
	Key       string
	Value     string
	Sender    *string
}

// TaskRunDependency is one task run of Prefect's flow run graph (v1).
type TaskRunDependency struct {
	ID                   uuid.UUID
	Name                 string
	UpstreamDependencies []json.RawMessage // TaskRunResult-like inputs, deduplicated
	State                *orchestration.State
	ExpectedStartTime    *time.Time
	StartTime            *time.Time
	EndTime              *time.Time
	TotalRunTime         time.Duration
	EstimatedRunTime     time.Duration
	UntrackableResult    bool
}

// Graph is Prefect's flow run graph v2.
type Graph struct {
	StartTime   *time.Time
	EndTime     *time.Time
	RootNodeIDs []uuid.UUID
	Nodes       []GraphNode
	Artifacts   []GraphArtifact
	States      []GraphState
}

// GraphNode is a task run or subflow run of a graph.
type GraphNode struct {
	Kind          string // "task-run" or "flow-run"
	ID            uuid.UUID
	Label         string
	StateType     orchestration.StateType
	StartTime     time.Time
	EndTime       *time.Time
	Parents       []uuid.UUID
	Children      []uuid.UUID
	Encapsulating []uuid.UUID
	Artifacts     []GraphArtifact
}

// GraphArtifact is an artifact shown on a graph.
type GraphArtifact struct {
	ID       uuid.UUID
	Created  time.Time
	Key      *string
	Type     *string
	IsLatest bool
	Data     json.RawMessage
}

// GraphState is one state of the graph's flow run.
type GraphState struct {
	ID        uuid.UUID
	Timestamp time.Time
	Type      orchestration.StateType
	Name      string
}

// ErrGraphTooLarge is Prefect's FlowRunGraphTooLarge (HTTP 400).
var ErrGraphTooLarge = errorString("flow run graph too large")

type errorString string

func (e errorString) Error() string { return string(e) }

// BackgroundTaskRun is a deferred task run a transition put in SCHEDULED;
// after commit it goes to the queue behind /task_runs/subscriptions/scheduled.
type BackgroundTaskRun struct {
	Run   orchestration.TaskRun
	Retry bool
}

// Effects are what a committed transaction asks of the caller afterwards:
// events to publish (the prefect.flow-run.<State> events) and background
// task runs to enqueue. They are collected during the transaction and are
// empty when it rolled back.
type Effects struct {
	Events             []events.Event
	BackgroundTaskRuns []BackgroundTaskRun
}

// Merge appends other's effects.
func (e *Effects) Merge(other Effects) {
	e.Events = append(e.Events, other.Events...)
	e.BackgroundTaskRuns = append(e.BackgroundTaskRuns, other.BackgroundTaskRuns...)
}

// SetStateResult is the outcome of one orchestrated transition: the
// engine's answer (Status, Details, State) plus the post-commit effects.
type SetStateResult struct {
	orchestration.Result
	Effects
}

// FlowRunStore is the persistence of flow runs, their states and inputs,
// and the orchestrated set_state of flow runs and task runs.
type FlowRunStore interface {
	// CreateFlowRun inserts a flow run and, in the same transaction, forces
	// its initial state. With an idempotency key that the flow already
	// used, it returns the existing run with Created=false. A missing flow
	// is ErrConflict (foreign key), as Prefect's IntegrityError.
	CreateFlowRun(ctx context.Context, in FlowRunCreate, opts orchestration.Options) (FlowRunCreated, error)
	// ReadFlowRun returns ErrNotFound when no flow run has the id.
	ReadFlowRun(ctx context.Context, id uuid.UUID) (FlowRun, error)
	// ReadFlowRuns returns one page; filter.ErrInvalid means a bad filter or
	// sort.
	ReadFlowRuns(ctx context.Context, q FlowRunQuery) ([]FlowRun, error)
	// CountFlowRuns counts the flow runs the filter matches.
	CountFlowRuns(ctx context.Context, f filter.FlowRunFilterSet) (int64, error)
	// UpdateFlowRun sets the given columns and bumps updated; ErrNotFound
	// when no flow run has the id.
	UpdateFlowRun(ctx context.Context, id uuid.UUID, in FlowRunUpdate) error
	// UpdateFlowRunLabels merges labels into the run's labels (new keys win).
	UpdateFlowRunLabels(ctx context.Context, id uuid.UUID, labels map[string]any) error
	// DeleteFlowRun deletes a run with its states, task runs and inputs.
	DeleteFlowRun(ctx context.Context, id uuid.UUID) error
	// BulkDeleteFlowRuns deletes up to limit runs the filter matches (ID_DESC
	// order) in one transaction and returns their ids.
	BulkDeleteFlowRuns(ctx context.Context, f filter.FlowRunFilterSet, limit int) ([]uuid.UUID, error)
	// FlowRunHistory is POST /flow_runs/history.
	FlowRunHistory(ctx context.Context, q HistoryQuery) ([]HistoryInterval, error)
	// FlowRunLateness is the average estimated start time delta in seconds
	// of the matching runs; nil when none matches.
	FlowRunLateness(ctx context.Context, f filter.FlowRunFilterSet) (*float64, error)
	// ReadFlowRunGraphV1 lists the run's task runs with their inputs.
	ReadFlowRunGraphV1(ctx context.Context, id uuid.UUID) ([]TaskRunDependency, error)
	// ReadFlowRunGraphV2 is Prefect's flow_run_graph_v2: task and subflow
	// nodes that started or ended after since, with edges and states.
	// ErrGraphTooLarge when more than maxNodes nodes match.
	ReadFlowRunGraphV2(ctx context.Context, id uuid.UUID, since time.Time, maxNodes, maxArtifacts int) (Graph, error)

	// CreateFlowRunInput inserts an input; an existing key is ErrConflict,
	// a missing flow run ErrNotFound.
	CreateFlowRunInput(ctx context.Context, in FlowRunInput) (FlowRunInput, error)
	// ReadFlowRunInput returns ErrNotFound when there is no such key.
	ReadFlowRunInput(ctx context.Context, flowRunID uuid.UUID, key string) (FlowRunInput, error)
	// FilterFlowRunInputs lists inputs whose key starts with prefix, minus
	// excluded keys, oldest first, at most limit (<= 0: no limit).
	FilterFlowRunInputs(ctx context.Context, flowRunID uuid.UUID, prefix string, limit int, exclude []string) ([]FlowRunInput, error)
	// DeleteFlowRunInput returns ErrNotFound when there is no such key.
	DeleteFlowRunInput(ctx context.Context, flowRunID uuid.UUID, key string) error

	// ReadFlowRunState reads one flow run state (with its result data).
	ReadFlowRunState(ctx context.Context, id uuid.UUID) (orchestration.State, error)
	// ReadFlowRunStates lists a flow run's states, oldest first.
	ReadFlowRunStates(ctx context.Context, flowRunID uuid.UUID) ([]orchestration.State, error)

	// SetFlowRunState orchestrates proposed onto the flow run in one
	// transaction that locks the run: it runs the engine, writes the new
	// state and the run, and returns the answer plus the effects to carry
	// out after commit. ErrNotFound when the run does not exist.
	SetFlowRunState(ctx context.Context, id uuid.UUID, proposed orchestration.State, opts orchestration.Options) (SetStateResult, error)
	// ResumeFlowRun is SetFlowRunState for POST /flow_runs/{id}/resume:
	// when the transition is accepted and input is not nil, the run input
	// is stored in the same transaction (Prefect's one session).
	ResumeFlowRun(ctx context.Context, id uuid.UUID, proposed orchestration.State, opts orchestration.Options, input *FlowRunInput) (SetStateResult, error)
	// SetTaskRunState is SetFlowRunState for task runs.
	SetTaskRunState(ctx context.Context, id uuid.UUID, proposed orchestration.State, opts orchestration.Options) (SetStateResult, error)
}

// GenerateSlug is Prefect's default run name: two random words joined by
// a dash ("adjective-animal").
func GenerateSlug() string {
	return pick(slugAdjectives) + "-" + pick(slugNouns)
}

func pick(words []string) string {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(len(words))))
	if err != nil {
		return words[0]
	}
	return words[n.Int64()]
}

var slugAdjectives = strings.Fields(`able agile amber ancient arcane argent athletic auburn august
	benevolent bold brave bright brilliant calm careful charming cheerful clever cobalt
	colorful cosmic crafty crimson cunning curious daring dazzling delightful devoted
	diligent dynamic eager earnest elastic elegant emerald energetic enigmatic exotic
	fearless festive fiery flashy fortunate friendly funny gainful gallant gentle glorious
	golden granite great hallowed handsome happy heavenly hidden honest hopeful humble
	imposing impressive intelligent invaluable jade jolly jovial kind lavender liberal
	lilac loyal lucky magenta magnetic majestic marvellous mellow meteoric mighty modest
	nebulous nimble noble olive optimistic orange outstanding passionate patient peach
	perky placid polite porcelain positive prudent quick quiet rational ruby russet
	sage sandy sapphire scarlet serious silver smart solid sparkling spicy spotted
	stalwart steady stoic sturdy succinct sunny super swift tactful tan teal tidy
	tireless topaz tough tranquil transparent uber unique unselfish upbeat vagabond
	valiant vegan versatile vigilant violet vivacious warm wealthy whimsical wise witty
	xanthic yellow zealous zippy`)

var slugNouns = strings.Fields(`aardwark albatross alligator alpaca angelfish ant anteater
	antelope armadillo axolotl baboon badger barracuda bat bear beaver bee beetle bison
	bittern boa bobcat bonobo buffalo bullfrog butterfly buzzard caiman camel capybara
	caracal cardinal caribou cassowary cat caterpillar chameleon cheetah chicken
	chimpanzee chinchilla chipmunk cicada civet clam cobra cockatoo condor coot cormorant
	coucal cow coyote crab crane cricket crocodile crow cuckoo curassow deer dingo dodo
	dog dolphin donkey dormouse dove dragon dragonfly duck eagle earthworm eel egret eland
	elephant elk emu ermine falcon ferret finch firefly flamingo fox frog gazelle gecko
	gerbil gharial gibbon giraffe gnu goat goose gopher gorilla grasshopper grebe grouse
	gull hamster hare hawk hedgehog heron hippo hornet horse hound hummingbird husky hyena
	ibex ibis iguana impala jackal jaguar jellyfish kangaroo kestrel kingfisher kiwi koala
	kudu ladybug lemming lemur leopard limpet lion lizard llama lobster locust loon lori
	lynx macaw magpie mammoth manatee mandrill mantis marmot marten meerkat mink mole
	mongoose monkey moose mosquito moth mouse mule narwhal newt nightingale ocelot octopus
	okapi opossum orca oriole oryx ostrich otter owl ox oyster panda panther parakeet
	parrot partridge peacock pelican penguin pheasant pig pigeon pika piranha platypus
	porcupine porpoise possum prawn puffin puma python quail quokka rabbit raccoon ram
	raptor rat raven reindeer rhino robin rooster salamander salmon scorpion seahorse seal
	serval shark sheep shrew shrimp skink skunk sloth slug snail snake sparrow spider
	squid squirrel starfish stingray stoat stork swan tamarin tapir tarantula tarsier
	teal termite tern tiger toad tortoise toucan trout turaco turkey turtle uakari
	unicorn viper vole vulture wallaby walrus warthog wasp weasel whale wildebeest wolf
	wolverine wombat woodpecker worm yak zebra`)

// FlowRunStateEvent builds Prefect's prefect.flow-run.<StateName> event
// (models/events.py flow_run_state_change_event) for an accepted flow run
// transition. The event id is the validated state's id; follows is the
// initial state's id when the two are less than five minutes apart.
func FlowRunStateEvent(run FlowRunEventData, initial, validated *orchestration.State) events.Event {
	msg := truncateMessage(deref(validated.Message))
	resource := events.Resource{
		"prefect.resource.id":     "prefect.flow-run." + run.ID.String(),
		"prefect.resource.name":   run.Name,
		"prefect.run-count":       itoa(run.RunCount),
		"prefect.state-message":   msg,
		"prefect.state-name":      validated.Name,
		"prefect.state-timestamp": PythonISOFormat(validated.Timestamp),
		"prefect.state-type":      string(validated.Type),
	}
	related := []events.Resource{}
	tags := map[string]bool{}
	for _, t := range run.Tags {
		tags[t] = true
	}
	add := func(kind string, r *EventRelated, extra map[string]string) {
		if r == nil {
			return
		}
		for _, t := range r.Tags {
			tags[t] = true
		}
		res := events.Resource{
			"prefect.resource.id":   "prefect." + kind + "." + r.ID.String(),
			"prefect.resource.role": kind,
			"prefect.resource.name": r.Name,
		}
		for k, v := range extra {
			res[k] = v
		}
		related = append(related, res)
	}
	add("flow", run.Flow, nil)
	add("deployment", run.Deployment, nil)
	add("work-queue", run.WorkQueue, nil)
	if run.WorkPool != nil {
		add("work-pool", run.WorkPool, map[string]string{"prefect.work-pool.type": run.WorkPoolType})
	}
	add("task-run", run.ParentTaskRun, nil)
	tagList := make([]string, 0, len(tags))
	for t := range tags {
		tagList = append(tagList, t)
	}
	slices.Sort(tagList)
	for _, t := range tagList {
		related = append(related, events.Resource{"prefect.resource.id": "prefect.tag." + t, "prefect.resource.role": "tag"})
	}
	related = append(related, creatorResource(run.CreatedBy)...)

	payload := map[string]any{
		"intended": map[string]any{
			"from": stateTypeOrNil(initial),
			"to":   string(validated.Type),
		},
		"initial_state":   statePayload(initial),
		"validated_state": statePayload(validated),
	}
	raw, _ := json.Marshal(payload) // maps of strings always marshal
	e := events.Event{
		Event:    "prefect.flow-run." + validated.Name,
		Resource: resource,
		Related:  related,
		Payload:  raw,
		ID:       validated.ID,
	}
	e.Occurred.Time = validated.Timestamp
	if initial != nil {
		gap := validated.Timestamp.Sub(initial.Timestamp)
		if gap > -5*time.Minute && gap < 5*time.Minute {
			id := initial.ID
			e.Follows = &id
		}
	}
	return e
}

// FlowRunEventData is what a flow run state event names: the run and the
// objects it relates to (nil when absent).
type FlowRunEventData struct {
	ID            uuid.UUID
	Name          string
	RunCount      int
	Tags          []string
	CreatedBy     json.RawMessage
	Flow          *EventRelated
	Deployment    *EventRelated
	WorkQueue     *EventRelated
	WorkPool      *EventRelated
	WorkPoolType  string
	ParentTaskRun *EventRelated
}

// EventRelated is one related object of an event.
type EventRelated struct {
	ID   uuid.UUID
	Name string
	Tags []string
}

func creatorResource(raw json.RawMessage) []events.Resource {
	if len(raw) == 0 {
		return nil
	}
	var cb struct {
		ID           *uuid.UUID `json:"id"`
		Type         *string    `json:"type"`
		DisplayValue *string    `json:"display_value"`
	}
	if json.Unmarshal(raw, &cb) != nil || cb.ID == nil || cb.Type == nil {
		return nil
	}
	var id string
	switch *cb.Type {
	case "DEPLOYMENT":
		id = "prefect.deployment." + cb.ID.String()
	case "AUTOMATION":
		id = "prefect.automation." + cb.ID.String()
	default:
		return nil
	}
	r := events.Resource{"prefect.resource.id": id, "prefect.resource.role": "creator"}
	if cb.DisplayValue != nil && *cb.DisplayValue != "" {
		r["prefect.resource.name"] = *cb.DisplayValue
	}
	return []events.Resource{r}
}

// truncateAt is Prefect's TRUNCATE_STATE_MESSAGES_AT.
const truncateAt = 100_000

// truncateMessage is Prefect's truncated_to (counted in characters, as
// Python's str).
func truncateMessage(s string) string {
	r := []rune(s)
	if len(r) <= truncateAt {
		return s
	}
	half := truncateAt / 2
	omitted := len(r) - 2*half
	out := string(r[:half]) + "..." + strconv.Itoa(omitted) + " additional characters..." + string(r[len(r)-half:])
	if len([]rune(out)) < len(r) {
		return out
	}
	return s
}

func statePayload(s *orchestration.State) any {
	if s == nil {
		return nil
	}
	p := map[string]string{"type": string(s.Type)}
	if s.Name != "" {
		p["name"] = s.Name
	}
	if s.Message != nil && *s.Message != "" {
		p["message"] = truncateMessage(*s.Message)
	}
	if s.Type == orchestration.Paused {
		if s.StateDetails.PauseReschedule {
			p["pause_reschedule"] = "true"
		} else {
			p["pause_reschedule"] = "false"
		}
	}
	return p
}

func stateTypeOrNil(s *orchestration.State) any {
	if s == nil {
		return nil
	}
	return string(s.Type)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func itoa(n int) string { return strconv.Itoa(n) }

// PythonISOFormat renders t as Python's datetime.isoformat() does for an
// aware UTC value: microseconds only when non-zero, offset +00:00.
func PythonISOFormat(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05+00:00")
	}
	return t.Format("2006-01-02T15:04:05.000000+00:00")
}
