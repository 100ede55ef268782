package hierarchy

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
)

// Errors, shared with every taskfleet package.
var (
	ErrInvalid  = errs.ErrInvalid
	ErrNotFound = errs.ErrNotFound
)

// ValidationError and ValidationErrors are the shared validation types.
type (
	ValidationError  = errs.ValidationError
	ValidationErrors = errs.ValidationErrors
)

// Child is a secondary or virtual server deployed under this server.
type Child struct {
	ID   string
	Role scope.ServerRole // Secondary or Virtual
	// Group is the administration group of THIS server in which the child
	// is deployed.
	Group scope.GroupID
}

// Config configures a Node.
type Config struct {
	// ID names this server in the hierarchy. Required.
	ID string
	// Role is this server's role (Primary, Secondary or Virtual).
	Role scope.ServerRole
	// Manager is this server's task manager. Required.
	Manager *task.Manager
	// Inventory is this server's inventory (group ancestry). Required.
	Inventory scope.Inventory
	// Root is the group of this server's own tree where inherited tasks
	// are placed (its managed devices). Required for secondary and
	// virtual servers.
	Root scope.GroupID
	// Parent is the server this one inherits from ("" for the primary).
	Parent string
	// Children are the secondary and virtual servers under this one.
	Children []Child
	// Link connects the servers. Required.
	Link Link
}

// Link carries inherited tasks down and statistics up the hierarchy.
type Link interface {
	// SendTasks replaces the set of tasks server to inherits from server
	// from (an empty set withdraws every inherited task).
	SendTasks(ctx context.Context, from, to string, tasks []task.Task) error
	// SendStatistics reports the child's statistics of inherited tasks to
	// its parent.
	SendStatistics(ctx context.Context, from, to string, stats []TaskStatistics) error
}

// TaskStatistics are the results of one inherited task on one server.
type TaskStatistics struct {
	// TaskID is the parent's task id.
	TaskID string
	// Server and Role name the reporting server.
	Server     string
	Role       scope.ServerRole
	Statistics task.Statistics
}

// View is a task as a server shows it.
type View struct {
	Task *task.Task
	// Inherited is true for a copy of a parent's task (read-only here).
	Inherited bool
	// From is the server the task is inherited from; ParentTaskID its id
	// there.
	From         string
	ParentTaskID string
}

// inheritPrefix marks an inherited copy: it is created and updated by the
// actor "inherited:<from>/<parent task id>@<parent revision>", so its
// CreatedBy links it to the parent's task and its UpdatedBy says which
// revision it copies, across restarts.
const inheritPrefix = "inherited:"

func inheritActor(from, parentTask string, rev int64) task.Actor {
	return task.Actor{ID: fmt.Sprintf("%s%s/%s@%d", inheritPrefix, from, parentTask, rev)}
}

// origin parses an inherited copy's CreatedBy.
func origin(t *task.Task) (from, parentTask string, ok bool) {
	return parseActor(t.CreatedBy)
}

func parseActor(id string) (from, parentTask string, ok bool) {
	rest, ok := strings.CutPrefix(id, inheritPrefix)
	if !ok {
		return "", "", false
	}
	rest, _, _ = strings.Cut(rest, "@")
	from, parentTask, ok = strings.Cut(rest, "/")
	return from, parentTask, ok
}

// ReadOnly wraps an Authorizer so inherited copies can be modified or
// deleted only by the Node that keeps them in sync.
func ReadOnly(next task.Authorizer) task.Authorizer {
	if next == nil {
		next = task.AllowAll{}
	}
	return readOnly{next}
}

type readOnly struct{ next task.Authorizer }

func (r readOnly) Authorize(ctx context.Context, a task.Actor, op task.Operation, t *task.Task) error {
	if t != nil && (op == task.OpModify || op == task.OpDelete) {
		from, id, ok := origin(t)
		if af, aid, aok := parseActor(a.ID); ok && (!aok || af != from || aid != id) {
			return fmt.Errorf("task %q is inherited from Administration Server %q and read-only here: %w", t.ID, from, task.ErrPermission)
		}
	}
	return r.next.Authorize(ctx, a, op, t)
}

// Node is one Administration Server's side of the hierarchy.
type Node struct {
	cfg  Config
	mu   sync.Mutex
	stat map[string]map[string]TaskStatistics // parent task id -> child server -> statistics
}

// New returns a Node.
func New(cfg Config) (*Node, error) {
	var bad errs.ValidationErrors
	if cfg.ID == "" {
		bad = append(bad, errs.Invalid("id", "", "is required"))
	}
	switch cfg.Role {
	case scope.Primary:
	case scope.Secondary, scope.Virtual:
		if cfg.Root == "" {
			bad = append(bad, errs.Invalid("root", "", "is required for a secondary or virtual server"))
		}
		if cfg.Parent == "" {
			bad = append(bad, errs.Invalid("parent", "", "is required for a secondary or virtual server"))
		}
	default:
		bad = append(bad, errs.Invalid("role", string(cfg.Role), `must be "primary", "secondary" or "virtual"`))
	}
	if cfg.Manager == nil {
		bad = append(bad, errs.Invalid("manager", "", "is required"))
	}
	if cfg.Inventory == nil {
		bad = append(bad, errs.Invalid("inventory", "", "is required"))
	}
	if cfg.Link == nil {
		bad = append(bad, errs.Invalid("link", "", "is required"))
	}
	for i, c := range cfg.Children {
		p := fmt.Sprintf("children[%d]", i)
		if c.ID == "" || c.ID == cfg.ID {
			bad = append(bad, errs.Invalid(p+".id", c.ID, "must be a server id other than this server's"))
		}
		if c.Role != scope.Secondary && c.Role != scope.Virtual {
			bad = append(bad, errs.Invalid(p+".role", string(c.Role), `must be "secondary" or "virtual"`))
		}
		if c.Group == "" {
			bad = append(bad, errs.Invalid(p+".group", "", "is required"))
		}
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	return &Node{cfg: cfg, stat: map[string]map[string]TaskStatistics{}}, nil
}

// ID returns the server id.
func (n *Node) ID() string { return n.cfg.ID }

// allTasks lists every task of the server's Manager.
func (n *Node) allTasks(ctx context.Context) ([]*task.Task, error) {
	var out []*task.Task
	p := task.ListParams{Order: storage.OrderByID, Limit: 1000}
	for {
		page, err := n.cfg.Manager.List(ctx, task.System, p)
		if err != nil {
			return nil, err
		}
		for _, app := range page.Applications {
			out = append(out, app.Tasks...)
		}
		if page.Next == "" {
			return out, nil
		}
		p.After = page.Next
	}
}

// ancestors returns g and its ancestors in this server's tree.
func (n *Node) ancestors(ctx context.Context, g scope.GroupID) ([]scope.GroupID, error) {
	var out []scope.GroupID
	for g != "" && len(out) < 1000 {
		out = append(out, g)
		grp, err := n.cfg.Inventory.Group(ctx, g)
		if err != nil {
			return nil, fmt.Errorf("hierarchy: group %q: %w", g, err)
		}
		g = grp.Parent
	}
	return out, nil
}

// Inherits reports whether child c inherits task t: a group task
// distributed to servers whose group is the child's group or, unless the
// task is for its group only, an ancestor of it.
func (n *Node) inherits(ctx context.Context, t *task.Task, c Child) (bool, error) {
	if t.Scope.Kind != scope.Group || !t.Scope.DistributeToServers {
		return false, nil
	}
	if t.Scope.Group == c.Group {
		return true, nil
	}
	if t.Scope.GroupOnly {
		return false, nil
	}
	anc, err := n.ancestors(ctx, c.Group)
	if err != nil {
		return false, err
	}
	for _, g := range anc {
		if slices.Contains(t.Scope.ExcludedGroups, g) {
			return false, nil
		}
	}
	return slices.Contains(anc, t.Scope.Group), nil
}

// Distribute sends every child the tasks it inherits from this server
// (the complete set each time: added, changed and withdrawn tasks).
func (n *Node) Distribute(ctx context.Context) error {
	all, err := n.allTasks(ctx)
	if err != nil {
		return fmt.Errorf("hierarchy: list tasks: %w", err)
	}
	for _, c := range n.cfg.Children {
		var send []task.Task
		for _, t := range all {
			ok, err := n.inherits(ctx, t, c)
			if err != nil {
				return err
			}
			if ok {
				send = append(send, *t)
			}
		}
		if err := n.cfg.Link.SendTasks(ctx, n.cfg.ID, c.ID, send); err != nil {
			return fmt.Errorf("hierarchy: send tasks to %q: %w", c.ID, err)
		}
	}
	return nil
}

// copyOf is the local copy of a parent's task: same type, settings and
// schedule, scoped to this server's root group (distribution to this
// server's own children kept).
func (n *Node) copyOf(from string, pt task.Task, cur *task.Task) task.Task {
	c := pt
	c.ID, c.Revision, c.SettingsRevision = "", 0, 0
	if cur != nil {
		c.ID, c.Revision = cur.ID, cur.Revision
	}
	c.Name = fmt.Sprintf("%s (%s)", pt.Name, from)
	c.Scope = scope.Scope{Kind: scope.Group, Group: n.cfg.Root, DistributeToServers: pt.Scope.DistributeToServers}
	c.Security = task.Security{}
	return c
}

// ReceiveTasks is the child side of Link.SendTasks: the copies of the
// parent's tasks are created, updated (when the parent's revision
// changed) or deleted so they match tasks.
func (n *Node) ReceiveTasks(ctx context.Context, from string, tasks []task.Task) error {
	if from != n.cfg.Parent {
		return errs.Invalid("from", from, fmt.Sprintf("must be this server's parent %q", n.cfg.Parent))
	}
	all, err := n.allTasks(ctx)
	if err != nil {
		return fmt.Errorf("hierarchy: list tasks: %w", err)
	}
	have := map[string]*task.Task{}
	for _, t := range all {
		if f, id, ok := origin(t); ok && f == from {
			have[id] = t
		}
	}
	want := map[string]bool{}
	for _, pt := range tasks {
		want[pt.ID] = true
		actor := inheritActor(from, pt.ID, pt.Revision)
		cur := have[pt.ID]
		if cur == nil {
			if _, err := n.cfg.Manager.Create(ctx, actor, n.copyOf(from, pt, nil)); err != nil {
				return fmt.Errorf("hierarchy: inherit %q: %w", pt.ID, err)
			}
			continue
		}
		if cur.UpdatedBy == actor.ID {
			continue // copies this revision already
		}
		c := n.copyOf(from, pt, cur)
		if _, err := n.cfg.Manager.Update(ctx, actor, c); err != nil {
			return fmt.Errorf("hierarchy: update inherited %q: %w", pt.ID, err)
		}
	}
	for id, t := range have {
		if !want[id] {
			if err := n.cfg.Manager.Delete(ctx, inheritActor(from, id, 0), t.ID, 0); err != nil {
				return fmt.Errorf("hierarchy: withdraw inherited %q: %w", id, err)
			}
		}
	}
	return nil
}

// Tasks lists this server's tasks, inherited copies marked.
func (n *Node) Tasks(ctx context.Context) ([]View, error) {
	all, err := n.allTasks(ctx)
	if err != nil {
		return nil, fmt.Errorf("hierarchy: list tasks: %w", err)
	}
	out := make([]View, 0, len(all))
	for _, t := range all {
		v := View{Task: t}
		v.From, v.ParentTaskID, v.Inherited = origin(t)
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Task.ID < out[j].Task.ID })
	return out, nil
}

// Report sends the statistics of every inherited copy to the parent.
func (n *Node) Report(ctx context.Context) error {
	if n.cfg.Parent == "" {
		return nil
	}
	all, err := n.allTasks(ctx)
	if err != nil {
		return fmt.Errorf("hierarchy: list tasks: %w", err)
	}
	var stats []TaskStatistics
	for _, t := range all {
		from, id, ok := origin(t)
		if !ok || from != n.cfg.Parent {
			continue
		}
		st, err := n.cfg.Manager.Statistics(ctx, task.System, t.ID)
		if err != nil {
			return fmt.Errorf("hierarchy: statistics of %q: %w", t.ID, err)
		}
		stats = append(stats, TaskStatistics{TaskID: id, Server: n.cfg.ID, Role: n.cfg.Role, Statistics: st})
	}
	sort.Slice(stats, func(i, j int) bool { return stats[i].TaskID < stats[j].TaskID })
	return n.cfg.Link.SendStatistics(ctx, n.cfg.ID, n.cfg.Parent, stats)
}

// ReceiveStatistics is the parent side of Link.SendStatistics: the child's
// figures replace its previous report.
func (n *Node) ReceiveStatistics(_ context.Context, from string, stats []TaskStatistics) error {
	if !slices.ContainsFunc(n.cfg.Children, func(c Child) bool { return c.ID == from }) {
		return errs.Invalid("from", from, "must be one of this server's children")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, byServer := range n.stat {
		delete(byServer, from)
	}
	for _, s := range stats {
		if n.stat[s.TaskID] == nil {
			n.stat[s.TaskID] = map[string]TaskStatistics{}
		}
		s.Server = from
		n.stat[s.TaskID][from] = s
	}
	return nil
}

// SecondaryServers lists the child servers that reported results of task
// id, in id order.
func (n *Node) SecondaryServers(id string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for s := range n.stat[id] {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// SecondaryStatistics is "Statistics from secondary Servers": the results
// of task id on child server server, as last reported; ErrNotFound when
// that server has not reported the task.
func (n *Node) SecondaryStatistics(id, server string) (TaskStatistics, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.stat[id][server]
	if !ok {
		return TaskStatistics{}, fmt.Errorf("hierarchy: no statistics of task %q from server %q: %w", id, server, ErrNotFound)
	}
	return s, nil
}

// RolledUp returns task id's statistics on this server plus those every
// child server reported.
func (n *Node) RolledUp(ctx context.Context, id string) (task.Statistics, error) {
	own, err := n.cfg.Manager.Statistics(ctx, task.System, id)
	if err != nil {
		return task.Statistics{}, err
	}
	sum := task.Statistics{ByState: map[task.State]int{}}
	add := func(s task.Statistics) {
		for k, v := range s.ByState {
			sum.ByState[k] += v
		}
		sum.Total += s.Total
		sum.Finished += s.Finished
		sum.RestartRequired += s.RestartRequired
	}
	add(own)
	n.mu.Lock()
	for _, s := range n.stat[id] {
		add(s.Statistics)
	}
	n.mu.Unlock()
	if sum.Total > 0 {
		sum.PercentComplete = float64(sum.Finished) * 100 / float64(sum.Total)
	}
	return sum, nil
}
