package memstore

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/taskfleet/taskfleet/storage"
)

var _ storage.HierarchyStore = (*Store)(nil)

// hierNode is one Node's hierarchy state.
type hierNode struct {
	state   storage.HierarchyState // Node, Role, Parent, Epoch, Children, SetFrom, SetVersion
	copies  []storage.HierarchyCopy
	reports map[string]storage.HierarchyChildReport
	figures map[storage.HierarchyFigureKey]storage.HierarchyFigure
}

func cloneFigure(f storage.HierarchyFigure) storage.HierarchyFigure {
	f.Path = slices.Clone(f.Path)
	f.Statistics = slices.Clone(f.Statistics)
	f.At = storage.UTC(f.At)
	return f
}

func cloneCopies(cs []storage.HierarchyCopy) []storage.HierarchyCopy {
	out := make([]storage.HierarchyCopy, len(cs))
	for i, c := range cs {
		c.Lineage = slices.Clone(c.Lineage)
		out[i] = c
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TaskID < out[j].TaskID })
	return out
}

// PutHierarchyNode implements storage.HierarchyStore.
func (s *Store) PutHierarchyNode(ctx context.Context, p storage.PutHierarchyNodeParams) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("memstore: put hierarchy node: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed()
	}
	if s.hier == nil {
		s.hier = map[string]*hierNode{}
	}
	n := s.hier[p.Node]
	if n == nil {
		n = &hierNode{reports: map[string]storage.HierarchyChildReport{}, figures: map[storage.HierarchyFigureKey]storage.HierarchyFigure{}}
		s.hier[p.Node] = n
	}
	n.state.Node, n.state.Role, n.state.Parent, n.state.Epoch = p.Node, p.Role, p.Parent, p.Epoch
	n.state.Children = slices.Clone(p.Children)
	sort.Slice(n.state.Children, func(i, j int) bool { return n.state.Children[i].ID < n.state.Children[j].ID })
	return nil
}

// GetHierarchyState implements storage.HierarchyStore.
func (s *Store) GetHierarchyState(ctx context.Context, node string) (storage.HierarchyState, error) {
	if err := s.read(); err != nil {
		return storage.HierarchyState{}, err
	}
	defer s.mu.RUnlock()
	n := s.hier[node]
	if n == nil {
		return storage.HierarchyState{}, fmt.Errorf("memstore: hierarchy node %q: %w", node, storage.ErrNotFound)
	}
	out := n.state
	out.Children = slices.Clone(n.state.Children)
	out.Copies = cloneCopies(n.copies)
	for _, r := range n.reports {
		out.Reports = append(out.Reports, r)
	}
	sort.Slice(out.Reports, func(i, j int) bool { return out.Reports[i].Child < out.Reports[j].Child })
	for _, f := range n.figures {
		out.Figures = append(out.Figures, cloneFigure(f))
	}
	sort.Slice(out.Figures, func(i, j int) bool {
		a, b := out.Figures[i], out.Figures[j]
		if c := strings.Compare(a.TaskID, b.TaskID); c != 0 {
			return c < 0
		}
		return a.Server < b.Server
	})
	return out, nil
}

func (s *Store) hierNode(op, node string) (*hierNode, error) {
	if s.closed {
		return nil, errClosed()
	}
	n := s.hier[node]
	if n == nil {
		return nil, fmt.Errorf("memstore: %s: hierarchy node %q: %w", op, node, storage.ErrNotFound)
	}
	return n, nil
}

// ApplyHierarchyTaskSet implements storage.HierarchyStore.
func (s *Store) ApplyHierarchyTaskSet(ctx context.Context, p storage.ApplyHierarchyTaskSetParams) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("memstore: apply hierarchy task set: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.hierNode("apply hierarchy task set", p.Node)
	if err != nil {
		return err
	}
	if n.state.SetFrom != "" && !p.Version.Newer(n.state.SetVersion) {
		return fmt.Errorf("memstore: task set %v for %q is not newer than %v: %w", p.Version, p.Node, n.state.SetVersion, storage.ErrConflict)
	}
	n.state.SetFrom, n.state.SetVersion = p.From, p.Version
	n.copies = cloneCopies(p.Copies)
	return nil
}

// ApplyHierarchyReport implements storage.HierarchyStore.
func (s *Store) ApplyHierarchyReport(ctx context.Context, p storage.ApplyHierarchyReportParams) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("memstore: apply hierarchy report: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.hierNode("apply hierarchy report", p.Node)
	if err != nil {
		return err
	}
	if last, ok := n.reports[p.Child]; ok && !p.Version.Newer(last.Version) {
		return fmt.Errorf("memstore: report %v of %q to %q is not newer than %v: %w", p.Version, p.Child, p.Node, last.Version, storage.ErrConflict)
	}
	n.reports[p.Child] = storage.HierarchyChildReport{Child: p.Child, Version: p.Version, Complete: p.Complete, At: storage.UTC(p.At)}
	for _, k := range p.Delete {
		delete(n.figures, k)
	}
	for _, f := range p.Put {
		n.figures[storage.HierarchyFigureKey{TaskID: f.TaskID, Server: f.Server}] = cloneFigure(f)
	}
	return nil
}

// DeleteHierarchyFigures implements storage.HierarchyStore.
func (s *Store) DeleteHierarchyFigures(ctx context.Context, p storage.DeleteHierarchyFiguresParams) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, fmt.Errorf("memstore: delete hierarchy figures: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed()
	}
	n := s.hier[p.Node]
	if n == nil {
		return 0, nil
	}
	k := 0
	for _, key := range p.Keys {
		if _, ok := n.figures[key]; ok {
			delete(n.figures, key)
			k++
		}
	}
	return k, nil
}
