package hierarchy

import (
	"context"
	"fmt"
	"sync"
)

// InProc is a Link between Nodes of one process (tests, simulations). It
// delivers each message synchronously by calling the receiving Node.
// Register every Node before use; Disconnect and Reconnect simulate a link
// between two servers going down and coming back.
type InProc struct {
	mu    sync.RWMutex
	nodes map[string]*Node
	down  map[[2]string]bool
}

var _ Link = (*InProc)(nil)

// NewInProc returns an empty in-process link.
func NewInProc() *InProc {
	return &InProc{nodes: map[string]*Node{}, down: map[[2]string]bool{}}
}

// Register makes n reachable under its id, replacing an earlier Node with
// that id (a restarted server).
func (l *InProc) Register(n *Node) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodes[n.ID()] = n
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// Disconnect takes the link between servers a and b down: messages
// between them fail with ErrUnreachable until Reconnect.
func (l *InProc) Disconnect(a, b string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down[pair(a, b)] = true
}

// Reconnect brings the link between servers a and b back up.
func (l *InProc) Reconnect(a, b string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.down, pair(a, b))
}

func (l *InProc) route(from, to string) (*Node, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.down[pair(from, to)] {
		return nil, fmt.Errorf("hierarchy: link %q - %q is down: %w", from, to, ErrUnreachable)
	}
	n := l.nodes[to]
	if n == nil {
		return nil, &UnknownServerError{Server: to, As: "registered"}
	}
	return n, nil
}

// SendTasks implements Link.
func (l *InProc) SendTasks(ctx context.Context, m TaskSet) error {
	n, err := l.route(m.From, m.To)
	if err != nil {
		return err
	}
	return n.ReceiveTasks(ctx, m)
}

// SendReport implements Link.
func (l *InProc) SendReport(ctx context.Context, r Report) error {
	n, err := l.route(r.From, r.To)
	if err != nil {
		return err
	}
	return n.ReceiveReport(ctx, r)
}

var _ ResultsFetcher = (*InProc)(nil)

// FetchResults implements ResultsFetcher.
func (l *InProc) FetchResults(ctx context.Context, q ResultsQuery) (ResultsPage, error) {
	n, err := l.route(q.From, q.To)
	if err != nil {
		return ResultsPage{}, err
	}
	return n.ServeResults(ctx, q)
}
