package console

import (
	"cmp"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// Limits on query parameters, checked before anything is allocated for
// them.
const (
	maxQueryValue = 256 // bytes of one filter value
	maxStates     = 12  // state filters (there are 12 states)
	// ListStates are the task states the task list filters by.
	listRunning   = "running"
	listSuspended = "suspended"
	listIdle      = "idle"
)

// TaskRow is one task in the task list.
type TaskRow struct {
	Task  *task.Task
	Kind  task.Kind
	State string
	Stats task.Statistics
}

// TypeGroup is the tasks of one type within an application.
type TypeGroup struct {
	Type  string
	Tasks []TaskRow
}

// AppGroup is the tasks of one application, grouped by type.
type AppGroup struct {
	Application string
	Types       []TypeGroup
}

type listView struct {
	Base
	Filter  listFilter
	Apps    []AppGroup
	Next    string
	Kinds   []task.Kind
	States  []string
	Engine  *engineView
	Count   int
	Prefix2 string
}

type engineView struct {
	Fired, Dispatched, Resent, Heartbeats, ResultsApplied, Delivered int64
}

type listFilter struct {
	Application, Type, Kind, Group, State, Name, After string
}

func (f listFilter) Query(after string) template.URL {
	v := url.Values{}
	for k, s := range map[string]string{"app": f.Application, "type": f.Type, "kind": f.Kind, "group": f.Group, "state": f.State, "name": f.Name} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if after != "" {
		v.Set("after", after)
	}
	return template.URL(v.Encode())
}

// queryValue returns a bounded query parameter.
func queryValue(q url.Values, name string) (string, error) {
	v := q.Get(name)
	if len(v) > maxQueryValue {
		return "", errs.Invalid(name, v[:32]+"…", fmt.Sprintf("is longer than %d bytes", maxQueryValue))
	}
	return v, nil
}

func (c *Console) listPage(w http.ResponseWriter, q *req) error {
	qs := q.r.URL.Query()
	var f listFilter
	var bad errs.ValidationErrors
	for _, p := range []struct {
		name string
		dst  *string
	}{{"app", &f.Application}, {"type", &f.Type}, {"kind", &f.Kind}, {"group", &f.Group}, {"state", &f.State}, {"name", &f.Name}, {"after", &f.After}} {
		v, err := queryValue(qs, p.name)
		if err != nil {
			bad = append(bad, err.(*task.ValidationError))
		}
		*p.dst = v
	}
	if f.Kind != "" && !slices.Contains([]task.Kind{task.Local, task.Group, task.Global, task.Server}, task.Kind(f.Kind)) {
		bad = append(bad, errs.Invalid("kind", f.Kind, "must be one of: local, group, global, server"))
	}
	if f.State != "" && !slices.Contains([]string{listRunning, listSuspended, listIdle}, f.State) {
		bad = append(bad, errs.Invalid("state", f.State, "must be one of: running, suspended, idle"))
	}
	if err := bad.Err(); err != nil {
		return err
	}
	res, err := c.m.List(q.ctx(), q.actor, task.ListParams{
		Application: f.Application, Type: f.Type, Kind: task.Kind(f.Kind), Group: scope.GroupID(f.Group),
		NameContains: f.Name, After: f.After, Limit: c.cfg.PageSize,
	})
	if err != nil {
		return err
	}
	v := listView{Base: c.base(q, "Tasks"), Filter: f, Next: res.Next, Kinds: []task.Kind{task.Local, task.Group, task.Global, task.Server},
		States: []string{listRunning, listSuspended, listIdle}}
	for _, app := range res.Applications {
		ag := AppGroup{Application: app.Application}
		byType := map[string]int{}
		for _, t := range app.Tasks {
			st, err := c.m.Statistics(q.ctx(), q.actor, t.ID)
			if err != nil {
				if errors.Is(err, task.ErrPermission) || errors.Is(err, task.ErrNotFound) {
					continue // changed since listed
				}
				return err
			}
			row := TaskRow{Task: t, Kind: t.Kind(), State: taskState(t, st), Stats: st}
			if f.State != "" && row.State != f.State {
				continue
			}
			i, ok := byType[t.Type]
			if !ok {
				i = len(ag.Types)
				byType[t.Type] = i
				ag.Types = append(ag.Types, TypeGroup{Type: t.Type})
			}
			ag.Types[i].Tasks = append(ag.Types[i].Tasks, row)
			v.Count++
		}
		if len(ag.Types) == 0 {
			continue
		}
		slices.SortFunc(ag.Types, func(a, b TypeGroup) int { return cmp.Compare(a.Type, b.Type) })
		v.Apps = append(v.Apps, ag)
	}
	if c.cfg.Engine != nil {
		s := c.cfg.Engine.Stats()
		v.Engine = &engineView{Fired: s.Fired, Dispatched: s.Dispatched, Resent: s.Resent, Heartbeats: s.Heartbeats, ResultsApplied: s.ResultsApplied, Delivered: s.Delivered}
	}
	return c.render(w, "list.html", v)
}

// taskState is the task list's state of a task: suspended, running (some
// device is scheduled, pending, running or paused) or idle.
func taskState(t *task.Task, st task.Statistics) string {
	switch {
	case t.Suspended:
		return listSuspended
	case st.ByState[task.Pending]+st.ByState[task.Running]+st.ByState[task.Paused] > 0:
		return listRunning
	}
	return listIdle
}

// resultsFilter is the state filter and the page of the results table.
type resultsFilter struct {
	States []task.State
	After  string
}

func (f resultsFilter) Query(after string) template.URL {
	v := url.Values{}
	for _, s := range f.States {
		v.Add("state", string(s))
	}
	if after != "" {
		v.Set("after", after)
	}
	return template.URL(v.Encode())
}

func (f resultsFilter) Has(s task.State) bool { return slices.Contains(f.States, s) }

func parseResultsFilter(qs url.Values) (resultsFilter, error) {
	var f resultsFilter
	raw := qs["state"]
	if len(raw) > maxStates {
		return f, errs.Invalid("state", "", fmt.Sprintf("at most %d states", maxStates))
	}
	var bad errs.ValidationErrors
	for i, s := range raw {
		if s == "" {
			continue
		}
		if !task.State(s).Valid() {
			bad = append(bad, errs.Invalid(fmt.Sprintf("state[%d]", i), shorten(s), "is not a result state"))
			continue
		}
		if !slices.Contains(f.States, task.State(s)) {
			f.States = append(f.States, task.State(s))
		}
	}
	after, err := queryValue(qs, "after")
	if err != nil {
		bad = append(bad, err.(*task.ValidationError))
	}
	f.After = after
	return f, bad.Err()
}

func shorten(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// liveView is the part of the task page that refreshes itself:
// statistics and the results table.
type liveView struct {
	Base
	Task        *task.Task
	Stats       task.Statistics
	StateRows   []stateRow
	Results     []task.Result
	Filter      resultsFilter
	Next        string
	Selectable  bool
	AllStates   []task.State
	Secondaries []secondaryRow
}

type stateRow struct {
	State   task.State
	Count   int
	Percent float64
	Error   bool
	Final   bool
}

type secondaryRow struct {
	Server  string
	Role    string
	Path    string
	At      time.Time
	Total   int
	Percent float64
}

func (c *Console) live(q *req, t *task.Task) (liveView, error) {
	f, err := parseResultsFilter(q.r.URL.Query())
	if err != nil {
		return liveView{}, err
	}
	st, err := c.m.Statistics(q.ctx(), q.actor, t.ID)
	if err != nil {
		return liveView{}, err
	}
	limit := c.cfg.PageSize
	rs, err := c.m.Results(q.ctx(), q.actor, t.ID, task.ResultsParams{States: f.States, After: scope.DeviceID(f.After), Limit: limit + 1})
	if err != nil {
		return liveView{}, err
	}
	v := liveView{Base: c.base(q, t.Name), Task: t, Stats: st, Filter: f, Selectable: t.Kind() == task.Global, AllStates: task.StatisticsStates}
	if len(rs) > limit {
		rs = rs[:limit]
		v.Next = string(rs[limit-1].DeviceID)
	}
	v.Results = rs
	for _, s := range task.StatisticsStates {
		n := st.ByState[s]
		if n == 0 {
			continue
		}
		row := stateRow{State: s, Count: n, Error: s.IsError(), Final: s.Final()}
		if st.Total > 0 {
			row.Percent = float64(n) * 100 / float64(st.Total)
		}
		v.StateRows = append(v.StateRows, row)
	}
	if c.cfg.Hierarchy != nil {
		for _, s := range c.cfg.Hierarchy.StatisticsFromSecondaries(t.ID) {
			v.Secondaries = append(v.Secondaries, secondaryRow{Server: s.Server, Role: string(s.Role), Path: strings.Join(s.Path, " › "), At: s.At,
				Total: s.Statistics.Total, Percent: s.Statistics.PercentComplete})
		}
	}
	return v, nil
}

func (c *Console) livePage(w http.ResponseWriter, q *req) error {
	t, err := c.m.Get(q.ctx(), q.actor, q.r.PathValue("id"))
	if err != nil {
		return err
	}
	v, err := c.live(q, t)
	if err != nil {
		return err
	}
	return c.render(w, "live", v)
}

type taskView struct {
	Base
	Task       *task.Task
	Kind       task.Kind
	Settings   []field
	General    []field
	Scope      scopeView
	Explain    *explainView
	Schedule   scheduleView
	Live       liveView
	Revisions  []revisionRow
	CanCompare bool
	Refresh    int64
	Exportable bool
}

type revisionRow struct {
	Number  int64
	At      time.Time
	Author  string
	Action  string
	Changes int
	Current bool
}

// maxRevisionRows is how many of the latest revisions the task page lists.
const maxRevisionRows = 20

func (c *Console) taskPage(w http.ResponseWriter, q *req) error {
	t, err := c.m.Get(q.ctx(), q.actor, q.r.PathValue("id"))
	if err != nil {
		return err
	}
	qs := q.r.URL.Query()
	lv, err := c.live(q, t)
	if err != nil {
		return err
	}
	v := taskView{Base: c.base(q, t.Name), Task: t, Kind: t.Kind(), Live: lv, Refresh: c.cfg.Refresh.Milliseconds()}
	v.General = generalFields(t)
	v.Settings = settingsFields(t.Settings)
	v.Scope = scopeOf(t.Scope)
	if tt, ok := c.m.Registry().Lookup(t.Application, t.Type); ok {
		v.Exportable = tt.Exportable() && t.Scope.Kind != scope.Server
	}
	if dev, err := queryValue(qs, "explain"); err != nil {
		return err
	} else if dev != "" {
		v.Explain = c.explain(q, t, scope.DeviceID(dev))
	}
	zoneDev, err := queryValue(qs, "zone_device")
	if err != nil {
		return err
	}
	v.Schedule = c.scheduleOf(q, t, scope.DeviceID(zoneDev))
	after := max(t.Revision-maxRevisionRows, 0)
	revs, err := c.m.Revisions(q.ctx(), q.actor, t.ID, after, maxRevisionRows)
	if err != nil {
		return err
	}
	for i := len(revs) - 1; i >= 0; i-- {
		r := revs[i]
		v.Revisions = append(v.Revisions, revisionRow{Number: r.Number, At: r.At, Author: r.Author, Action: string(r.Action), Changes: len(r.Changes), Current: r.Number == t.Revision})
	}
	v.CanCompare = len(v.Revisions) > 1
	return c.render(w, "task.html", v)
}

type explainView struct {
	Device string
	Result *scope.Explanation
	Error  string
}

func (c *Console) explain(q *req, t *task.Task, dev scope.DeviceID) *explainView {
	v := &explainView{Device: string(dev)}
	if c.cfg.Inventory == nil {
		v.Error = "The console has no device inventory, so it cannot explain scopes."
		return v
	}
	e, err := scope.Explain(q.ctx(), t.Scope, c.cfg.Inventory, dev)
	switch {
	case errors.Is(err, scope.ErrNotFound):
		v.Error = "There is no device with this id."
	case err != nil:
		c.cfg.Logger.Warn().Err(err).Str("task", t.ID).Msg("console: explain")
		v.Error = "The scope could not be evaluated for this device."
	default:
		v.Result = &e
	}
	return v
}

type compareView struct {
	Base
	Task    *task.Task
	A, B    int64
	RevA    revisionRow
	RevB    revisionRow
	Changes []changeRow
}

type changeRow struct {
	Path, Old, New string
	OldAbsent      bool
	NewAbsent      bool
}

func parseRevision(qs url.Values, name string) (int64, error) {
	s, err := queryValue(qs, name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, errs.Invalid(name, shorten(s), "must be a revision number (1 or more)")
	}
	return n, nil
}

func (c *Console) comparePage(w http.ResponseWriter, q *req) error {
	id := q.r.PathValue("id")
	t, err := c.m.Get(q.ctx(), q.actor, id)
	if err != nil {
		return err
	}
	qs := q.r.URL.Query()
	a, errA := parseRevision(qs, "a")
	b, errB := parseRevision(qs, "b")
	if err := errors.Join(errA, errB); err != nil {
		return err
	}
	ra, err := c.m.Revision(q.ctx(), q.actor, id, a)
	if err != nil {
		return err
	}
	rb, err := c.m.Revision(q.ctx(), q.actor, id, b)
	if err != nil {
		return err
	}
	ch, err := c.m.Compare(q.ctx(), q.actor, id, a, b)
	if err != nil {
		return err
	}
	v := compareView{Base: c.base(q, t.Name+": revisions "+strconv.FormatInt(a, 10)+" and "+strconv.FormatInt(b, 10)), Task: t, A: a, B: b,
		RevA: revisionRow{Number: ra.Number, At: ra.At, Author: ra.Author, Action: string(ra.Action), Current: ra.Number == t.Revision},
		RevB: revisionRow{Number: rb.Number, At: rb.At, Author: rb.Author, Action: string(rb.Action), Current: rb.Number == t.Revision}}
	for _, x := range ch {
		v.Changes = append(v.Changes, changeRow{Path: x.Path, Old: string(x.Old), New: string(x.New), OldAbsent: len(x.Old) == 0, NewAbsent: len(x.New) == 0})
	}
	return c.render(w, "compare.html", v)
}

type deviceView struct {
	Base
	Task   *task.Task
	Device string
	Result *task.Result
	Events []task.Event
	Next   int64
}

func (c *Console) devicePage(w http.ResponseWriter, q *req) error {
	id := q.r.PathValue("id")
	dev := q.r.PathValue("device")
	if len(dev) > scope.MaxIDLength {
		return errs.Invalid("device", shorten(dev), fmt.Sprintf("is longer than %d bytes", scope.MaxIDLength))
	}
	t, err := c.m.Get(q.ctx(), q.actor, id)
	if err != nil {
		return err
	}
	v := deviceView{Base: c.base(q, t.Name+" on "+dev), Task: t, Device: dev}
	r, err := c.m.Result(q.ctx(), q.actor, id, scope.DeviceID(dev))
	switch {
	case err == nil:
		v.Result = &r
	case !errors.Is(err, task.ErrNotFound):
		return err
	}
	var after int64
	if s := q.r.URL.Query().Get("after"); s != "" {
		after, err = strconv.ParseInt(s, 10, 64)
		if err != nil || after < 0 {
			return errs.Invalid("after", shorten(s), "must be an event id")
		}
	}
	limit := c.cfg.PageSize
	evs, err := c.m.History(q.ctx(), q.actor, id, task.HistoryParams{Device: scope.DeviceID(dev), After: after, Limit: limit + 1})
	if err != nil {
		return err
	}
	if len(evs) > limit {
		evs = evs[:limit]
		v.Next = evs[limit-1].ID
	}
	v.Events = evs
	return c.render(w, "device.html", v)
}

// redirect answers a successful action with 303 to a task page.
func (c *Console) redirect(w http.ResponseWriter, q *req, id, done string) error {
	u := c.cfg.Prefix + "/tasks/" + url.PathEscape(id) + "?done=" + done
	http.Redirect(w, q.r, u, http.StatusSeeOther)
	return nil
}

func (c *Console) start(w http.ResponseWriter, q *req) error {
	id := q.r.PathValue("id")
	if _, err := c.m.Start(q.ctx(), q.actor, id); err != nil {
		return err
	}
	return c.redirect(w, q, id, "start")
}

func (c *Console) startFor(w http.ResponseWriter, q *req) error {
	id := q.r.PathValue("id")
	expect, err := formRevision(q, "expect")
	if err != nil {
		return err
	}
	devs, err := ParseDeviceList(strings.Join(q.r.PostForm["device"], "\n") + "\n" + q.r.PostFormValue("devices"))
	if err != nil {
		return err
	}
	if _, err := c.m.StartFor(q.ctx(), q.actor, id, expect, devs); err != nil {
		return err
	}
	return c.redirect(w, q, id, "start-for")
}

func (c *Console) stop(w http.ResponseWriter, q *req) error {
	id := q.r.PathValue("id")
	if err := c.m.Stop(q.ctx(), q.actor, id); err != nil {
		return err
	}
	return c.redirect(w, q, id, "stop")
}

func (c *Console) suspend(w http.ResponseWriter, q *req) error {
	id := q.r.PathValue("id")
	if _, err := c.m.Suspend(q.ctx(), q.actor, id); err != nil {
		return err
	}
	return c.redirect(w, q, id, "suspend")
}

func (c *Console) resume(w http.ResponseWriter, q *req) error {
	id := q.r.PathValue("id")
	if _, err := c.m.Resume(q.ctx(), q.actor, id); err != nil {
		return err
	}
	return c.redirect(w, q, id, "resume")
}

func (c *Console) rollback(w http.ResponseWriter, q *req) error {
	id := q.r.PathValue("id")
	rev, errR := formRevision(q, "revision")
	expect, errE := formRevision(q, "expect")
	if err := errors.Join(errR, errE); err != nil {
		return err
	}
	if _, err := c.m.Rollback(q.ctx(), q.actor, id, rev, expect); err != nil {
		return err
	}
	return c.redirect(w, q, id, "rollback")
}

func formRevision(q *req, name string) (int64, error) {
	s := q.r.PostFormValue(name)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, errs.Invalid(name, shorten(s), "must be a revision number (1 or more)")
	}
	return n, nil
}

// ParseDeviceList reads the device ids an administrator selected or typed:
// separated by newlines, commas or spaces, duplicates and blanks dropped.
// At most scope.MaxListLength ids of at most scope.MaxIDLength bytes each,
// without control characters.
//
// Errors: ErrInvalid naming the offending entry ("devices[3]").
func ParseDeviceList(s string) ([]scope.DeviceID, error) {
	if len(s) > scope.MaxListLength*(scope.MaxIDLength+2) {
		return nil, errs.Invalid("devices", "", fmt.Sprintf("the list is longer than %d bytes", scope.MaxListLength*(scope.MaxIDLength+2)))
	}
	var out []scope.DeviceID
	seen := map[string]bool{}
	var bad errs.ValidationErrors
	i := 0
	for f := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' || r == ' ' || r == '\t' }) {
		i++
		field := fmt.Sprintf("devices[%d]", i-1)
		switch {
		case len(f) > scope.MaxIDLength:
			bad = append(bad, errs.Invalid(field, shorten(f), fmt.Sprintf("is longer than %d bytes", scope.MaxIDLength)))
		case strings.ContainsFunc(f, func(r rune) bool { return r < 0x20 || r == 0x7f || r == 0xfffd }):
			bad = append(bad, errs.Invalid(field, "", "contains control characters or invalid UTF-8"))
		case seen[f]:
		default:
			if len(out) == scope.MaxListLength {
				return nil, errs.Invalid("devices", "", fmt.Sprintf("at most %d devices", scope.MaxListLength))
			}
			seen[f] = true
			out = append(out, scope.DeviceID(f))
		}
		if len(bad) >= 10 {
			break
		}
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errs.Invalid("devices", "", "select at least one device")
	}
	return out, nil
}
