package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// HierarchyStore is an optional interface of a Store that keeps the state
// of the Administration Server hierarchy (task/hierarchy) durable, so a
// restarted server serves the same figures at once and counts each report
// of a server below it exactly once across restarts.
//
// Every record belongs to one Node: the id of the server (physical or
// virtual) that keeps it. Servers sharing one database (a physical server
// and its virtual servers) keep apart by Node; no call on one Node returns
// or changes another Node's records.
//
// A Node's state is:
//   - its own record (role, parent, epoch) and its children: the server tree
//     as this server sees it (PutHierarchyNode);
//   - the inherited copies of its parent's tasks with their lineage, and the
//     version of the last task set applied (ApplyHierarchyTaskSet);
//   - per child, the version of the last report applied, and per (task,
//     server below) the figures last reported, each with the version of the
//     report that read them (ApplyHierarchyReport).
type HierarchyStore interface {
	// PutHierarchyNode stores a Node's own record and replaces its list
	// of children. ErrInvalid (nothing written) for a bad record.
	PutHierarchyNode(ctx context.Context, p PutHierarchyNodeParams) error

	// GetHierarchyState returns everything stored for a Node: ErrNotFound
	// when PutHierarchyNode was never called for it.
	GetHierarchyState(ctx context.Context, node string) (HierarchyState, error)

	// ApplyHierarchyTaskSet records the task set p.Version from p.From as
	// applied and replaces the Node's inherited copies with p.Copies, in
	// one transaction, if and only if p.Version is newer than the version
	// stored (or none is). Otherwise it returns ErrConflict and writes
	// nothing: a repeated or late set. ErrNotFound for an unknown Node,
	// ErrInvalid for a bad record.
	ApplyHierarchyTaskSet(ctx context.Context, p ApplyHierarchyTaskSetParams) error

	// ApplyHierarchyReport applies a child's report in one transaction,
	// if and only if p.Version is newer than the version of the last
	// report applied from p.Child: it records p.Version and p.Complete,
	// deletes p.Delete, then upserts p.Put (replacing the figure of each
	// (TaskID, Server)). Otherwise it returns ErrConflict and writes
	// nothing, so a report is counted at most once, also across restarts
	// and processes sharing the database. ErrNotFound for an unknown Node,
	// ErrInvalid for a bad record.
	ApplyHierarchyReport(ctx context.Context, p ApplyHierarchyReportParams) error

	// DeleteHierarchyFigures deletes figures of a Node (a task withdrawn
	// or deleted) and returns how many were deleted. Unknown keys are
	// ignored.
	DeleteHierarchyFigures(ctx context.Context, p DeleteHierarchyFiguresParams) (int, error)
}

// Bounds of hierarchy records; a record beyond them is ErrInvalid.
const (
	// MaxHierarchyID is the longest server or task id, in bytes.
	MaxHierarchyID = 256
	// MaxHierarchyPath is the most servers in a figure's Path or a copy's
	// Lineage (task/hierarchy's MaxDepth).
	MaxHierarchyPath = 32
	// MaxHierarchyStatistics is the largest Statistics body, in bytes.
	MaxHierarchyStatistics = 64 << 10
	// MaxHierarchyBatch is the most children, copies or figures in one call.
	MaxHierarchyBatch = 100000
)

// HierarchyVersion orders one server's reports or task sets: Epoch is the
// server's clock (ns) when it started, Seq counts since.
type HierarchyVersion struct {
	// Epoch is the server's clock (ns) when it started.
	Epoch int64
	// Seq counts the server's reports or task sets since Epoch.
	Seq int64
}

// Newer reports whether v is newer than w.
func (v HierarchyVersion) Newer(w HierarchyVersion) bool {
	return v.Epoch > w.Epoch || (v.Epoch == w.Epoch && v.Seq > w.Seq)
}

// HierarchyServer is a child of a Node: a secondary or virtual server
// deployed in one of the Node's administration groups.
type HierarchyServer struct {
	// ID is the child's server id.
	ID string
	// Role is "secondary" or "virtual".
	Role string
	// Group is the Node's administration group the child is deployed in.
	Group string
}

// HierarchyHop is one step of an inherited copy's lineage: task TaskID on
// server Server.
type HierarchyHop struct {
	// Server is the server holding the task.
	Server string
	// TaskID is the task's id there.
	TaskID string
}

// HierarchyCopy is an inherited copy on a Node: its local task TaskID
// copies revision ParentRevision of the parent's task; Lineage goes from
// the parent (Lineage[0]) to the task's origin.
type HierarchyCopy struct {
	// TaskID is the copy's task id on the Node.
	TaskID string
	// Lineage is the task on every server above, parent first, origin
	// last.
	Lineage []HierarchyHop
	// ParentRevision is the revision of the parent's task the copy copies.
	ParentRevision int64
}

// HierarchyFigure is the figure a Node holds for one of its tasks on one
// server below it.
type HierarchyFigure struct {
	// TaskID is the task id on the Node.
	TaskID string
	// Server is the server whose devices the figure counts.
	Server string
	// Role is Server's role ("secondary" or "virtual").
	Role string
	// Path lists the servers from the Node's child (Path[0]) to Server.
	Path []string
	// Version is Server's report that read the figure.
	Version HierarchyVersion
	// At is Server's clock when it read the figure (UTC).
	At time.Time
	// Statistics are the counts, as JSON written by task/hierarchy (the
	// store does not interpret them).
	Statistics json.RawMessage
}

// HierarchyFigureKey names one figure of a Node.
type HierarchyFigureKey struct {
	// TaskID is the task id on the Node.
	TaskID string
	// Server is the server the figure counts.
	Server string
}

// HierarchyChildReport is the last report applied from a child.
type HierarchyChildReport struct {
	// Child is the child's server id.
	Child string
	// Version is the child's report applied last.
	Version HierarchyVersion
	// Complete says that report held the child's whole subtree.
	Complete bool
	// At is when the Node applied it (its clock, UTC).
	At time.Time
}

// HierarchyState is everything stored for a Node.
type HierarchyState struct {
	// Node is the server the state belongs to.
	Node string
	// Role is its role ("primary", "secondary" or "virtual").
	Role string
	// Parent is its parent's id ("" for the primary).
	Parent string
	// Epoch is the Node's last start (its clock, ns); a restarted Node
	// starts with a later one.
	Epoch int64
	// Children are the Node's children, in ID order.
	Children []HierarchyServer
	// SetFrom is the server the last task set applied came from ("":
	// none yet).
	SetFrom string
	// SetVersion is that set's version.
	SetVersion HierarchyVersion
	// Copies are the inherited copies, in TaskID order.
	Copies []HierarchyCopy
	// Reports are the last report applied per child, in Child order.
	Reports []HierarchyChildReport
	// Figures are in (TaskID, Server) order.
	Figures []HierarchyFigure
}

// PutHierarchyNodeParams are the arguments of PutHierarchyNode.
type PutHierarchyNodeParams struct {
	// Node is the server's id.
	Node string
	// Role is its role ("primary", "secondary" or "virtual").
	Role string
	// Parent is its parent's id ("" for the primary).
	Parent string
	// Epoch is this start of the Node (its clock, ns).
	Epoch int64
	// Children replace the stored children.
	Children []HierarchyServer
}

// ApplyHierarchyTaskSetParams are the arguments of ApplyHierarchyTaskSet.
type ApplyHierarchyTaskSetParams struct {
	// Node is the server that applied the set.
	Node string
	// From is the parent that sent it.
	From string
	// Version is the set's version; it must be newer than the stored one.
	Version HierarchyVersion
	// Copies replace the Node's stored copies.
	Copies []HierarchyCopy
}

// ApplyHierarchyReportParams are the arguments of ApplyHierarchyReport.
type ApplyHierarchyReportParams struct {
	// Node is the server applying the report.
	Node string
	// Child is the child that sent it.
	Child string
	// Version is the report's; it must be newer than the stored one.
	Version HierarchyVersion
	// Complete says the report holds the child's whole subtree.
	Complete bool
	// At is when the Node applies the report (its clock, UTC).
	At time.Time
	// Put are the figures the report replaces or adds.
	Put []HierarchyFigure
	// Delete are the figures the report drops (deleted before Put).
	Delete []HierarchyFigureKey
}

// DeleteHierarchyFiguresParams are the arguments of DeleteHierarchyFigures.
type DeleteHierarchyFiguresParams struct {
	// Node is the server whose figures are deleted.
	Node string
	// Keys name the figures.
	Keys []HierarchyFigureKey
}

func checkID(bad *errs.ValidationErrors, field, v string, required bool) {
	switch {
	case v == "" && required:
		*bad = append(*bad, errs.Invalid(field, "", "is required"))
	case len(v) > MaxHierarchyID:
		*bad = append(*bad, errs.Invalid(field, "", fmt.Sprintf("must be at most %d bytes", MaxHierarchyID)))
	}
}

func checkBatch(bad *errs.ValidationErrors, field string, n int) bool {
	if n > MaxHierarchyBatch {
		*bad = append(*bad, errs.Invalid(field, fmt.Sprint(n), fmt.Sprintf("must hold at most %d items", MaxHierarchyBatch)))
		return false
	}
	return true
}

// Validate checks the record; stores return its error (ErrInvalid).
func (p PutHierarchyNodeParams) Validate() error {
	var bad errs.ValidationErrors
	checkID(&bad, "node", p.Node, true)
	checkID(&bad, "role", p.Role, true)
	checkID(&bad, "parent", p.Parent, false)
	if checkBatch(&bad, "children", len(p.Children)) {
		for i, c := range p.Children {
			checkID(&bad, fmt.Sprintf("children[%d].id", i), c.ID, true)
			checkID(&bad, fmt.Sprintf("children[%d].role", i), c.Role, true)
			checkID(&bad, fmt.Sprintf("children[%d].group", i), c.Group, true)
		}
	}
	return bad.Err()
}

// Validate checks the record; stores return its error (ErrInvalid).
func (p ApplyHierarchyTaskSetParams) Validate() error {
	var bad errs.ValidationErrors
	checkID(&bad, "node", p.Node, true)
	checkID(&bad, "from", p.From, true)
	if checkBatch(&bad, "copies", len(p.Copies)) {
		for i, c := range p.Copies {
			f := fmt.Sprintf("copies[%d]", i)
			checkID(&bad, f+".task_id", c.TaskID, true)
			if len(c.Lineage) == 0 || len(c.Lineage) > MaxHierarchyPath {
				bad = append(bad, errs.Invalid(f+".lineage", fmt.Sprint(len(c.Lineage)), fmt.Sprintf("must hold 1 to %d hops", MaxHierarchyPath)))
				continue
			}
			for j, h := range c.Lineage {
				checkID(&bad, fmt.Sprintf("%s.lineage[%d].server", f, j), h.Server, true)
				checkID(&bad, fmt.Sprintf("%s.lineage[%d].task_id", f, j), h.TaskID, true)
			}
		}
	}
	return bad.Err()
}

// Validate checks the record; stores return its error (ErrInvalid).
func (p ApplyHierarchyReportParams) Validate() error {
	var bad errs.ValidationErrors
	checkID(&bad, "node", p.Node, true)
	checkID(&bad, "child", p.Child, true)
	if checkBatch(&bad, "put", len(p.Put)) {
		for i, f := range p.Put {
			validateFigure(&bad, fmt.Sprintf("put[%d]", i), f)
		}
	}
	if checkBatch(&bad, "delete", len(p.Delete)) {
		for i, k := range p.Delete {
			checkID(&bad, fmt.Sprintf("delete[%d].task_id", i), k.TaskID, true)
			checkID(&bad, fmt.Sprintf("delete[%d].server", i), k.Server, true)
		}
	}
	return bad.Err()
}

func validateFigure(bad *errs.ValidationErrors, f string, fig HierarchyFigure) {
	checkID(bad, f+".task_id", fig.TaskID, true)
	checkID(bad, f+".server", fig.Server, true)
	checkID(bad, f+".role", fig.Role, false)
	if len(fig.Path) == 0 || len(fig.Path) > MaxHierarchyPath {
		*bad = append(*bad, errs.Invalid(f+".path", fmt.Sprint(len(fig.Path)), fmt.Sprintf("must hold 1 to %d servers", MaxHierarchyPath)))
	} else {
		for j, s := range fig.Path {
			checkID(bad, fmt.Sprintf("%s.path[%d]", f, j), s, true)
		}
	}
	if len(fig.Statistics) > MaxHierarchyStatistics {
		*bad = append(*bad, errs.Invalid(f+".statistics", "", fmt.Sprintf("must be at most %d bytes", MaxHierarchyStatistics)))
	} else if len(fig.Statistics) > 0 && !json.Valid(fig.Statistics) {
		*bad = append(*bad, errs.Invalid(f+".statistics", "", "must be JSON"))
	}
}

// Validate checks the keys; stores return its error (ErrInvalid).
func (p DeleteHierarchyFiguresParams) Validate() error {
	var bad errs.ValidationErrors
	checkID(&bad, "node", p.Node, true)
	if checkBatch(&bad, "keys", len(p.Keys)) {
		for i, k := range p.Keys {
			checkID(&bad, fmt.Sprintf("keys[%d].task_id", i), k.TaskID, true)
			checkID(&bad, fmt.Sprintf("keys[%d].server", i), k.Server, true)
		}
	}
	return bad.Err()
}
