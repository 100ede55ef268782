package hierarchy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
)

// MaxDepth is the most Administration Servers a task set, an inherited
// task's lineage or a relayed report may pass through: a longer chain is
// rejected as invalid (a guard beside the cycle checks).
const MaxDepth = 32

// Child is a secondary or virtual server deployed under this server.
type Child struct {
	// ID is the child's server id.
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
	// Store keeps the Node's hierarchy state durable (nil: in memory
	// only). Required by Open, refused by New. Servers sharing one store
	// (a physical server and its virtual servers) keep apart by ID.
	Store storage.HierarchyStore
	// Clock stamps reports (nil: the system clock). The Node's reports are
	// ordered by the clock reading when it was created (its epoch) and a
	// counter, so a restarted server must start at a later clock reading
	// than its previous start.
	Clock clock.Clock
}

// Link carries inherited tasks down and statistics up the hierarchy. An
// implementation delivers each message to Node.ReceiveTasks or
// Node.ReceiveReport of the server named by its To field and returns that
// method's error. It returns an error matching ErrUnreachable (and so
// ErrRetryable) when the other server cannot be reached, and an
// *UnknownServerError when it has no route to it. Every message is a
// complete state, so a Link may drop, repeat or reorder them: the
// receiver ignores stale ones and the next message repairs a lost one.
// It must be safe for concurrent use.
type Link interface {
	// SendTasks delivers the complete set of tasks m.To inherits from
	// m.From (an empty set withdraws every inherited task).
	SendTasks(ctx context.Context, m TaskSet) error
	// SendReport delivers a child's statistics report to its parent.
	SendReport(ctx context.Context, r Report) error
}

// TaskSet is the complete set of tasks a server inherits from its parent.
type TaskSet struct {
	// From is the parent sending the set.
	From string
	// To is the child receiving it.
	To string
	// Version orders the sets From sends; the receiver ignores a set not
	// newer than the last one it applied (a repeated or late delivery).
	Version Version
	// Path lists the servers the set passed through, from the server
	// where Distribute was called to From (empty means just From). The
	// receiver refuses a set whose Path holds itself (*CycleError).
	Path []string
	// Tasks are the parent's tasks as stored there; an inherited task's
	// CreatedBy carries its lineage further up.
	Tasks []task.Task
}

// Report is a child's statistics for its parent: for every task the child
// inherits from the parent, its own figures and those relayed from its
// subtree.
type Report struct {
	// From is the child sending the report.
	From string
	// To is its parent.
	To string
	// Version orders the reports of From; the parent ignores a report
	// not newer than the last one it applied.
	Version Version
	// Complete says Statistics hold From's whole subtree: every server
	// under From has reported since From started. Then the parent drops
	// the figures of servers under From that the report no longer holds
	// (a server removed, a task withdrawn); otherwise it keeps them.
	Complete bool
	// Statistics are the figures, keyed by the parent's task ids.
	Statistics []TaskStatistics
}

// Version orders one server's reports or task sets: Epoch is the
// server's clock in nanoseconds when its Node was created, Seq counts its
// reports (or task sets) since.
type Version struct {
	// Epoch is the server's clock (ns) when its Node was created.
	Epoch int64 `json:"epoch"`
	// Seq counts the server's reports (or task sets) since Epoch.
	Seq int64 `json:"seq"`
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer
// than w.
func (v Version) Compare(w Version) int {
	if c := compareInt(v.Epoch, w.Epoch); c != 0 {
		return c
	}
	return compareInt(v.Seq, w.Seq)
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TaskStatistics are the results of one inherited task on one server.
type TaskStatistics struct {
	// TaskID is the task id on the server that holds these figures (in a
	// Report: on the parent).
	TaskID string
	// Server is the server whose devices the figures count.
	Server string
	// Role is Server's role.
	Role scope.ServerRole
	// Path lists the servers from the holder's child down to Server:
	// Path[0] is the child that reported or relayed the figures, the last
	// element is Server.
	Path []string
	// Version is Server's report that read the figures; At is Server's
	// clock then.
	Version Version
	// At is Server's clock when it read the figures.
	At time.Time
	// Statistics are the counts of Server's own devices.
	Statistics task.Statistics
}

// View is a task as a server shows it.
type View struct {
	// Task is the task as stored on this server.
	Task *task.Task
	// Inherited is true for a copy of a parent's task (read-only here).
	Inherited bool
	// From is the server the task is inherited from.
	From string
	// ParentTaskID is the task's id on From.
	ParentTaskID string
	// Lineage lists the task on every server above this one, from the
	// parent (Lineage[0] is From/ParentTaskID) to the origin, the server
	// where the task was created (the last hop).
	Lineage []Hop
}

// Origin returns the server where an inherited task was created and its
// id there (zero for a task of this server's own).
func (v View) Origin() Hop {
	if len(v.Lineage) == 0 {
		return Hop{}
	}
	return v.Lineage[len(v.Lineage)-1]
}

// Node is one Administration Server's side of the hierarchy. Its methods
// are safe for concurrent use.
type Node struct {
	cfg   Config
	clk   clock.Clock
	epoch int64

	recv    sync.Mutex // serializes ReceiveTasks' changes to the Manager
	lastSet *Version   // the last task set applied (under recv)
	dist    sync.Mutex // serializes listing tasks for Distribute and numbering the set
	setSeq  int64      // under dist
	rep     sync.Mutex // serializes Report, so versions follow reading order

	mu   sync.Mutex
	seq  int64
	stat map[string]map[string]TaskStatistics // task id -> server -> figures
	last map[string]childReport               // child -> last applied report
}

type childReport struct {
	version  Version
	complete bool
	at       time.Time // this server's clock when it was applied
}

// New returns a Node.
//
// Errors: ValidationErrors naming each bad field; a *CycleError when the
// server is its own parent or its parent is also its child.
func New(cfg Config) (*Node, error) {
	if cfg.Store != nil {
		return nil, errs.Invalid("store", "", "is set: use Open, which loads the durable state")
	}
	return newNode(cfg)
}

func newNode(cfg Config) (*Node, error) {
	var bad errs.ValidationErrors
	if cfg.ID == "" {
		bad = append(bad, errs.Invalid("id", "", "is required"))
	}
	switch cfg.Role {
	case scope.Primary:
		if cfg.Parent != "" {
			bad = append(bad, errs.Invalid("parent", cfg.Parent, "must be empty for the primary server"))
		}
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
	seen := map[string]bool{}
	for i, c := range cfg.Children {
		p := fmt.Sprintf("children[%d]", i)
		switch {
		case c.ID == "" || c.ID == cfg.ID:
			bad = append(bad, errs.Invalid(p+".id", c.ID, "must be a server id other than this server's"))
		case seen[c.ID]:
			bad = append(bad, errs.Invalid(p+".id", c.ID, "must be unique among the children"))
		}
		seen[c.ID] = true
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
	if cfg.Parent == cfg.ID {
		return nil, &CycleError{Path: []string{cfg.ID, cfg.ID}}
	}
	if cfg.Parent != "" && seen[cfg.Parent] {
		return nil, &CycleError{Path: []string{cfg.Parent, cfg.ID, cfg.Parent}}
	}
	clk := cfg.Clock
	if clk == nil {
		clk = clock.New()
	}
	return &Node{
		cfg: cfg, clk: clk, epoch: clk.Now().UnixNano(),
		stat: map[string]map[string]TaskStatistics{}, last: map[string]childReport{},
	}, nil
}

// ID returns the server id.
func (n *Node) ID() string { return n.cfg.ID }

func (n *Node) child(id string) (Child, bool) {
	i := slices.IndexFunc(n.cfg.Children, func(c Child) bool { return c.ID == id })
	if i < 0 {
		return Child{}, false
	}
	return n.cfg.Children[i], true
}

// allTasks lists every task of the server's Manager.
func (n *Node) allTasks(ctx context.Context) ([]*task.Task, error) {
	var out []*task.Task
	p := task.ListParams{Order: storage.OrderByID, Limit: 1000}
	for {
		page, err := n.cfg.Manager.List(ctx, task.System, p)
		if err != nil {
			return nil, fmt.Errorf("hierarchy: list tasks of %q: %w", n.cfg.ID, err)
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

// inherits reports whether a child deployed in anc[0] (anc are that group
// and its ancestors) inherits task t: a group task distributed to servers
// whose group is the child's group or, unless the task is for its group
// only, an ancestor of it, without an excluded group on the way.
func inherits(t *task.Task, anc []scope.GroupID) bool {
	if t.Scope.Kind != scope.Group || !t.Scope.DistributeToServers {
		return false
	}
	if t.Scope.Group == anc[0] {
		return true
	}
	if t.Scope.GroupOnly {
		return false
	}
	for _, g := range anc {
		if slices.Contains(t.Scope.ExcludedGroups, g) {
			return false
		}
	}
	return slices.Contains(anc, t.Scope.Group)
}

// Distribute sends every child the complete set of tasks it inherits from
// this server (added, changed and withdrawn tasks alike); each child
// applies it and passes its inherited copies on to its own children, so
// one call reaches the whole subtree. A child that cannot be reached does
// not stop the others: the errors are joined (ErrUnreachable for a link
// that is down), and the next Distribute, here or on the server below,
// catches up.
func (n *Node) Distribute(ctx context.Context) error {
	return n.distribute(ctx, []string{n.cfg.ID})
}

func (n *Node) distribute(ctx context.Context, path []string) error {
	n.dist.Lock()
	all, err := n.allTasks(ctx)
	if err != nil {
		n.dist.Unlock()
		return err
	}
	n.setSeq++
	version := Version{Epoch: n.epoch, Seq: n.setSeq}
	n.dist.Unlock()
	var failed []error
	if err := n.pruneDeleted(ctx, all); err != nil {
		failed = append(failed, err)
	}
	for _, c := range n.cfg.Children {
		anc, err := n.ancestors(ctx, c.Group)
		if err != nil {
			failed = append(failed, fmt.Errorf("hierarchy: %q deployed in group %q: %w", c.ID, c.Group, err))
			continue
		}
		var send []task.Task
		ids := map[string]bool{}
		for _, t := range all {
			if inherits(t, anc) {
				send = append(send, *t)
				ids[t.ID] = true
			}
		}
		m := TaskSet{From: n.cfg.ID, To: c.ID, Version: version, Path: slices.Clone(path), Tasks: send}
		if err := n.cfg.Link.SendTasks(ctx, m); err != nil {
			failed = append(failed, fmt.Errorf("hierarchy: send tasks from %q to %q: %w", n.cfg.ID, c.ID, err))
			continue
		}
		if err := n.pruneWithdrawn(ctx, c.ID, ids); err != nil {
			failed = append(failed, err)
		}
	}
	return errors.Join(failed...)
}

// checkTaskSet validates a task set before anything changes.
func (n *Node) checkTaskSet(m TaskSet) error {
	if m.To != "" && m.To != n.cfg.ID {
		return errs.Invalid("to", m.To, fmt.Sprintf("must be this server %q", n.cfg.ID))
	}
	if n.cfg.Parent == "" || m.From != n.cfg.Parent {
		return &UnknownServerError{Server: m.From, At: n.cfg.ID, As: "parent"}
	}
	path := m.Path
	if len(path) == 0 {
		path = []string{m.From}
	}
	if path[len(path)-1] != m.From {
		return errs.Invalid("path", strings.Join(path, ","), fmt.Sprintf("must end with the sender %q", m.From))
	}
	if err := checkChain(path, n.cfg.ID); err != nil {
		return err
	}
	var bad errs.ValidationErrors
	for i, pt := range m.Tasks {
		if pt.ID == "" {
			bad = append(bad, errs.Invalid(fmt.Sprintf("tasks[%d].id", i), "", "is required"))
			continue
		}
		hops := append([]Hop{{Server: m.From, TaskID: pt.ID}}, lineage(&pt)...)
		servers := make([]string, len(hops))
		for j, h := range hops {
			servers[len(hops)-1-j] = h.Server // origin first
		}
		if err := checkChain(servers, n.cfg.ID); err != nil {
			var ve *errs.ValidationError
			if errors.As(err, &ve) {
				bad = append(bad, errs.Invalid(fmt.Sprintf("tasks[%d].created_by", i), "", ve.Reason))
				continue
			}
			return err
		}
	}
	return bad.Err()
}

// checkChain checks a chain of servers a message or task passed through
// before reaching self: a *CycleError when a server repeats or self is in
// it, a *ValidationError when it is longer than MaxDepth.
func checkChain(chain []string, self string) error {
	if len(chain) >= MaxDepth {
		return errs.Invalid("path", fmt.Sprint(len(chain)), fmt.Sprintf("must pass through fewer than %d servers", MaxDepth))
	}
	for i, s := range chain { // at most MaxDepth servers: no map needed
		if slices.Contains(chain[:i], s) {
			return &CycleError{Path: slices.Clone(chain[:i+1])}
		}
	}
	if slices.Contains(chain, self) {
		return &CycleError{Path: append(slices.Clone(chain), self)}
	}
	return nil
}

// copyOf is the local copy of a parent's task: same type, settings and
// schedule, scoped to this server's root group, with distribution to this
// server's own children kept, so the copy is inherited further down.
func (n *Node) copyOf(from string, pt task.Task, cur *task.Task) task.Task {
	c := pt
	c.ID, c.Revision, c.SettingsRevision = "", 0, 0
	if cur != nil {
		c.ID, c.Revision = cur.ID, cur.Revision
	}
	if _, _, inherited := origin(&pt); !inherited {
		c.Name = fmt.Sprintf("%s (%s)", pt.Name, from) // the origin's name
	}
	c.Scope = scope.Scope{Kind: scope.Group, Group: n.cfg.Root, DistributeToServers: pt.Scope.DistributeToServers}
	c.Security = task.Security{}
	c.CreatedBy, c.UpdatedBy = "", ""
	return c
}

// ReceiveTasks is the child side of Link.SendTasks: the copies of the
// parent's tasks are created, updated (when the parent's revision
// changed) or deleted so they match m.Tasks, and copies inherited from a
// former parent are deleted; then the server distributes
// its inherited copies and own distributed tasks to its own children.
//
// Errors: *UnknownServerError when m.From is not this server's parent;
// *CycleError when this server is already on m.Path or in a task's
// lineage; ValidationErrors for a malformed set (nothing changes then);
// the Manager's errors; joined Distribute errors of the servers below
// (this server's copies are up to date then). A set not newer than the
// last one applied is ignored and returns nil.
func (n *Node) ReceiveTasks(ctx context.Context, m TaskSet) error {
	tasks, err := n.decodeSettings(m.Tasks)
	if err != nil {
		return err
	}
	m.Tasks = tasks
	if err := n.checkTaskSet(m); err != nil {
		return err
	}
	applied, err := n.applyTasks(ctx, m)
	if err != nil || !applied || len(n.cfg.Children) == 0 {
		return err
	}
	path := m.Path
	if len(path) == 0 {
		path = []string{m.From}
	}
	return n.distribute(ctx, append(slices.Clone(path), n.cfg.ID))
}

// applyTasks makes the copies match m; applied is false for a stale set.
func (n *Node) applyTasks(ctx context.Context, m TaskSet) (applied bool, err error) {
	n.recv.Lock()
	defer n.recv.Unlock()
	if n.lastSet != nil && m.Version.Compare(*n.lastSet) <= 0 {
		return false, nil
	}
	if err := n.syncCopies(ctx, m); err != nil {
		return false, err
	}
	if err := n.persistCopies(ctx, m); err != nil {
		return false, err
	}
	v := m.Version
	n.lastSet = &v
	return true, nil
}

func (n *Node) syncCopies(ctx context.Context, m TaskSet) error {
	all, err := n.allTasks(ctx)
	if err != nil {
		return err
	}
	have := map[string]*task.Task{}
	for _, t := range all {
		f, id, ok := origin(t)
		switch {
		case !ok:
		case f == m.From:
			have[id] = t
		default: // inherited from a former parent: withdrawn
			if err := n.withdraw(ctx, t); err != nil {
				return err
			}
		}
	}
	want := map[string]bool{}
	for _, pt := range m.Tasks {
		want[pt.ID] = true
		hops := append([]Hop{{Server: m.From, TaskID: pt.ID}}, lineage(&pt)...)
		actor := inheritActor(hops, pt.Revision)
		cur := have[pt.ID]
		if cur == nil {
			if _, err := n.cfg.Manager.Create(ctx, actor, n.copyOf(m.From, pt, nil)); err != nil {
				return fmt.Errorf("hierarchy: %q inherits %q from %q: %w", n.cfg.ID, pt.ID, m.From, err)
			}
			continue
		}
		if cur.UpdatedBy == actor.ID {
			continue // copies this revision already
		}
		if _, err := n.cfg.Manager.Update(ctx, actor, n.copyOf(m.From, pt, cur)); err != nil {
			return fmt.Errorf("hierarchy: %q updates inherited %q from %q: %w", n.cfg.ID, pt.ID, m.From, err)
		}
	}
	for id, t := range have {
		if !want[id] {
			if err := n.withdraw(ctx, t); err != nil {
				return err
			}
		}
	}
	return nil
}

// withdraw deletes an inherited copy and the figures reported for it.
func (n *Node) withdraw(ctx context.Context, t *task.Task) error {
	hops := lineage(t)
	if err := n.cfg.Manager.Delete(ctx, inheritActor(hops, 0), t.ID, 0); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("hierarchy: %q withdraws inherited %q from %q: %w", n.cfg.ID, hops[0].TaskID, hops[0].Server, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var keys []storage.HierarchyFigureKey
	for s := range n.stat[t.ID] {
		keys = append(keys, storage.HierarchyFigureKey{TaskID: t.ID, Server: s})
	}
	if err := n.deleteFigures(ctx, keys); err != nil {
		return err
	}
	delete(n.stat, t.ID)
	return nil
}

// Tasks lists this server's tasks, inherited copies marked with their
// lineage.
func (n *Node) Tasks(ctx context.Context) ([]View, error) {
	all, err := n.allTasks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]View, 0, len(all))
	for _, t := range all {
		v := View{Task: t, Lineage: lineage(t)}
		if len(v.Lineage) > 0 {
			v.Inherited, v.From, v.ParentTaskID = true, v.Lineage[0].Server, v.Lineage[0].TaskID
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Task.ID < out[j].Task.ID })
	return out, nil
}
