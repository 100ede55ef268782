package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/taskfleet/taskfleet/storage"
)

var _ storage.HierarchyStore = (*Store)(nil)

// PutHierarchyNode implements storage.HierarchyStore: the node row is
// upserted and its children replaced in one transaction.
func (s *Store) PutHierarchyNode(ctx context.Context, p storage.PutHierarchyNodeParams) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("sqlstore: put hierarchy node: %w", err)
	}
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO hierarchy_nodes (node, role, parent, epoch) VALUES (?, ?, ?, ?)
ON CONFLICT (node) DO UPDATE SET role = excluded.role, parent = excluded.parent, epoch = excluded.epoch`), p.Node, p.Role, p.Parent, p.Epoch); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM hierarchy_children WHERE node = ?`), p.Node); err != nil {
			return err
		}
		if len(p.Children) == 0 {
			return nil
		}
		stmt, err := tx.PrepareContext(ctx, tx.Rebind(`INSERT INTO hierarchy_children (node, child, role, grp) VALUES (?, ?, ?, ?)`))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, c := range p.Children {
			if _, err := stmt.ExecContext(ctx, p.Node, c.ID, c.Role, c.Group); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlstore: put hierarchy node %q: %w", p.Node, mapErr(err))
	}
	return nil
}

// lockNode reads (and on PostgreSQL locks) a node's row in tx, so the
// version checks of concurrent writers of one node serialize; SQLite
// transactions already hold the database's write lock.
func (s *Store) lockNode(ctx context.Context, tx *sqlx.Tx, node string) (setFrom string, set storage.HierarchyVersion, err error) {
	q := `SELECT set_from, set_epoch, set_seq FROM hierarchy_nodes WHERE node = ?`
	if s.dialect == Postgres {
		q += ` FOR UPDATE`
	}
	err = tx.QueryRowContext(ctx, tx.Rebind(q), node).Scan(&setFrom, &set.Epoch, &set.Seq)
	if errors.Is(err, sql.ErrNoRows) {
		return "", set, fmt.Errorf("hierarchy node %q: %w", node, storage.ErrNotFound)
	}
	return setFrom, set, err
}

// ApplyHierarchyTaskSet implements storage.HierarchyStore.
func (s *Store) ApplyHierarchyTaskSet(ctx context.Context, p storage.ApplyHierarchyTaskSetParams) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("sqlstore: apply hierarchy task set: %w", err)
	}
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		from, set, err := s.lockNode(ctx, tx, p.Node)
		if err != nil {
			return err
		}
		if from != "" && !p.Version.Newer(set) {
			return fmt.Errorf("task set %v is not newer than %v: %w", p.Version, set, storage.ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE hierarchy_nodes SET set_from = ?, set_epoch = ?, set_seq = ? WHERE node = ?`), p.From, p.Version.Epoch, p.Version.Seq, p.Node); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM hierarchy_copies WHERE node = ?`), p.Node); err != nil {
			return err
		}
		if len(p.Copies) == 0 {
			return nil
		}
		stmt, err := tx.PrepareContext(ctx, tx.Rebind(`INSERT INTO hierarchy_copies (node, task_id, lineage, parent_revision) VALUES (?, ?, ?, ?)`))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, c := range p.Copies {
			lin, err := json.Marshal(c.Lineage)
			if err != nil {
				return err
			}
			if _, err := stmt.ExecContext(ctx, p.Node, c.TaskID, string(lin), c.ParentRevision); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlstore: apply hierarchy task set to %q: %w", p.Node, mapErr(err))
	}
	return nil
}

// ApplyHierarchyReport implements storage.HierarchyStore.
func (s *Store) ApplyHierarchyReport(ctx context.Context, p storage.ApplyHierarchyReportParams) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("sqlstore: apply hierarchy report: %w", err)
	}
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, _, err := s.lockNode(ctx, tx, p.Node); err != nil {
			return err
		}
		var last storage.HierarchyVersion
		err := tx.QueryRowContext(ctx, tx.Rebind(`SELECT epoch, seq FROM hierarchy_reports WHERE node = ? AND child = ?`), p.Node, p.Child).Scan(&last.Epoch, &last.Seq)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case !p.Version.Newer(last):
			return fmt.Errorf("report %v of %q is not newer than %v: %w", p.Version, p.Child, last, storage.ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO hierarchy_reports (node, child, epoch, seq, complete, at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (node, child) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq, complete = excluded.complete, at = excluded.at`), p.Node, p.Child, p.Version.Epoch, p.Version.Seq, p.Complete, s.tv(p.At)); err != nil {
			return err
		}
		if err := s.deleteFigures(ctx, tx, p.Node, p.Delete, nil); err != nil {
			return err
		}
		if len(p.Put) == 0 {
			return nil
		}
		stmt, err := tx.PrepareContext(ctx, tx.Rebind(`INSERT INTO hierarchy_figures (node, task_id, server, role, path, epoch, seq, at, statistics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (node, task_id, server) DO UPDATE SET role = excluded.role, path = excluded.path, epoch = excluded.epoch, seq = excluded.seq, at = excluded.at, statistics = excluded.statistics`))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, f := range p.Put {
			path, err := json.Marshal(f.Path)
			if err != nil {
				return err
			}
			st := string(f.Statistics)
			if st == "" {
				st = "null"
			}
			if _, err := stmt.ExecContext(ctx, p.Node, f.TaskID, f.Server, f.Role, string(path), f.Version.Epoch, f.Version.Seq, s.tv(f.At), st); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlstore: apply report of %q to %q: %w", p.Child, p.Node, mapErr(err))
	}
	return nil
}

func (s *Store) deleteFigures(ctx context.Context, tx *sqlx.Tx, node string, keys []storage.HierarchyFigureKey, n *int) error {
	if len(keys) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, tx.Rebind(`DELETE FROM hierarchy_figures WHERE node = ? AND task_id = ? AND server = ?`))
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, k := range keys {
		res, err := stmt.ExecContext(ctx, node, k.TaskID, k.Server)
		if err != nil {
			return err
		}
		if n != nil {
			d, err := res.RowsAffected()
			if err != nil {
				return err
			}
			*n += int(d)
		}
	}
	return nil
}

// DeleteHierarchyFigures implements storage.HierarchyStore.
func (s *Store) DeleteHierarchyFigures(ctx context.Context, p storage.DeleteHierarchyFiguresParams) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, fmt.Errorf("sqlstore: delete hierarchy figures: %w", err)
	}
	n := 0
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		n = 0
		return s.deleteFigures(ctx, tx, p.Node, p.Keys, &n)
	})
	if err != nil {
		return 0, fmt.Errorf("sqlstore: delete hierarchy figures of %q: %w", p.Node, mapErr(err))
	}
	return n, nil
}

// GetHierarchyState implements storage.HierarchyStore. It reads in one
// transaction, so the state is consistent.
func (s *Store) GetHierarchyState(ctx context.Context, node string) (storage.HierarchyState, error) {
	var out storage.HierarchyState
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		out = storage.HierarchyState{Node: node}
		err := tx.QueryRowContext(ctx, tx.Rebind(`SELECT role, parent, epoch, set_from, set_epoch, set_seq FROM hierarchy_nodes WHERE node = ?`), node).
			Scan(&out.Role, &out.Parent, &out.Epoch, &out.SetFrom, &out.SetVersion.Epoch, &out.SetVersion.Seq)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("hierarchy node %q: %w", node, storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := each(ctx, tx, `SELECT child, role, grp FROM hierarchy_children WHERE node = ? ORDER BY child`, node, func(r *sql.Rows) error {
			var c storage.HierarchyServer
			if err := r.Scan(&c.ID, &c.Role, &c.Group); err != nil {
				return err
			}
			out.Children = append(out.Children, c)
			return nil
		}); err != nil {
			return err
		}
		if err := each(ctx, tx, `SELECT task_id, lineage, parent_revision FROM hierarchy_copies WHERE node = ? ORDER BY task_id`, node, func(r *sql.Rows) error {
			var c storage.HierarchyCopy
			var lin string
			if err := r.Scan(&c.TaskID, &lin, &c.ParentRevision); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(lin), &c.Lineage); err != nil {
				return fmt.Errorf("lineage of copy %q: %w", c.TaskID, err)
			}
			out.Copies = append(out.Copies, c)
			return nil
		}); err != nil {
			return err
		}
		if err := each(ctx, tx, `SELECT child, epoch, seq, complete, at FROM hierarchy_reports WHERE node = ? ORDER BY child`, node, func(r *sql.Rows) error {
			var c storage.HierarchyChildReport
			var at dbTime
			if err := r.Scan(&c.Child, &c.Version.Epoch, &c.Version.Seq, &c.Complete, &at); err != nil {
				return err
			}
			c.At = at.T
			out.Reports = append(out.Reports, c)
			return nil
		}); err != nil {
			return err
		}
		return each(ctx, tx, `SELECT task_id, server, role, path, epoch, seq, at, statistics FROM hierarchy_figures WHERE node = ? ORDER BY task_id, server`, node, func(r *sql.Rows) error {
			var f storage.HierarchyFigure
			var path, st string
			var at dbTime
			if err := r.Scan(&f.TaskID, &f.Server, &f.Role, &path, &f.Version.Epoch, &f.Version.Seq, &at, &st); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(path), &f.Path); err != nil {
				return fmt.Errorf("path of figure %q/%q: %w", f.TaskID, f.Server, err)
			}
			f.At = at.T
			if st != "null" {
				f.Statistics = json.RawMessage(st)
			}
			out.Figures = append(out.Figures, f)
			return nil
		})
	})
	if err != nil {
		return storage.HierarchyState{}, fmt.Errorf("sqlstore: hierarchy state of %q: %w", node, mapErr(err))
	}
	return out, nil
}

func each(ctx context.Context, tx *sqlx.Tx, q, node string, fn func(*sql.Rows) error) error {
	rows, err := tx.QueryContext(ctx, tx.Rebind(q), node)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
