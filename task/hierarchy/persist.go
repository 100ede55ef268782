package hierarchy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
)

// Open returns a Node whose hierarchy state is durable in cfg.Store
// (required here): it loads what the server kept before a restart (the
// figures of every server below it, the last report applied from each
// child, the last task set applied), so it serves the same figures at
// once, and it writes every change through before applying it in memory.
// Its epoch is later than the stored one even if the clock went back, so
// its reports stay newer than those of its previous start.
//
// Errors: as New; a ValidationError when cfg.Store is nil; the store's
// errors (ErrRetryable and ErrClosed among them).
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Store == nil {
		return nil, errs.Invalid("store", "", "is required by Open (use New for a Node kept in memory)")
	}
	n, err := newNode(cfg)
	if err != nil {
		return nil, err
	}
	st, err := cfg.Store.GetHierarchyState(ctx, cfg.ID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("hierarchy: load the state of %q: %w", cfg.ID, err)
	default:
		if err := n.deleteFigures(ctx, n.restore(st)); err != nil {
			return nil, err
		}
	}
	if st.Epoch >= n.epoch {
		n.epoch = st.Epoch + 1
	}
	p := storage.PutHierarchyNodeParams{Node: cfg.ID, Role: string(cfg.Role), Parent: cfg.Parent, Epoch: n.epoch}
	for _, c := range cfg.Children {
		p.Children = append(p.Children, storage.HierarchyServer{ID: c.ID, Role: string(c.Role), Group: string(c.Group)})
	}
	if err := cfg.Store.PutHierarchyNode(ctx, p); err != nil {
		return nil, fmt.Errorf("hierarchy: store the node %q: %w", cfg.ID, err)
	}
	return n, nil
}

// restore loads a stored state. What concerns a former parent is left
// out; the figures that came through a server no longer a child (or that
// cannot be read) are returned, for Open to delete.
func (n *Node) restore(st storage.HierarchyState) (drop []storage.HierarchyFigureKey) {
	if st.SetFrom != "" && st.SetFrom == n.cfg.Parent {
		v := Version(st.SetVersion)
		n.lastSet = &v
	}
	for _, r := range st.Reports {
		if _, ok := n.child(r.Child); ok {
			n.last[r.Child] = childReport{version: Version(r.Version), complete: r.Complete, at: r.At}
		}
	}
	for _, f := range st.Figures {
		var s task.Statistics
		_, child := n.child(firstOf(f.Path))
		if !child || (len(f.Statistics) > 0 && json.Unmarshal(f.Statistics, &s) != nil) {
			drop = append(drop, storage.HierarchyFigureKey{TaskID: f.TaskID, Server: f.Server})
			continue // the next report of a current child brings it again
		}
		byServer := n.stat[f.TaskID]
		if byServer == nil {
			byServer = map[string]TaskStatistics{}
			n.stat[f.TaskID] = byServer
		}
		byServer[f.Server] = TaskStatistics{
			TaskID: f.TaskID, Server: f.Server, Role: scope.ServerRole(f.Role), Path: f.Path,
			Version: Version(f.Version), At: f.At, Statistics: s,
		}
	}
	return drop
}

func firstOf(path []string) string {
	if len(path) == 0 {
		return ""
	}
	return path[0]
}

func figureOf(e TaskStatistics) (storage.HierarchyFigure, error) {
	b, err := json.Marshal(e.Statistics)
	if err != nil {
		return storage.HierarchyFigure{}, err
	}
	return storage.HierarchyFigure{
		TaskID: e.TaskID, Server: e.Server, Role: string(e.Role), Path: slices.Clone(e.Path),
		Version: storage.HierarchyVersion(e.Version), At: e.At.UTC().Truncate(time.Microsecond), Statistics: b,
	}, nil
}

// persistCopies records an applied task set and the copies it left.
func (n *Node) persistCopies(ctx context.Context, m TaskSet) error {
	if n.cfg.Store == nil {
		return nil
	}
	all, err := n.allTasks(ctx)
	if err != nil {
		return err
	}
	p := storage.ApplyHierarchyTaskSetParams{Node: n.cfg.ID, From: m.From, Version: storage.HierarchyVersion(m.Version)}
	for _, t := range all {
		hops := lineage(t)
		if len(hops) == 0 || hops[0].Server != m.From {
			continue
		}
		c := storage.HierarchyCopy{TaskID: t.ID, ParentRevision: parentRevision(t)}
		for _, h := range hops {
			c.Lineage = append(c.Lineage, storage.HierarchyHop(h))
		}
		p.Copies = append(p.Copies, c)
	}
	if err := n.cfg.Store.ApplyHierarchyTaskSet(ctx, p); err != nil && !errors.Is(err, storage.ErrConflict) {
		return fmt.Errorf("hierarchy: store the task set applied on %q: %w", n.cfg.ID, err)
	}
	return nil
}

// deleteFigures removes figures from the store (the caller drops them in
// memory).
func (n *Node) deleteFigures(ctx context.Context, keys []storage.HierarchyFigureKey) error {
	if n.cfg.Store == nil || len(keys) == 0 {
		return nil
	}
	for len(keys) > 0 {
		k := min(len(keys), storage.MaxHierarchyBatch)
		if _, err := n.cfg.Store.DeleteHierarchyFigures(ctx, storage.DeleteHierarchyFiguresParams{Node: n.cfg.ID, Keys: keys[:k]}); err != nil {
			return fmt.Errorf("hierarchy: delete figures on %q: %w", n.cfg.ID, err)
		}
		keys = keys[k:]
	}
	return nil
}

// parentRevision is the parent's revision an inherited copy copies (the
// "@<revision>" of its UpdatedBy, or of its CreatedBy before any update).
func parentRevision(t *task.Task) int64 {
	for _, by := range []string{t.UpdatedBy, t.CreatedBy} {
		if !strings.HasPrefix(by, inheritPrefix) {
			continue
		}
		if i := strings.LastIndexByte(by, '@'); i >= 0 {
			if r, err := strconv.ParseInt(by[i+1:], 10, 64); err == nil {
				return r
			}
		}
	}
	return 0
}
