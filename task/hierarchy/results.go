package hierarchy

import (
	"context"
	"fmt"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
)

// ResultsFetcher is an optional interface of a Link that carries requests
// for per-device results down the hierarchy: FetchResults delivers q to
// Node.ServeResults of the server q.To and returns its answer. Without it
// Node.DeviceResults fails with ErrInvalid.
type ResultsFetcher interface {
	// FetchResults delivers q to q.To and returns its page or its error.
	FetchResults(ctx context.Context, q ResultsQuery) (ResultsPage, error)
}

// ResultsQuery asks a child for one page of the per-device results of a
// task on a server at or below it.
type ResultsQuery struct {
	// From is the asking server (the receiver's parent).
	From string
	// To is the child asked.
	To string
	// TaskID is the task id on From.
	TaskID string
	// Server is the server whose devices are listed: To or a server
	// below it.
	Server string
	// States keeps only these states (all when empty).
	States []task.State
	// After is the last device of the previous page.
	After scope.DeviceID
	// Limit is the page size (0: 100, at most storage.MaxListLimit).
	Limit int
}

// ResultsPage is one page of per-device results.
type ResultsPage struct {
	// Server is the server whose devices these are.
	Server string `json:"server"`
	// Results are in device id order; their TaskID is the task id on the
	// server that asked.
	Results []task.Result `json:"results"`
	// Next is the After of the next page ("" on the last page).
	Next scope.DeviceID `json:"next,omitempty"`
}

// DeviceResultsParams are the arguments of Node.DeviceResults.
type DeviceResultsParams struct {
	// TaskID is the task id on this server.
	TaskID string
	// Server is the server below this one whose devices are listed.
	Server string
	// States keeps only these states (all when empty).
	States []task.State
	// After is the Next of the previous page.
	After scope.DeviceID
	// Limit is the page size (0: 100, at most storage.MaxListLimit).
	Limit int
}

func checkPage(states []task.State, limit int) error {
	var bad errs.ValidationErrors
	if limit < 0 || limit > storage.MaxListLimit {
		bad = append(bad, errs.Range("limit", limit, 0, storage.MaxListLimit))
	}
	if len(states) > 32 {
		bad = append(bad, errs.Invalid("states", fmt.Sprint(len(states)), "must hold at most 32 states"))
	} else {
		for i, s := range states {
			if !s.Valid() {
				bad = append(bad, errs.Invalid(fmt.Sprintf("states[%d]", i), string(s), "is not a result state"))
			}
		}
	}
	return bad.Err()
}

// DeviceResults pages through the per-device results of task p.TaskID on
// server p.Server (any level below this one), filtered by state, fetched
// on demand through the Link from that server (relayed by the servers in
// between), never copied wholesale.
//
// Errors: ValidationErrors for a bad page; an *UnknownServerError
// (ErrNotFound) when p.Server has not reported the task to this server;
// ErrInvalid when the Link is not a ResultsFetcher; the Link's
// (ErrUnreachable) and the server's errors.
func (n *Node) DeviceResults(ctx context.Context, p DeviceResultsParams) (ResultsPage, error) {
	if err := checkPage(p.States, p.Limit); err != nil {
		return ResultsPage{}, err
	}
	path, err := n.pathTo(p.TaskID, p.Server)
	if err != nil {
		return ResultsPage{}, err
	}
	f, ok := n.cfg.Link.(ResultsFetcher)
	if !ok {
		return ResultsPage{}, errs.Invalid("link", fmt.Sprintf("%T", n.cfg.Link), "cannot fetch per-device results (not a ResultsFetcher)")
	}
	q := ResultsQuery{From: n.cfg.ID, To: path[0], TaskID: p.TaskID, Server: p.Server, States: p.States, After: p.After, Limit: p.Limit}
	page, err := f.FetchResults(ctx, q)
	if err != nil {
		return ResultsPage{}, fmt.Errorf("hierarchy: results of task %q on %q: %w", p.TaskID, p.Server, err)
	}
	return page, nil
}

// pathTo returns the path from this server's child to server, as the
// figures of task id hold it.
func (n *Node) pathTo(id, server string) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.stat[id][server]
	if !ok {
		return nil, &UnknownServerError{Server: server, At: n.cfg.ID, As: fmt.Sprintf("reporting server of task %q below", id)}
	}
	return append([]string(nil), e.Path...), nil
}

// ServeResults is the child side of ResultsFetcher.FetchResults: it lists
// the results of its copy of the parent's task q.TaskID on its own devices
// when q.Server is this server, or relays the query to the child on the
// way to q.Server. A server answers only its parent, and only about its
// copy of the parent's task, so no server can read another's tasks.
//
// Errors: *UnknownServerError when q.From is not this server's parent or
// q.Server is not below it; ErrNotFound when it has no copy of the task;
// ValidationErrors for a bad page.
func (n *Node) ServeResults(ctx context.Context, q ResultsQuery) (ResultsPage, error) {
	if q.To != "" && q.To != n.cfg.ID {
		return ResultsPage{}, errs.Invalid("to", q.To, fmt.Sprintf("must be this server %q", n.cfg.ID))
	}
	if n.cfg.Parent == "" || q.From != n.cfg.Parent {
		return ResultsPage{}, &UnknownServerError{Server: q.From, At: n.cfg.ID, As: "parent"}
	}
	if err := checkPage(q.States, q.Limit); err != nil {
		return ResultsPage{}, err
	}
	local, err := n.copyOfParentTask(ctx, q.TaskID)
	if err != nil {
		return ResultsPage{}, err
	}
	if q.Server != n.cfg.ID {
		path, err := n.pathTo(local, q.Server)
		if err != nil {
			return ResultsPage{}, err
		}
		f, ok := n.cfg.Link.(ResultsFetcher)
		if !ok {
			return ResultsPage{}, errs.Invalid("link", fmt.Sprintf("%T", n.cfg.Link), "cannot fetch per-device results (not a ResultsFetcher)")
		}
		page, err := f.FetchResults(ctx, ResultsQuery{From: n.cfg.ID, To: path[0], TaskID: local, Server: q.Server, States: q.States, After: q.After, Limit: q.Limit})
		if err != nil {
			return ResultsPage{}, err
		}
		for i := range page.Results {
			page.Results[i].TaskID = q.TaskID
		}
		return page, nil
	}
	limit := q.Limit
	if limit == 0 {
		limit = storage.DefaultListLimit
	}
	rs, err := n.cfg.Manager.Results(ctx, task.System, local, task.ResultsParams{States: q.States, After: q.After, Limit: limit})
	if err != nil {
		return ResultsPage{}, err
	}
	page := ResultsPage{Server: n.cfg.ID, Results: rs}
	for i := range page.Results {
		page.Results[i].TaskID = q.TaskID
	}
	if len(rs) == limit {
		page.Next = rs[len(rs)-1].DeviceID
	}
	return page, nil
}

// copyOfParentTask returns the id of this server's copy of the parent's
// task id.
func (n *Node) copyOfParentTask(ctx context.Context, id string) (string, error) {
	all, err := n.allTasks(ctx)
	if err != nil {
		return "", err
	}
	for _, t := range all {
		if from, pid, ok := origin(t); ok && from == n.cfg.Parent && pid == id {
			return t.ID, nil
		}
	}
	return "", fmt.Errorf("hierarchy: %q has no copy of task %q of %q: %w", n.cfg.ID, id, n.cfg.Parent, ErrNotFound)
}
