package server

import (
	"context"
	"net/http"

	"github.com/prefect-go/prefect-server/gen/api"
)

func (h *handlers) ReadFlowRunState(ctx context.Context, req api.ReadFlowRunStateRequestObject) (api.ReadFlowRunStateResponseObject, error) {
	st, err := h.store.ReadFlowRunState(ctx, req.Id)
	if err != nil {
		return nil, notFoundAs(err, "Flow run state not found")
	}
	return jsonAnswer{http.StatusOK, stateOut(&st)}, nil
}

func (h *handlers) ReadFlowRunStates(ctx context.Context, req api.ReadFlowRunStatesRequestObject) (api.ReadFlowRunStatesResponseObject, error) {
	sts, err := h.store.ReadFlowRunStates(ctx, req.Params.FlowRunId)
	if err != nil {
		return nil, err
	}
	out := make([]*stateJSON, len(sts))
	for i := range sts {
		out[i] = stateOut(&sts[i])
	}
	return jsonAnswer{http.StatusOK, out}, nil
}
