package klt

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/task"
)

// The task's notification settings: TASK_INFO_PARAMS.KLPRSS_EVPNotifications
// (see the package documentation, "Notifications", for the pages and the
// reading chosen).
const (
	keyNotifications = "KLPRSS_EVPNotifications"

	ndEventType  = "KLEVP_ND_EVETN_TYPE" // sic: the public name
	ndBodyFilter = "KLEVP_ND_BODY_FILTER"
	ndDays       = "KLEVP_ND_DAYS_TO_STORE_EVENT"
	ndClientLog  = "KLEVP_ND_STORE_AT_CLIENT_LOG"
	ndServerLog  = "KLEVP_ND_STORE_AT_SERVER_LOG"
	ndClientPres = "KLEVP_ND_STORE_AT_CLIENT_PRES"
	ndUseEmail   = "KLEVP_ND_USE_EMAIL"
	ndEmail      = "KLEVP_ND_EMAIL"

	// evTaskState is the event type of a task's state changes, and
	// ndNewState the member of its body that holds the new state.
	evTaskState = "KLPRCI_TaskState"
	ndNewState  = "KLPRCI_newState"
	// The new states of a task's final results: failed and completed.
	stateFailed    = 3
	stateCompleted = 4
)

// Severity keys of the container: written ERR, WRN and INF (taskfleet's
// severities); CRT (critical) is read like ERR.
const (
	sevError    = "ERR"
	sevWarning  = "WRN"
	sevInfo     = "INF"
	sevCritical = "CRT"
)

// notificationsNode writes n as a KLPRSS_EVPNotifications params
// container: one event descriptor per severity.
func notificationsNode(n task.Notifications) *node {
	days := int64(0)
	if keep, stored := n.Retention(); stored {
		days = int64(keep / (24 * time.Hour))
	}
	obj := newObject()
	for _, sev := range []string{sevError, sevWarning, sevInfo} {
		d := newObject()
		switch n.Level() {
		case task.HistoryAll:
			d.set(ndEventType, strNode(""))
		case task.HistoryResults:
			d.set(ndEventType, strNode(evTaskState))
			state := stateCompleted
			if sev == sevError {
				state = stateFailed
			}
			f := newObject()
			f.set(ndNewState, numNode(fmt.Sprint(state)))
			d.set(ndBodyFilter, paramsNode(f))
		default: // progress
			d.set(ndEventType, strNode(evTaskState))
		}
		d.set(ndDays, intNode(days))
		d.set(ndClientLog, boolNode(n.DeviceEventLog))
		d.set(ndServerLog, boolNode(false))
		d.set(ndClientPres, boolNode(false))
		d.set(ndUseEmail, boolNode(sev == sevError || !n.ErrorsOnly))
		d.set(ndEmail, strNode(strings.Join(n.Email, ",")))
		obj.set(sev, &node{kind: kArray, kids: []*node{paramsNode(d)}})
	}
	return paramsNode(obj)
}

// notificationsFromPublic reads a KLPRSS_EVPNotifications container. A
// value of the wrong type or out of range is refused at its path; details
// task.Notifications cannot hold (other channels, event types,
// severities) are not refused: the caller compares the container with
// notificationsNode of the result and keeps the original when they differ.
func (p *parser) notificationsFromPublic(n *node, path string) (task.Notifications, bool) {
	var out task.Notifications
	obj, err := paramsObject(n, path, false)
	if err != nil {
		p.fail(err)
		return out, false
	}
	before := len(p.bad)
	var all, progress, results, clientLog bool
	days := int64(-1)
	useEmail := map[string]bool{}
	var email string
	emailSet := false
	for i, sev := range obj.keys {
		switch sev {
		case sevError, sevWarning, sevInfo, sevCritical:
		default:
			continue // not a severity this version reads: kept verbatim
		}
		sevPath := join(path, sev)
		arr := obj.kids[i]
		if arr.kind != kArray {
			p.fail(errs.Invalid(sevPath, "", "must be an array of event descriptors (params)"))
			continue
		}
		for j, dn := range arr.kids {
			dpath := fmt.Sprintf("%s[%d]", sevPath, j)
			d, err := paramsObject(dn, dpath, false)
			if err != nil {
				p.fail(err)
				continue
			}
			et, _ := p.str(d, ndEventType, join(dpath, ndEventType), false)
			switch {
			case et == "":
				all = true
			case et == evTaskState && d.get(ndBodyFilter) == nil:
				progress = true
			case et == evTaskState:
				results = true
			}
			if v, ok := p.pubIntIn(d, ndDays, join(dpath, ndDays), 0, task.MaxRetentionDays, -1); ok && v >= 0 && days < 0 {
				days = v
			}
			if b, _ := p.boolean(d, ndClientLog, join(dpath, ndClientLog)); b {
				clientLog = true
			}
			p.boolean(d, ndServerLog, join(dpath, ndServerLog))
			p.boolean(d, ndClientPres, join(dpath, ndClientPres))
			if b, _ := p.boolean(d, ndUseEmail, join(dpath, ndUseEmail)); b {
				useEmail[sev] = true
				if s, ok := p.str(d, ndEmail, join(dpath, ndEmail), false); ok && !emailSet {
					email, emailSet = s, true
				}
			} else {
				p.str(d, ndEmail, join(dpath, ndEmail), false)
			}
		}
	}
	switch {
	case all:
		out.History = task.HistoryAll
	case progress:
		// the default level (DefaultHistory)
	case results:
		out.History = task.HistoryResults
	}
	switch {
	case days == 0:
		out.NoServerHistory = true
	case days > 0 && days != task.DefaultRetentionDays:
		out.RetentionDays = int(days)
	}
	out.DeviceEventLog = clientLog
	out.ErrorsOnly = (useEmail[sevError] || useEmail[sevCritical]) && !useEmail[sevWarning] && !useEmail[sevInfo]
	if strings.Count(email, ",") >= task.MaxEmailRecipients {
		// Counted before splitting, so a list of commas costs nothing.
		p.fail(errs.Invalid(path, "", fmt.Sprintf("%s must list at most %d recipients", ndEmail, task.MaxEmailRecipients)))
		return out, false
	}
	for _, a := range strings.Split(email, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out.Email = append(out.Email, a)
		}
	}
	p.fail(errs.Prefix(path, checkNotifications(out)))
	return out, len(p.bad) == before
}

// equalNotifications reports whether a and b are the same settings (an
// explicit default level or retention equals the zero value).
func equalNotifications(a, b task.Notifications) bool {
	a, b = canonicalNotifications(a), canonicalNotifications(b)
	return a.History == b.History && a.NoServerHistory == b.NoServerHistory && a.RetentionDays == b.RetentionDays &&
		a.DeviceEventLog == b.DeviceEventLog && a.ErrorsOnly == b.ErrorsOnly && slices.Equal(a.Email, b.Email)
}

// notificationsOf reads a KLPRSS_EVPNotifications value kept verbatim (an
// opaque or extra field) and reports whether it reads as n: only then is
// it written instead of the task's own container, so that a server's
// details survive while the task's notifications are unchanged.
func notificationsOf(v *node, n task.Notifications) bool {
	q := &parser{imp: &Import{}}
	got, ok := q.notificationsFromPublic(v, keyNotifications)
	return ok && equalNotifications(got, n)
}

// canonicalNotifications writes the default level and retention as their
// zero values, as Parse reads them.
func canonicalNotifications(n task.Notifications) task.Notifications {
	if n.History == task.DefaultHistory {
		n.History = ""
	}
	if n.RetentionDays == task.DefaultRetentionDays {
		n.RetentionDays = 0
	}
	return n
}
