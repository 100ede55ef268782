package hierarchy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
)

// Report sends the parent this server's report: for every copy it
// inherits from the parent, its own statistics and the latest figures of
// every server under it (relayed as they were reported, with their
// versions), keyed by the parent's task ids. The primary has nothing to
// report. A failed report needs no replay: the next one carries the
// current figures.
//
// Errors: the Manager's errors; the Link's (ErrUnreachable when the
// parent cannot be reached).
func (n *Node) Report(ctx context.Context) error {
	if n.cfg.Parent == "" {
		return nil
	}
	r, err := n.report(ctx)
	if err != nil {
		return err
	}
	if err := n.cfg.Link.SendReport(ctx, r); err != nil {
		return fmt.Errorf("hierarchy: report from %q to %q: %w", n.cfg.ID, n.cfg.Parent, err)
	}
	return nil
}

// report builds the next report.
func (n *Node) report(ctx context.Context) (Report, error) {
	n.rep.Lock()
	defer n.rep.Unlock()
	all, err := n.allTasks(ctx)
	if err != nil {
		return Report{}, err
	}
	type copyOf struct{ local, parent string }
	var copies []copyOf
	for _, t := range all {
		if from, id, ok := origin(t); ok && from == n.cfg.Parent {
			copies = append(copies, copyOf{t.ID, id})
		}
	}
	own := make([]task.Statistics, len(copies))
	for i, c := range copies {
		st, err := n.cfg.Manager.Statistics(ctx, task.System, c.local)
		if err != nil {
			return Report{}, fmt.Errorf("hierarchy: statistics of %q on %q: %w", c.local, n.cfg.ID, err)
		}
		own[i] = st
	}
	at := n.clk.Now().UTC()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seq++
	r := Report{From: n.cfg.ID, To: n.cfg.Parent, Version: Version{Epoch: n.epoch, Seq: n.seq}, Complete: n.completeLocked()}
	for i, c := range copies {
		r.Statistics = append(r.Statistics, TaskStatistics{
			TaskID: c.parent, Server: n.cfg.ID, Role: n.cfg.Role, Path: []string{n.cfg.ID},
			Version: r.Version, At: at, Statistics: own[i],
		})
		for _, e := range n.stat[c.local] {
			e.TaskID = c.parent
			e.Path = append([]string{n.cfg.ID}, e.Path...)
			r.Statistics = append(r.Statistics, e)
		}
	}
	sortStatistics(r.Statistics)
	return r, nil
}

// completeLocked reports whether every child has delivered a complete
// report since this Node was created.
func (n *Node) completeLocked() bool {
	for _, c := range n.cfg.Children {
		if !n.last[c.ID].complete {
			return false
		}
	}
	return true
}

func sortStatistics(s []TaskStatistics) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].TaskID != s[j].TaskID {
			return s[i].TaskID < s[j].TaskID
		}
		return slices.Compare(s[i].Path, s[j].Path) < 0
	})
}

type statKey struct{ task, server string }

// ReceiveReport is the parent side of Link.SendReport. A report not newer
// than the last one applied from r.From is ignored (a repeated or
// reordered delivery), as is any figure older than the one held for its
// server; the others replace the held figures, so a relayed figure is
// never counted twice. A complete report also drops the figures of
// servers under r.From it no longer holds; an incomplete one (r.From
// restarted and has not heard from its whole subtree yet) drops only
// r.From's own figures of tasks it no longer reports.
//
// Errors: *UnknownServerError when r.From is not a child of this server;
// *CycleError when this server is on an entry's path; ValidationErrors
// for malformed entries (nothing is applied then).
func (n *Node) ReceiveReport(ctx context.Context, r Report) error {
	c, ok := n.child(r.From)
	if !ok {
		return &UnknownServerError{Server: r.From, At: n.cfg.ID, As: "child"}
	}
	if r.To != "" && r.To != n.cfg.ID {
		return errs.Invalid("to", r.To, fmt.Sprintf("must be this server %q", n.cfg.ID))
	}
	var bad errs.ValidationErrors
	invalid := func(i int, field, value, reason string) {
		bad = append(bad, errs.Invalid(fmt.Sprintf("statistics[%d].%s", i, field), value, reason))
	}
	for i, e := range r.Statistics {
		switch {
		case e.TaskID == "":
			invalid(i, "task_id", "", "is required")
		case len(e.Path) == 0 || e.Path[0] != r.From:
			invalid(i, "path", strings.Join(e.Path, ","), fmt.Sprintf("must start with the sender %q", r.From))
		case e.Path[len(e.Path)-1] != e.Server:
			invalid(i, "path", strings.Join(e.Path, ","), fmt.Sprintf("must end with the server %q", e.Server))
		case slices.Contains(e.Path, ""):
			invalid(i, "path", strings.Join(e.Path, ","), "must not hold an empty server id")
		case len(e.Path)+1 >= MaxDepth:
			invalid(i, "path", strings.Join(e.Path, ","), fmt.Sprintf("must pass through fewer than %d servers", MaxDepth))
		case slices.Contains(e.Path, n.cfg.ID):
			return &CycleError{Path: append([]string{n.cfg.ID}, e.Path...)}
		default:
			if err := checkChain(e.Path[:len(e.Path)-1], e.Server); err != nil {
				return err
			}
		}
	}
	if err := bad.Err(); err != nil {
		return err
	}

	n.mu.Lock()
	defer n.mu.Unlock()
	if last, seen := n.last[r.From]; seen && r.Version.Compare(last.version) <= 0 {
		return nil
	}
	// Work out the changes first, write them through, then apply them.
	in := map[statKey]bool{}
	var put []TaskStatistics
	for _, e := range r.Statistics {
		k := statKey{e.TaskID, e.Server}
		in[k] = true
		e.Path = slices.Clone(e.Path)
		e.Statistics.ByState = maps.Clone(e.Statistics.ByState)
		if e.Server == r.From {
			e.Role = c.Role
		}
		if cur, ok := n.stat[e.TaskID][e.Server]; ok && cur.Version.Compare(e.Version) > 0 {
			continue
		}
		put = append(put, e)
	}
	var drop []statKey
	for id, byServer := range n.stat {
		for s, e := range byServer {
			if e.Path[0] == r.From && !in[statKey{id, s}] && (r.Complete || s == r.From) {
				drop = append(drop, statKey{id, s})
			}
		}
	}
	now := n.clk.Now().UTC().Truncate(time.Microsecond)
	if n.cfg.Store != nil {
		p := storage.ApplyHierarchyReportParams{Node: n.cfg.ID, Child: r.From, Version: storage.HierarchyVersion(r.Version), Complete: r.Complete, At: now}
		for _, e := range put {
			f, err := figureOf(e)
			if err != nil {
				return fmt.Errorf("hierarchy: report of %q: %w", r.From, err)
			}
			p.Put = append(p.Put, f)
		}
		for _, k := range drop {
			p.Delete = append(p.Delete, storage.HierarchyFigureKey{TaskID: k.task, Server: k.server})
		}
		if err := n.cfg.Store.ApplyHierarchyReport(ctx, p); err != nil {
			if errors.Is(err, storage.ErrConflict) {
				return nil // applied already (by an earlier delivery)
			}
			return fmt.Errorf("hierarchy: store the report of %q on %q: %w", r.From, n.cfg.ID, err)
		}
	}
	for _, k := range drop {
		delete(n.stat[k.task], k.server)
		if len(n.stat[k.task]) == 0 {
			delete(n.stat, k.task)
		}
	}
	for _, e := range put {
		byServer := n.stat[e.TaskID]
		if byServer == nil {
			byServer = map[string]TaskStatistics{}
			n.stat[e.TaskID] = byServer
		}
		byServer[e.Server] = e
	}
	n.last[r.From] = childReport{version: r.Version, complete: r.Complete, at: now}
	return nil
}

// ChildStatus is what a server knows of one of its children: when it last
// heard from it, with which report.
type ChildStatus struct {
	Child
	// Reported is false until a report of the child was applied (here or,
	// with a Store, before a restart).
	Reported bool
	// LastReport is the version of the last report applied.
	LastReport Version
	// LastReportAt is this server's clock (UTC) when it was applied.
	LastReportAt time.Time
	// Complete says the last report held the child's whole subtree.
	Complete bool
}

// Children lists this server's children in configuration order with the
// last report applied from each: what an administrator checks to see
// which secondary or virtual server has not reported for a while.
func (n *Node) Children() []ChildStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]ChildStatus, len(n.cfg.Children))
	for i, c := range n.cfg.Children {
		last, ok := n.last[c.ID]
		out[i] = ChildStatus{Child: c, Reported: ok, LastReport: last.version, LastReportAt: last.at, Complete: last.complete}
	}
	return out
}

// pruneDeleted drops the figures of tasks this server no longer has.
func (n *Node) pruneDeleted(ctx context.Context, all []*task.Task) error {
	ids := make(map[string]bool, len(all))
	for _, t := range all {
		ids[t.ID] = true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var keys []storage.HierarchyFigureKey
	for id, byServer := range n.stat {
		if !ids[id] {
			for s := range byServer {
				keys = append(keys, storage.HierarchyFigureKey{TaskID: id, Server: s})
			}
		}
	}
	if err := n.deleteFigures(ctx, keys); err != nil {
		return err
	}
	for _, k := range keys {
		delete(n.stat, k.TaskID)
	}
	return nil
}

// pruneWithdrawn drops the figures that came through child of tasks it
// no longer inherits.
func (n *Node) pruneWithdrawn(ctx context.Context, child string, sent map[string]bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var keys []storage.HierarchyFigureKey
	for id, byServer := range n.stat {
		if sent[id] {
			continue
		}
		for s, e := range byServer {
			if e.Path[0] == child {
				keys = append(keys, storage.HierarchyFigureKey{TaskID: id, Server: s})
			}
		}
	}
	if err := n.deleteFigures(ctx, keys); err != nil {
		return err
	}
	for _, k := range keys {
		delete(n.stat[k.TaskID], k.Server)
		if len(n.stat[k.TaskID]) == 0 {
			delete(n.stat, k.TaskID)
		}
	}
	return nil
}

// SecondaryServers lists the servers anywhere below this one that
// reported results of task id, in id order.
func (n *Node) SecondaryServers(id string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := slices.Collect(maps.Keys(n.stat[id]))
	sort.Strings(out)
	return out
}

// StatisticsFromSecondaries is "Statistics from secondary Servers": the
// latest figures of task id from every server below this one, each
// server's own devices only, in tree order (a server before the servers
// under it).
func (n *Node) StatisticsFromSecondaries(id string) []TaskStatistics {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]TaskStatistics, 0, len(n.stat[id]))
	for _, e := range n.stat[id] {
		out = append(out, cloneStatistics(e))
	}
	sortStatistics(out)
	return out
}

func cloneStatistics(e TaskStatistics) TaskStatistics {
	e.Path = slices.Clone(e.Path)
	e.Statistics.ByState = maps.Clone(e.Statistics.ByState)
	return e
}

// SecondaryStatistics returns the figures of task id on server (any level
// below this one; its own devices only), as last reported; ErrNotFound
// when that server has not reported the task.
func (n *Node) SecondaryStatistics(id, server string) (TaskStatistics, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.stat[id][server]
	if !ok {
		return TaskStatistics{}, fmt.Errorf("hierarchy: no statistics of task %q from server %q: %w", id, server, ErrNotFound)
	}
	return cloneStatistics(s), nil
}

// SubtreeStatistics sums the figures of task id on server and on every
// server below it; ErrNotFound when none of them reported the task.
func (n *Node) SubtreeStatistics(id, server string) (task.Statistics, error) {
	sum := newSum()
	found := false
	n.mu.Lock()
	for _, e := range n.stat[id] {
		if slices.Contains(e.Path, server) {
			sum.add(e.Statistics)
			found = true
		}
	}
	n.mu.Unlock()
	if !found {
		return task.Statistics{}, fmt.Errorf("hierarchy: no statistics of task %q from server %q or below it: %w", id, server, ErrNotFound)
	}
	return sum.result(), nil
}

// RolledUp returns task id's statistics on this server plus those of
// every server below it, each counted once.
//
// Errors: the Manager's (ErrNotFound for an unknown task).
func (n *Node) RolledUp(ctx context.Context, id string) (task.Statistics, error) {
	own, err := n.cfg.Manager.Statistics(ctx, task.System, id)
	if err != nil {
		return task.Statistics{}, err
	}
	sum := newSum()
	sum.add(own)
	n.mu.Lock()
	for _, e := range n.stat[id] {
		sum.add(e.Statistics)
	}
	n.mu.Unlock()
	return sum.result(), nil
}

type statSum struct{ s task.Statistics }

func newSum() *statSum { return &statSum{task.Statistics{ByState: map[task.State]int{}}} }

func (a *statSum) add(s task.Statistics) {
	for k, v := range s.ByState {
		a.s.ByState[k] += v
	}
	a.s.Total += s.Total
	a.s.Unknown += s.Unknown
	a.s.Finished += s.Finished
	a.s.RestartRequired += s.RestartRequired
}

func (a *statSum) result() task.Statistics {
	if a.s.Total > 0 {
		a.s.PercentComplete = float64(a.s.Finished) * 100 / float64(a.s.Total)
	}
	return a.s
}
