package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/store/filter"
)

// Flow is a row of table flow.
type Flow struct {
	ID      uuid.UUID
	Created time.Time
	Updated time.Time
	Name    string
	Tags    []string       // never nil
	Labels  map[string]any // nil means SQL NULL
}

// FlowCreate is what CreateFlow writes; nil Tags are stored as [].
type FlowCreate struct {
	Name   string
	Tags   []string
	Labels map[string]any
}

// FlowUpdate lists the columns a PATCH may set; nil fields are left alone.
type FlowUpdate struct {
	Tags *[]string
}

// FlowQuery selects a page of flows.
type FlowQuery struct {
	Filter filter.FlowFilterSet
	Sort   string // a FlowSort enum value; "" means NAME_ASC
	Limit  int    // <= 0: no limit
	Offset int    // <= 0: from the first row
}

// FlowStore is the flow half of Store (table flow).
type FlowStore interface {
	// CreateFlow inserts a flow or, when the name exists, returns the
	// existing one untouched with created=false (Prefect's insert ... on
	// conflict do nothing, then select).
	CreateFlow(ctx context.Context, in FlowCreate) (f Flow, created bool, err error)
	// ReadFlow returns ErrNotFound when no flow has the id.
	ReadFlow(ctx context.Context, id uuid.UUID) (Flow, error)
	// ReadFlowByName returns ErrNotFound when no flow has the name.
	ReadFlowByName(ctx context.Context, name string) (Flow, error)
	// ReadFlows returns one page; filter.ErrInvalid-wrapped errors mean a
	// bad filter or sort.
	ReadFlows(ctx context.Context, q FlowQuery) ([]Flow, error)
	// CountFlows counts the flows the filter matches.
	CountFlows(ctx context.Context, f filter.FlowFilterSet) (int64, error)
	// UpdateFlow sets the given columns and bumps updated; ErrNotFound when
	// no flow has the id.
	UpdateFlow(ctx context.Context, id uuid.UUID, in FlowUpdate) error
	// DeleteFlow deletes the flow; its deployments, flow runs and their
	// states and task runs go with it (foreign keys cascade, as in Prefect).
	DeleteFlow(ctx context.Context, id uuid.UUID) error
	// BulkDeleteFlows deletes up to limit flows the filter matches, in
	// NAME_ASC order, in one transaction, and returns their ids (Prefect's
	// POST /flows/bulk_delete). limit <= 0 means no limit.
	BulkDeleteFlows(ctx context.Context, f filter.FlowFilterSet, limit int) ([]uuid.UUID, error)
}
