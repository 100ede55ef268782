package hierarchy

import (
	"context"
	"fmt"
	"sync"

	"github.com/taskfleet/taskfleet/task"
)

// InProc is a Link between Nodes of one process. Register every Node
// before use.
type InProc struct {
	mu    sync.RWMutex
	nodes map[string]*Node
}

var _ Link = (*InProc)(nil)

// NewInProc returns an empty in-process link.
func NewInProc() *InProc { return &InProc{nodes: map[string]*Node{}} }

// Register makes n reachable under its id.
func (l *InProc) Register(n *Node) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodes[n.ID()] = n
}

func (l *InProc) node(id string) (*Node, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n := l.nodes[id]
	if n == nil {
		return nil, fmt.Errorf("hierarchy: server %q is not registered: %w", id, ErrNotFound)
	}
	return n, nil
}

// SendTasks implements Link.
func (l *InProc) SendTasks(ctx context.Context, from, to string, tasks []task.Task) error {
	n, err := l.node(to)
	if err != nil {
		return err
	}
	return n.ReceiveTasks(ctx, from, tasks)
}

// SendStatistics implements Link.
func (l *InProc) SendStatistics(ctx context.Context, from, to string, stats []TaskStatistics) error {
	n, err := l.node(to)
	if err != nil {
		return err
	}
	return n.ReceiveStatistics(ctx, from, stats)
}
