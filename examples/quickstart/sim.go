package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
)

// fleetSim is the simulated fleet: package enginetest's harness (server,
// one agent per device, the in-process channel, a simulated clock) on the
// SQLite store and inventory, plus the quickstart's own restart-prompt
// users.
type fleetSim struct {
	*enginetest.Sim
	store   *sqlstore.Store
	inv     *sqlstore.Inventory
	m       *task.Manager
	srv     *engine.Server
	devices map[scope.DeviceID]scope.Device
	order   []scope.DeviceID
	seed    uint64

	// restart prompt timeline on the devices
	restartTask string
	prompts     int
	accepted    map[scope.DeviceID]bool // the user clicked "Restart now"
	byUser      int                     // restarts the user accepted
	forced      int                     // restarts forced by the policy
	toAccept    []scope.DeviceID
}

// hash is a deterministic per-seed hash of parts.
func hash(seed uint64, parts ...string) uint64 {
	h := fnv.New64a()
	fmt.Fprint(h, seed)
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	// FNV's low bits follow the low bits of the input bytes; mix them
	// (splitmix64's finalizer) so "hash % n" is fair.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// settle lets server, agents and network work at the current instant, then
// applies the "Restart now" clicks of users who saw a prompt (the agent's
// lock is held while it shows the prompt, so the click comes after).
func (s *fleetSim) settle(ctx context.Context) error {
	if err := s.Settle(ctx); err != nil {
		return err
	}
	for _, id := range s.toAccept {
		if a := s.Agent(id); a != nil && a.AcceptRestart(s.restartTask) {
			s.accepted[id] = true
		}
	}
	s.toAccept = s.toAccept[:0]
	return nil
}

// restarter is a device's restart.Device: a quarter of the users keep
// their session locked (the forced restart is then not done and the
// result stays restart_required), a third click "Restart now" at the
// first prompt, the others are restarted when the policy forces it.
type restarter struct {
	s  *fleetSim
	id scope.DeviceID
}

func (r *restarter) ShowPrompt(context.Context, string) error {
	r.s.prompts++
	if hash(r.s.seed, "accept", string(r.id))%3 == 0 {
		r.s.toAccept = append(r.s.toAccept, r.id)
	}
	return nil
}

func (r *restarter) SessionLocked(context.Context) (bool, error) {
	return hash(r.s.seed, "locked", string(r.id))%4 == 0, nil
}

func (r *restarter) CloseApplications(context.Context) error { return nil }

func (r *restarter) Restart(context.Context) error {
	if r.s.accepted[r.id] {
		r.s.byUser++
	} else {
		r.s.forced++
	}
	return nil
}

// behavior is the simulated security application: scans take 10 to 40
// minutes and now and then end with warnings or fail; updates take 3
// minutes; an installation takes 12 minutes and on half of the devices
// needs a restart.
func behavior(seed uint64) func(agent.Run, scope.DeviceID) enginetest.Behavior {
	return func(r agent.Run, id scope.DeviceID) enginetest.Behavior {
		h := hash(seed, r.TaskID, string(id), fmt.Sprint(r.RunID))
		b := enginetest.Behavior{State: task.Completed, Duration: 3 * time.Minute}
		switch r.Type {
		case "virus_scan":
			b.Duration = time.Duration(10+h%31) * time.Minute
			switch h % 50 {
			case 0:
				b.State, b.Message = task.Failed, "scan engine error 0x80070005"
			case 1, 2:
				b.State, b.Message = task.CompletedWithWarnings, "2 objects could not be disinfected"
			}
		case "install_application":
			b.Duration = 12 * time.Minute
			b.RestartRequired = h%2 == 0
		}
		return b
	}
}

// record is one run a device's security application started.
type record struct {
	Task    string
	Device  scope.DeviceID
	RunID   int64
	At, Due time.Time
	Started time.Time
}

// records returns every run started, ordered by start, task and device.
func (s *fleetSim) records() []record {
	var out []record
	for k, rs := range s.Exec.All() {
		for _, r := range rs {
			out = append(out, record{Task: k.Task, Device: k.Device, RunID: r.RunID, At: r.At, Due: r.Due, Started: r.StartedAt})
		}
	}
	slices.SortFunc(out, func(a, b record) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		if c := strings.Compare(a.Task, b.Task); c != 0 {
			return c
		}
		return strings.Compare(string(a.Device), string(b.Device))
	})
	return out
}
