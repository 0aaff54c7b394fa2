package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/gen/db/sqlitedb"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
	"github.com/prefect-go/prefect-server/services/store/internal/rowcodec"
)

// CreateFlow implements store.Store.
func (s *Store) CreateFlow(ctx context.Context, in store.FlowCreate) (store.Flow, bool, error) {
	labels, err := rowcodec.EncodeObject(in.Labels)
	if err != nil {
		return store.Flow{}, false, fmt.Errorf("%w: labels: %v", store.ErrInvalid, err)
	}
	arg := sqlitedb.InsertFlowParams{
		ID:      uuid.NewString(),
		Created: formatTime(store.Now()),
		Name:    in.Name,
		Tags:    string(rowcodec.EncodeTags(in.Tags)),
		Labels:  nullString(labels),
	}
	var row sqlitedb.Flow
	created := true
	err = s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, _ *sql.Tx) error {
		var err error
		row, err = q.InsertFlow(ctx, arg)
		if errors.Is(err, sql.ErrNoRows) {
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
	row, err := s.rq.GetFlowByID(ctx, id.String())
	if err != nil {
		return store.Flow{}, notFound(err, "flow")
	}
	return flowFromRow(row)
}

// ReadFlowByName implements store.Store.
func (s *Store) ReadFlowByName(ctx context.Context, name string) (store.Flow, error) {
	row, err := s.rq.GetFlowByName(ctx, name)
	if err != nil {
		return store.Flow{}, notFound(err, "flow")
	}
	return flowFromRow(row)
}

// ReadFlows implements store.Store.
func (s *Store) ReadFlows(ctx context.Context, q store.FlowQuery) ([]store.Flow, error) {
	query, args, err := rowcodec.FlowSelect(filter.SQLite, rowcodec.FlowColumns, q)
	if err != nil {
		return nil, err
	}
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []store.Flow{}
	for rows.Next() {
		var r sqlitedb.Flow
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
	query, args, err := rowcodec.FlowCount(filter.SQLite, f)
	if err != nil {
		return 0, err
	}
	var n int64
	return n, mapErr(s.reader.QueryRowContext(ctx, query, args...).Scan(&n))
}

// UpdateFlow implements store.Store.
func (s *Store) UpdateFlow(ctx context.Context, id uuid.UUID, in store.FlowUpdate) error {
	var n int64
	err := s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, _ *sql.Tx) error {
		var err error
		now := formatTime(store.Now())
		if in.Tags != nil {
			n, err = q.UpdateFlowTags(ctx, sqlitedb.UpdateFlowTagsParams{ID: id.String(), Tags: string(rowcodec.EncodeTags(*in.Tags)), Updated: now})
		} else {
			n, err = q.TouchFlow(ctx, sqlitedb.TouchFlowParams{ID: id.String(), Updated: now})
		}
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("flow %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// DeleteFlow implements store.Store.
func (s *Store) DeleteFlow(ctx context.Context, id uuid.UUID) error {
	var n int64
	err := s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, _ *sql.Tx) error {
		var err error
		n, err = q.DeleteFlow(ctx, id.String())
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("flow %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// BulkDeleteFlows implements store.Store.
func (s *Store) BulkDeleteFlows(ctx context.Context, f filter.FlowFilterSet, limit int) ([]uuid.UUID, error) {
	query, args, err := rowcodec.FlowSelect(filter.SQLite, "flow.id", store.FlowQuery{Filter: f, Limit: limit})
	if err != nil {
		return nil, err
	}
	deleted := []uuid.UUID{}
	err = s.write(ctx, func(ctx context.Context, q *sqlitedb.Queries, tx *sql.Tx) error {
		// Selected inside the writer transaction, so no other write can
		// slip in between the choice and the delete.
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		// Deleted in batches: SQLite caps the number of bound parameters.
		for len(ids) > 0 {
			batch := ids[:min(len(ids), 500)]
			ids = ids[len(batch):]
			if _, err := q.DeleteFlowsByIDs(ctx, batch); err != nil {
				return err
			}
			for _, id := range batch {
				u, err := uuid.Parse(id)
				if err != nil {
					return fmt.Errorf("flow id %q: %w", id, err)
				}
				deleted = append(deleted, u)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return deleted, nil
}

func flowFromRow(r sqlitedb.Flow) (store.Flow, error) {
	id, err := uuid.Parse(r.ID)
	if err != nil {
		return store.Flow{}, fmt.Errorf("flow id %q: %w", r.ID, err)
	}
	created, err := parseTime(r.Created)
	if err != nil {
		return store.Flow{}, err
	}
	updated, err := parseTime(r.Updated)
	if err != nil {
		return store.Flow{}, err
	}
	tags, err := rowcodec.DecodeTags([]byte(r.Tags))
	if err != nil {
		return store.Flow{}, err
	}
	var labels map[string]any
	if r.Labels.Valid {
		if labels, err = rowcodec.DecodeObject([]byte(r.Labels.String)); err != nil {
			return store.Flow{}, err
		}
	}
	return store.Flow{ID: id, Created: created, Updated: updated, Name: r.Name, Tags: tags, Labels: labels}, nil
}
