package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/oapi-codegen/nullable"

	"github.com/prefect-go/prefect-server/gen/api"
	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// bulkOperationLimit is Prefect's BULK_OPERATION_LIMIT for bulk deletes.
const bulkOperationLimit = 50

func flowOut(f store.Flow) api.Flow {
	out := api.Flow{
		Id:      f.ID,
		Name:    f.Name,
		Created: nullable.NewNullableWithValue(openapi.Time{Time: f.Created}),
		Updated: nullable.NewNullableWithValue(openapi.Time{Time: f.Updated}),
		Tags:    &f.Tags,
	}
	if out.Tags == nil || *out.Tags == nil {
		empty := []string{}
		out.Tags = &empty
	}
	if f.Labels != nil {
		out.Labels = nullable.NewNullableWithValue(f.Labels)
	} else {
		out.Labels = nullable.NewNullNullable[map[string]any]()
	}
	return out
}

func flowsOut(fs []store.Flow) []api.Flow {
	out := make([]api.Flow, len(fs))
	for i, f := range fs {
		out[i] = flowOut(f)
	}
	return out
}

// createdFlow answers 201: the document only lists 200, but Prefect's route
// sets 201 when the flow did not exist before.
type createdFlow api.Flow

func (c createdFlow) VisitCreateFlowResponse(w http.ResponseWriter) error {
	writeJSON(w, http.StatusCreated, api.Flow(c))
	return nil
}

func (h *handlers) CreateFlow(ctx context.Context, req api.CreateFlowRequestObject) (api.CreateFlowResponseObject, error) {
	in := store.FlowCreate{Name: req.Body.Name, Tags: []string{}}
	if req.Body.Tags != nil {
		in.Tags = *req.Body.Tags
	}
	if req.Body.Labels.IsSpecified() && !req.Body.Labels.IsNull() {
		in.Labels = req.Body.Labels.MustGet()
	}
	f, created, err := h.store.CreateFlow(ctx, in)
	if err != nil {
		return nil, err
	}
	if created {
		return createdFlow(flowOut(f)), nil
	}
	return api.CreateFlow200JSONResponse(flowOut(f)), nil
}

func (h *handlers) ReadFlow(ctx context.Context, req api.ReadFlowRequestObject) (api.ReadFlowResponseObject, error) {
	f, err := h.store.ReadFlow(ctx, req.Id)
	if err != nil {
		return nil, notFoundAs(err, "Flow not found")
	}
	return api.ReadFlow200JSONResponse(flowOut(f)), nil
}

func (h *handlers) ReadFlowByName(ctx context.Context, req api.ReadFlowByNameRequestObject) (api.ReadFlowByNameResponseObject, error) {
	f, err := h.store.ReadFlowByName(ctx, req.Name)
	if err != nil {
		return nil, notFoundAs(err, "Flow not found")
	}
	return api.ReadFlowByName200JSONResponse(flowOut(f)), nil
}

func (h *handlers) ReadFlows(ctx context.Context, req api.ReadFlowsRequestObject) (api.ReadFlowsResponseObject, error) {
	b := req.Body
	if b == nil {
		b = &api.ReadFlowsJSONRequestBody{}
	}
	limit, err := h.limit(present(b.Limit))
	if err != nil {
		return nil, err
	}
	fs, err := h.store.ReadFlows(ctx, store.FlowQuery{
		Filter: flowFilterSet(b.Flows, b.FlowRuns, b.TaskRuns, b.Deployments, b.WorkPools),
		Sort:   flowSort(present(b.Sort)),
		Limit:  limit,
		Offset: orDefault(present(b.Offset), 0),
	})
	if err != nil {
		return nil, err
	}
	return api.ReadFlows200JSONResponse(flowsOut(fs)), nil
}

func (h *handlers) CountFlows(ctx context.Context, req api.CountFlowsRequestObject) (api.CountFlowsResponseObject, error) {
	var set filter.FlowFilterSet
	if b := req.Body; b != nil {
		set = flowFilterSet(b.Flows, b.FlowRuns, b.TaskRuns, b.Deployments, b.WorkPools)
	}
	n, err := h.store.CountFlows(ctx, set)
	if err != nil {
		return nil, err
	}
	return api.CountFlows200JSONResponse(n), nil
}

func (h *handlers) PaginateFlows(ctx context.Context, req api.PaginateFlowsRequestObject) (api.PaginateFlowsResponseObject, error) {
	b := req.Body
	if b == nil {
		b = &api.PaginateFlowsJSONRequestBody{}
	}
	limit, err := h.limit(present(b.Limit))
	if err != nil {
		return nil, err
	}
	page := orDefault(present(b.Page), 1)
	set := flowFilterSet(b.Flows, b.FlowRuns, b.TaskRuns, b.Deployments, b.WorkPools)
	fs, err := h.store.ReadFlows(ctx, store.FlowQuery{Filter: set, Sort: flowSort(present(b.Sort)), Limit: limit, Offset: (page - 1) * limit})
	if err != nil {
		return nil, err
	}
	count, err := h.store.CountFlows(ctx, set)
	if err != nil {
		return nil, err
	}
	return api.PaginateFlows200JSONResponse{
		Results: flowsOut(fs),
		Count:   int(count),
		Limit:   limit,
		Pages:   pages(int(count), limit),
		Page:    page,
	}, nil
}

func (h *handlers) UpdateFlow(ctx context.Context, req api.UpdateFlowRequestObject) (api.UpdateFlowResponseObject, error) {
	if err := h.store.UpdateFlow(ctx, req.Id, store.FlowUpdate{Tags: req.Body.Tags}); err != nil {
		return nil, notFoundAs(err, "Flow not found")
	}
	return api.UpdateFlow204Response{}, nil
}

func (h *handlers) DeleteFlow(ctx context.Context, req api.DeleteFlowRequestObject) (api.DeleteFlowResponseObject, error) {
	if err := h.store.DeleteFlow(ctx, req.Id); err != nil {
		return nil, notFoundAs(err, "Flow not found")
	}
	return api.DeleteFlow204Response{}, nil
}

func (h *handlers) BulkDeleteFlows(ctx context.Context, req api.BulkDeleteFlowsRequestObject) (api.BulkDeleteFlowsResponseObject, error) {
	limit := bulkOperationLimit
	var set filter.FlowFilterSet
	if b := req.Body; b != nil {
		limit = orDefault(present(b.Limit), limit)
		set.Flows = present(b.Flows)
	}
	ids, err := h.store.BulkDeleteFlows(ctx, set, limit)
	if err != nil {
		return nil, err
	}
	return api.BulkDeleteFlows200JSONResponse{Deleted: &ids}, nil
}

// limit applies Prefect's LimitBody: absent means the default limit, which
// is also the maximum.
func (h *handlers) limit(l *int) (int, error) {
	if l == nil {
		return h.opts.DefaultLimit, nil
	}
	if *l < 0 {
		return 0, errUnprocessable("Invalid limit: must be greater than or equal to 0.")
	}
	if *l > h.opts.DefaultLimit {
		return 0, errUnprocessable(fmt.Sprintf("Invalid limit: must be less than or equal to %d.", h.opts.DefaultLimit))
	}
	return *l, nil
}

func flowSort(s *api.FlowSort) string {
	if s == nil {
		return string(api.FlowSortNAMEASC)
	}
	return string(*s)
}

func pages(count, limit int) int {
	if limit <= 0 {
		return 0
	}
	return (count + limit - 1) / limit
}

// flowFilterSet gathers the filters a flows body may carry.
func flowFilterSet(flows nullable.Nullable[filter.FlowFilter], flowRuns nullable.Nullable[filter.FlowRunFilter], taskRuns nullable.Nullable[filter.TaskRunFilter], deployments nullable.Nullable[filter.DeploymentFilter], workPools nullable.Nullable[filter.WorkPoolFilter]) filter.FlowFilterSet {
	return filter.FlowFilterSet{
		Flows:       present(flows),
		FlowRuns:    present(flowRuns),
		TaskRuns:    present(taskRuns),
		Deployments: present(deployments),
		WorkPools:   present(workPools),
	}
}

func orDefault[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// present turns an optional-and-nullable field into a pointer (nil when
// absent or null).
func present[T any](n nullable.Nullable[T]) *T {
	if !n.IsSpecified() || n.IsNull() {
		return nil
	}
	v := n.MustGet()
	return &v
}

// notFoundAs names a missing object the way the Prefect route does.
func notFoundAs(err error, what string) error {
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound(what)
	}
	return err
}
