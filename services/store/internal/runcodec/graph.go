package runcodec

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
)

// GraphTaskRun is what graph v2 reads of a task run of the flow run.
type GraphTaskRun struct {
	ID                uuid.UUID
	Name              string
	StateType         orchestration.StateType
	StartTime         *time.Time
	ExpectedStartTime *time.Time
	EndTime           *time.Time
	TaskInputs        []byte
}

// GraphSubflow is a flow run whose parent task run is one of the flow run's
// task runs.
type GraphSubflow struct {
	ID                uuid.UUID
	Name              string
	FlowName          *string
	StateType         orchestration.StateType
	StartTime         *time.Time
	ExpectedStartTime *time.Time
	EndTime           *time.Time
	ParentTaskRunID   uuid.UUID
}

// GraphArtifactRow is an artifact of the flow run (type <> 'result').
type GraphArtifactRow struct {
	store.GraphArtifact
	TaskRunID *uuid.UUID
}

type graphEdge struct {
	parent        *uuid.UUID
	encapsulating bool
}

type graphNode struct {
	store.GraphNode
	edges []graphEdge
}

// BuildGraph is Prefect's flow_run_graph_v2 over rows the adapter read: one
// node per task run (or per subflow run, which replaces its parent task
// run), edges from task inputs ("__parents__" inputs encapsulate), nodes
// that ended before since left out, ordered by start then end time.
func BuildGraph(start, end *time.Time, tasks []GraphTaskRun, subflows []GraphSubflow, artifacts []GraphArtifactRow, states []store.GraphState, since time.Time, maxNodes int) (store.Graph, error) {
	bySubflowParent := make(map[uuid.UUID]*GraphSubflow, len(subflows))
	for i := range subflows {
		bySubflowParent[subflows[i].ParentTaskRunID] = &subflows[i]
	}
	artByTask := map[uuid.UUID][]store.GraphArtifact{}
	flowArtifacts := []store.GraphArtifact{}
	for _, a := range artifacts {
		if a.TaskRunID == nil {
			flowArtifacts = append(flowArtifacts, a.GraphArtifact)
		} else {
			artByTask[*a.TaskRunID] = append(artByTask[*a.TaskRunID], a.GraphArtifact)
		}
	}
	nodes := make([]*graphNode, 0, len(tasks))
	byID := map[uuid.UUID]*graphNode{}
	for _, tr := range tasks {
		n := &graphNode{GraphNode: store.GraphNode{Kind: "task-run", ID: tr.ID, Label: tr.Name, StateType: tr.StateType}}
		startT := firstTime(tr.StartTime, tr.ExpectedStartTime)
		endT := tr.EndTime
		if endT == nil && tr.StateType == orchestration.Completed {
			endT = tr.ExpectedStartTime
		}
		if sf := bySubflowParent[tr.ID]; sf != nil {
			n.Kind, n.ID = "flow-run", sf.ID
			n.Label = sf.Name
			if sf.FlowName != nil {
				n.Label = *sf.FlowName + " / " + sf.Name
			}
			if sf.StateType != orchestration.NoState {
				n.StateType = sf.StateType
			}
			startT = firstTime(sf.StartTime, sf.ExpectedStartTime, tr.StartTime, tr.ExpectedStartTime)
			if sf.EndTime != nil {
				endT = sf.EndTime
			}
		}
		if startT == nil {
			continue
		}
		n.StartTime = *startT
		n.EndTime = endT
		inputs, err := TaskInputs(tr.TaskInputs)
		if err != nil {
			return store.Graph{}, fmt.Errorf("task run %s: %w", tr.ID, err)
		}
		keys := make([]string, 0, len(inputs))
		for k := range inputs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, raw := range inputs[k] {
				var in struct {
					ID *uuid.UUID `json:"id"`
				}
				_ = json.Unmarshal(raw, &in) // constants and parameters have no id
				n.edges = append(n.edges, graphEdge{parent: in.ID, encapsulating: k == "__parents__"})
			}
		}
		n.Artifacts = artByTask[tr.ID]
		if n.Artifacts == nil {
			n.Artifacts = []store.GraphArtifact{}
		}
		if _, dup := byID[n.ID]; dup {
			continue
		}
		byID[n.ID] = n
		nodes = append(nodes, n)
	}
	// Edges: a child points at a parent node by the parent's node id.
	for _, child := range nodes {
		for _, e := range child.edges {
			if e.parent == nil {
				continue
			}
			parent := byID[*e.parent]
			if parent == nil {
				continue
			}
			if e.encapsulating {
				child.Encapsulating = appendUnique(child.Encapsulating, parent.ID)
			} else {
				child.Parents = appendUnique(child.Parents, parent.ID)
				parent.Children = appendUnique(parent.Children, child.ID)
			}
		}
	}
	startOf := func(id uuid.UUID) time.Time { return byID[id].StartTime }
	out := []store.GraphNode{}
	roots := []uuid.UUID{}
	sort.SliceStable(nodes, func(i, j int) bool {
		a, b := nodes[i], nodes[j]
		if !a.StartTime.Equal(b.StartTime) {
			return a.StartTime.Before(b.StartTime)
		}
		// PostgreSQL sorts NULL end times last.
		switch {
		case a.EndTime == nil:
			return false
		case b.EndTime == nil:
			return true
		}
		return a.EndTime.Before(*b.EndTime)
	})
	for _, n := range nodes {
		if n.EndTime != nil && n.EndTime.Before(since) {
			continue
		}
		for _, ids := range [][]uuid.UUID{n.Parents, n.Children, n.Encapsulating} {
			sort.SliceStable(ids, func(i, j int) bool { return startOf(ids[i]).Before(startOf(ids[j])) })
		}
		node := n.GraphNode
		for _, p := range []*[]uuid.UUID{&node.Parents, &node.Children, &node.Encapsulating} {
			if *p == nil {
				*p = []uuid.UUID{}
			}
		}
		if len(node.Parents) == 0 {
			roots = append(roots, node.ID)
		}
		out = append(out, node)
		if len(out) > maxNodes {
			return store.Graph{}, fmt.Errorf("%w: the graph of this flow run has more than %d nodes", store.ErrGraphTooLarge, maxNodes)
		}
	}
	return store.Graph{StartTime: start, EndTime: end, RootNodeIDs: roots, Nodes: out, Artifacts: flowArtifacts, States: states}, nil
}

func appendUnique(ids []uuid.UUID, id uuid.UUID) []uuid.UUID {
	for _, x := range ids {
		if x == id {
			return ids
		}
	}
	return append(ids, id)
}

func firstTime(ts ...*time.Time) *time.Time {
	for _, t := range ts {
		if t != nil {
			return t
		}
	}
	return nil
}

// Dependencies is graph v1's upstream_dependencies of one task run: all
// inputs of all parameters, duplicates removed.
func Dependencies(taskInputs []byte) ([]json.RawMessage, error) {
	inputs, err := TaskInputs(taskInputs)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(inputs))
	for k := range inputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	seen := map[string]bool{}
	out := []json.RawMessage{}
	for _, k := range keys {
		for _, raw := range inputs[k] {
			var v any
			if json.Unmarshal(raw, &v) != nil {
				continue
			}
			canon, _ := json.Marshal(v)
			if seen[string(canon)] {
				continue
			}
			seen[string(canon)] = true
			out = append(out, canon)
		}
	}
	return out, nil
}
