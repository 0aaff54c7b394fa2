package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/prefect-go/prefect-server/gen/db/pgdb"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
	"github.com/prefect-go/prefect-server/services/store/internal/rowcodec"
)

// CreateFlow implements store.Store.
func (s *Store) CreateFlow(ctx context.Context, in store.FlowCreate) (store.Flow, bool, error) {
	if err := checkText(in.Name); err != nil {
		return store.Flow{}, false, err
	}
	labels, err := rowcodec.EncodeObject(in.Labels)
	if err != nil {
		return store.Flow{}, false, fmt.Errorf("%w: labels: %v", store.ErrInvalid, err)
	}
	arg := pgdb.InsertFlowParams{
		ID:      uuid.New(),
		Created: store.Now(),
		Name:    in.Name,
		Tags:    rowcodec.EncodeTags(in.Tags),
		Labels:  labels,
	}
	var row pgdb.Flow
	created := true
	err = s.inTx(ctx, func(q *pgdb.Queries, _ pgx.Tx) error {
		var err error
		row, err = q.InsertFlow(ctx, arg)
		if errors.Is(err, pgx.ErrNoRows) {
			// The name exists: ON CONFLICT DO NOTHING waited for the other
			// writer to commit, so this statement sees its row.
			created = false
			row, err = q.GetFlowByName(ctx, in.Name)
		}
		return err
	})
	if err != nil {
		return store.Flow{}, false, err
	}
	f, err := flowFromRow(row)
	return f, created, err
}

// ReadFlow implements store.Store.
func (s *Store) ReadFlow(ctx context.Context, id uuid.UUID) (store.Flow, error) {
	row, err := s.q.GetFlowByID(ctx, id)
	if err != nil {
		return store.Flow{}, notFound(err, "flow")
	}
	return flowFromRow(row)
}

// ReadFlowByName implements store.Store.
func (s *Store) ReadFlowByName(ctx context.Context, name string) (store.Flow, error) {
	if err := checkText(name); err != nil {
		// No stored name can contain NUL: the answer is simply "absent".
		return store.Flow{}, fmt.Errorf("flow: %w", store.ErrNotFound)
	}
	row, err := s.q.GetFlowByName(ctx, name)
	if err != nil {
		return store.Flow{}, notFound(err, "flow")
	}
	return flowFromRow(row)
}

// ReadFlows implements store.Store.
func (s *Store) ReadFlows(ctx context.Context, q store.FlowQuery) ([]store.Flow, error) {
	sql, args, err := rowcodec.FlowSelect(filter.Postgres, rowcodec.FlowColumns, q)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []store.Flow{}
	for rows.Next() {
		var r pgdb.Flow
		if err := rows.Scan(&r.ID, &r.Created, &r.Updated, &r.Name, &r.Tags, &r.Labels); err != nil {
			return nil, mapErr(err)
		}
		f, err := flowFromRow(r)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, mapErr(rows.Err())
}

// CountFlows implements store.Store.
func (s *Store) CountFlows(ctx context.Context, f filter.FlowFilterSet) (int64, error) {
	sql, args, err := rowcodec.FlowCount(filter.Postgres, f)
	if err != nil {
		return 0, err
	}
	var n int64
	return n, mapErr(s.pool.QueryRow(ctx, sql, args...).Scan(&n))
}

// UpdateFlow implements store.Store.
func (s *Store) UpdateFlow(ctx context.Context, id uuid.UUID, in store.FlowUpdate) error {
	var n int64
	var err error
	if in.Tags != nil {
		n, err = s.q.UpdateFlowTags(ctx, pgdb.UpdateFlowTagsParams{ID: id, Tags: rowcodec.EncodeTags(*in.Tags), Updated: store.Now()})
	} else {
		n, err = s.q.TouchFlow(ctx, pgdb.TouchFlowParams{ID: id, Updated: store.Now()})
	}
	if err != nil {
		return mapErr(err)
	}
	if n == 0 {
		return fmt.Errorf("flow %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// DeleteFlow implements store.Store.
func (s *Store) DeleteFlow(ctx context.Context, id uuid.UUID) error {
	n, err := s.q.DeleteFlow(ctx, id)
	if err != nil {
		return mapErr(err)
	}
	if n == 0 {
		return fmt.Errorf("flow %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// BulkDeleteFlows implements store.Store.
func (s *Store) BulkDeleteFlows(ctx context.Context, f filter.FlowFilterSet, limit int) ([]uuid.UUID, error) {
	sql, args, err := rowcodec.FlowSelect(filter.Postgres, "flow.id", store.FlowQuery{Filter: f, Limit: limit})
	if err != nil {
		return nil, err
	}
	deleted := []uuid.UUID{}
	err = s.inTx(ctx, func(q *pgdb.Queries, tx pgx.Tx) error {
		// FOR UPDATE keeps the chosen rows ours until the delete; a flow
		// another transaction removes meanwhile is simply not reported.
		rows, err := tx.Query(ctx, sql+" FOR UPDATE", args...)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil || len(ids) == 0 {
			return err
		}
		got, err := q.DeleteFlowsByIDs(ctx, ids)
		if err != nil {
			return err
		}
		// Report in the selection (name) order, not the delete's.
		gone := make(map[uuid.UUID]bool, len(got))
		for _, id := range got {
			gone[id] = true
		}
		for _, id := range ids {
			if gone[id] {
				deleted = append(deleted, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return deleted, nil
}

func flowFromRow(r pgdb.Flow) (store.Flow, error) {
	tags, err := rowcodec.DecodeTags(r.Tags)
	if err != nil {
		return store.Flow{}, err
	}
	labels, err := rowcodec.DecodeObject(r.Labels)
	if err != nil {
		return store.Flow{}, err
	}
	return store.Flow{
		ID:      r.ID,
		Created: store.Truncate(r.Created),
		Updated: store.Truncate(r.Updated),
		Name:    r.Name,
		Tags:    tags,
		Labels:  labels,
	}, nil
}
