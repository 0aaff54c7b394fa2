package server

import (
	"context"

	"github.com/prefect-go/prefect-server/gen/api"
)

func (h *handlers) ReadTaskRunState(ctx context.Context, req api.ReadTaskRunStateRequestObject) (api.ReadTaskRunStateResponseObject, error) {
	st, err := h.store.ReadTaskRunState(ctx, req.Id)
	if err != nil {
		// Prefect's route says "Flow run state" here; clients match on it.
		return nil, notFoundAs(err, "Flow run state not found")
	}
	out, err := taskRunStateOut(st)
	if err != nil {
		return nil, err
	}
	return api.ReadTaskRunState200JSONResponse(out), nil
}

func (h *handlers) ReadTaskRunStates(ctx context.Context, req api.ReadTaskRunStatesRequestObject) (api.ReadTaskRunStatesResponseObject, error) {
	sts, err := h.store.ReadTaskRunStates(ctx, req.Params.TaskRunId)
	if err != nil {
		return nil, err
	}
	out := make(api.ReadTaskRunStates200JSONResponse, len(sts))
	for i, st := range sts {
		if out[i], err = taskRunStateOut(st); err != nil {
			return nil, err
		}
	}
	return out, nil
}
