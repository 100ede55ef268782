package task

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
)

// UnknownMembership is the state Statistics and Results give a device of
// the task's scope whose membership cannot be decided now (scope.Resolve
// lists it in Unknown: a selection reads a fact the device has not
// reported, the device's group or IP addresses are not known, ...) and
// that has no result for the task. Such a device runs nothing until its
// membership is known; listing it tells the administrator which devices
// the task may be missing and why.
//
// It is not a result state: it is computed from the scope at read time,
// never stored, and not in States, so no device can report it (State.Valid
// is false for it). A device that has a result keeps the state of its
// result even when its membership is unknown now.
const UnknownMembership State = "unknown_membership"

// StatisticsStates are the states Statistics.ByState and Results may
// show: every result state (States) and UnknownMembership. A console or
// report that lists counts by state loops over these, so its rows add up
// to Statistics.Total.
var StatisticsStates = append(States[:len(States):len(States)], UnknownMembership)

// unknownCheckOneByOne is how many unknown devices are checked for a
// stored result one store read each; above it, the task's results are
// walked once in pages instead.
const unknownCheckOneByOne = 64

// unknownMembers returns the devices of t's scope whose membership is
// unknown now and that have no result for t, in ascending ID order, with
// the resolution's short reason. Only inventory-resolved scopes (group,
// addresses, selection) can have such devices. A scope that no longer
// resolves (its group was deleted from the inventory) has none: no
// device's membership is decided then.
//
// Cost: one scope.Resolve against the inventory (the same work as Start),
// then one GetResult per unknown device, or, with more than
// unknownCheckOneByOne of them, one walk over the task's results in pages
// of storage.MaxListLimit. Memory is bounded by the resolution.
func (m *Manager) unknownMembers(ctx context.Context, t *Task) ([]scope.UnknownDevice, error) {
	if m.inv == nil {
		return nil, nil
	}
	switch t.Scope.Kind {
	case scope.Group, scope.Addresses, scope.Selection:
	default:
		return nil, nil // devices, local and server scopes decide every device
	}
	res, err := scope.Resolve(ctx, t.Scope, m.inv)
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			m.log.Warn().Err(err).Str("task", t.ID).Msg("the task's scope no longer resolves; no device has an unknown membership")
			return nil, nil
		}
		return nil, fmt.Errorf("task %q: resolve scope: %w", t.ID, err)
	}
	if len(res.Unknown) == 0 {
		return nil, nil
	}
	return m.withoutResults(ctx, t.ID, res.Unknown)
}

// withoutResults returns the devices of unknown (in ascending ID order)
// that have no stored result for task id.
func (m *Manager) withoutResults(ctx context.Context, id string, unknown []scope.UnknownDevice) ([]scope.UnknownDevice, error) {
	out := make([]scope.UnknownDevice, 0, len(unknown))
	if len(unknown) <= unknownCheckOneByOne {
		for _, u := range unknown {
			_, err := m.store.GetResult(ctx, id, string(u.ID))
			switch {
			case errors.Is(err, ErrNotFound):
				out = append(out, u)
			case err != nil:
				return nil, m.storeErr(err, "result of task %q on %q", id, u.ID)
			}
		}
		return out, nil
	}
	// Merge the sorted unknown devices with the task's results, which the
	// store lists in device order.
	i, after := 0, ""
	for i < len(unknown) {
		page, err := m.store.ListResults(ctx, storage.ListResultsParams{TaskID: id, AfterDevice: after, Limit: storage.MaxListLimit})
		if err != nil {
			return nil, m.storeErr(err, "results of task %q", id)
		}
		for _, r := range page {
			for i < len(unknown) && string(unknown[i].ID) < r.DeviceID {
				out = append(out, unknown[i])
				i++
			}
			if i < len(unknown) && string(unknown[i].ID) == r.DeviceID {
				i++ // has a result: counted in its state
			}
		}
		if len(page) < storage.MaxListLimit {
			break
		}
		after = page[len(page)-1].DeviceID
	}
	return append(out, unknown[i:]...), nil
}

// unknownResult is the Result listed for a device of unknown membership;
// its Message is scope.Explain's reason (the resolution's short reason
// when the device cannot be explained any more).
func (m *Manager) unknownResult(ctx context.Context, t *Task, u scope.UnknownDevice) (Result, error) {
	r := Result{TaskID: t.ID, DeviceID: u.ID, State: UnknownMembership, Message: u.Reason}
	e, err := scope.Explain(ctx, t.Scope, m.inv, u.ID)
	switch {
	case err == nil:
		if e.Membership == scope.Unknown && e.Reason != "" {
			r.Message = e.Reason
		}
	case errors.Is(err, scope.ErrNotFound), errors.Is(err, ErrInvalid):
		// Changed since the resolution: keep its reason.
	default:
		return Result{}, fmt.Errorf("task %q: explain device %q: %w", t.ID, u.ID, err)
	}
	if len(r.Message) > MaxResultMessage {
		r.Message = strings.ToValidUTF8(r.Message[:MaxResultMessage], "")
	}
	return r, nil
}

// mergeUnknown merges the stored results recs (a page in device order)
// with the devices of unknown membership after after, and returns the
// first limit of them in device order.
func (m *Manager) mergeUnknown(ctx context.Context, t *Task, recs []Result, unknown []scope.UnknownDevice, after scope.DeviceID, limit int) ([]Result, error) {
	start, _ := slices.BinarySearchFunc(unknown, after, func(u scope.UnknownDevice, id scope.DeviceID) int {
		switch {
		case u.ID < id:
			return -1
		case u.ID > id:
			return 1
		}
		return 0
	})
	if after != "" && start < len(unknown) && unknown[start].ID == after {
		start++
	}
	unknown = unknown[start:]
	out := make([]Result, 0, min(limit, len(recs)+len(unknown)))
	i, j := 0, 0
	for len(out) < limit && (i < len(recs) || j < len(unknown)) {
		if j == len(unknown) || (i < len(recs) && recs[i].DeviceID < unknown[j].ID) {
			out = append(out, recs[i])
			i++
			continue
		}
		r, err := m.unknownResult(ctx, t, unknown[j])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
		j++
	}
	return out, nil
}
