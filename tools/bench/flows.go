package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
)

// flowsWorkload exercises the flow endpoints the client and UI use most.
// Each iteration of a worker creates a flow (one time in ten it re-posts a
// name it already created, which must answer 200 with the same id), reads a
// known flow by id and by name, lists the worker's own flows with a like_
// filter sorted by name, and counts them.
type flowsWorkload struct {
	runID   string
	c       *Client
	workers []*flowsWorker
}

// flowsKnownCap bounds the per-worker memory of created flows; reads pick
// from the most recent ones, which is all a worker loop needs.
const flowsKnownCap = 4096

// flowsExistingEvery makes one create in this many reuse a known name.
const flowsExistingEvery = 10

// flowsPageSize is Prefect's default and maximum page size of /filter.
const flowsPageSize = 200

type knownFlow struct{ id, name string }

type flowsWorker struct {
	prefix  string // unique to this run and worker; every created name has it
	rng     *rand.Rand
	seq     int
	created int // flows this worker created (201s)
	known   []knownFlow
	next    int // ring position once known is full
}

type flowBody struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func newFlowsWorkload(runID string) *flowsWorkload {
	return &flowsWorkload{runID: runID}
}

func (w *flowsWorkload) Name() string { return "flows" }

func (w *flowsWorkload) Setup(_ context.Context, c *Client, workers int) error {
	w.c = c
	w.workers = make([]*flowsWorker, workers)
	for i := range w.workers {
		w.workers[i] = &flowsWorker{
			prefix: fmt.Sprintf("bench-%s-w%d-", w.runID, i),
			rng:    rand.New(rand.NewPCG(uint64(i)+1, 0x9e3779b97f4a7c15)),
		}
	}
	return nil
}

func (fw *flowsWorker) remember(f knownFlow) {
	if len(fw.known) < flowsKnownCap {
		fw.known = append(fw.known, f)
		return
	}
	fw.known[fw.next] = f
	fw.next = (fw.next + 1) % flowsKnownCap
}

func (fw *flowsWorker) pick() knownFlow { return fw.known[fw.rng.IntN(len(fw.known))] }

func (w *flowsWorkload) Op(ctx context.Context, worker int) error {
	fw := w.workers[worker]
	if err := w.create(ctx, fw); err != nil {
		return err
	}

	target := fw.pick()
	var got flowBody
	if _, err := w.c.Do(ctx, Request{
		Op: "read_flow", Method: "GET", Path: "/flows/" + target.id,
		Expect: []int{200}, Out: &got,
		Check: func(int) error { return sameFlow(got, target) },
	}); err != nil {
		return err
	}

	target = fw.pick()
	got = flowBody{}
	if _, err := w.c.Do(ctx, Request{
		Op: "read_flow_by_name", Method: "GET", Path: "/flows/name/" + url.PathEscape(target.name),
		Expect: []int{200}, Out: &got,
		Check: func(int) error { return sameFlow(got, target) },
	}); err != nil {
		return err
	}

	filter := map[string]any{"flows": map[string]any{"name": map[string]any{"like_": fw.prefix}}}
	var page []flowBody
	if _, err := w.c.Do(ctx, Request{
		Op: "read_flows", Method: "POST", Path: "/flows/filter",
		Body:   map[string]any{"flows": filter["flows"], "sort": "NAME_ASC", "limit": flowsPageSize},
		Expect: []int{200}, Out: &page,
		Check: func(int) error { return checkFlowPage(page, fw.prefix, min(fw.created, flowsPageSize)) },
	}); err != nil {
		return err
	}

	var count int
	_, err := w.c.Do(ctx, Request{
		Op: "count_flows", Method: "POST", Path: "/flows/count",
		Body: filter, Expect: []int{200}, Out: &count,
		Check: func(int) error {
			if count < fw.created {
				return fmt.Errorf("count %d, but this worker created %d flows named %q...", count, fw.created, fw.prefix)
			}
			return nil
		},
	})
	return err
}

// create posts a new name, or now and then a known one, which Prefect
// answers with 200 and the existing flow instead of 201.
func (w *flowsWorkload) create(ctx context.Context, fw *flowsWorker) error {
	var got flowBody
	if len(fw.known) > 0 && fw.rng.IntN(flowsExistingEvery) == 0 {
		existing := fw.pick()
		_, err := w.c.Do(ctx, Request{
			Op: "create_flow_existing", Method: "POST", Path: "/flows/",
			Body: map[string]any{"name": existing.name}, Expect: []int{200}, Out: &got,
			Check: func(int) error { return sameFlow(got, existing) },
		})
		return err
	}
	fw.seq++
	name := fmt.Sprintf("%s%d", fw.prefix, fw.seq)
	_, err := w.c.Do(ctx, Request{
		Op: "create_flow", Method: "POST", Path: "/flows/",
		Body:   map[string]any{"name": name, "tags": []string{"bench"}},
		Expect: []int{201}, Out: &got,
		Check: func(int) error {
			if got.Name != name || got.ID == "" {
				return fmt.Errorf("created flow is %+v, want name %q with an id", got, name)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	fw.created++
	fw.remember(knownFlow{id: got.ID, name: got.Name})
	return nil
}

func sameFlow(got flowBody, want knownFlow) error {
	if got.ID != want.id || got.Name != want.name {
		return fmt.Errorf("got flow %s %q, want %s %q", got.ID, got.Name, want.id, want.name)
	}
	return nil
}

// checkFlowPage verifies a like_ + NAME_ASC page: only matching names, in
// ascending order, at most one page, and at least the flows known to exist.
func checkFlowPage(page []flowBody, prefix string, atLeast int) error {
	if len(page) > flowsPageSize {
		return fmt.Errorf("%d flows returned, limit was %d", len(page), flowsPageSize)
	}
	if len(page) < atLeast {
		return fmt.Errorf("%d flows returned, at least %d exist", len(page), atLeast)
	}
	for i, f := range page {
		if !strings.Contains(strings.ToLower(f.Name), strings.ToLower(prefix)) {
			return fmt.Errorf("flow %q does not match like_ %q", f.Name, prefix)
		}
		// Names differ only in their decimal suffix, so byte order is the
		// order of every collation here.
		if i > 0 && page[i-1].Name > f.Name {
			return fmt.Errorf("not sorted by name: %q before %q", page[i-1].Name, f.Name)
		}
	}
	return nil
}
