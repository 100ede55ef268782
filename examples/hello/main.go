// Command hello is taskfleet's hello world: a server, three devices in
// three time zones, one task scheduled every day at 09:00 device time, and
// one simulated day, all in memory. It prints the task's statistics.
//
//	go run ./examples/hello
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

func main() {
	ctx, clk := context.Background(), clock.NewMock()
	clk.Set(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	store, inv := memstore.New(), inmem.New() // or SQLite, PostgreSQL: see the README
	must(inv.PutGroups(ctx, scope.AdminGroup{ID: "office", Name: "Office"}))
	reg := task.NewRegistry()
	must(reg.Register(task.TaskType{Application: "Antivirus", Name: "scan"}))
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk})
	must(err)
	m, err := task.New(task.Config{Store: store, Registry: reg, Inventory: inv, Dispatcher: srv, Clock: clk})
	must(err)
	net := inproc.New(inproc.Config{Clock: clk}) // the device channel; over a network: examples/httptransport
	must(srv.Open(ctx, m, net.Server(srv)))
	var agents []*agent.Agent
	for i, zone := range []string{"Europe/Berlin", "America/New_York", "Asia/Tokyo"} {
		d := scope.Device{ID: scope.DeviceID(fmt.Sprint("pc-", i)), GroupID: "office", TimeZone: zone, Connected: true,
			Applications: map[string]scope.AppState{"Antivirus": {Installed: true, Running: true}}}
		must(inv.PutDevices(ctx, d))
		loc, _ := time.LoadLocation(zone)
		a, err := agent.New(ctx, agent.Config{Device: d.ID, Store: agent.NewMemStore(), Executor: scanner{}, Location: loc, Clock: clk})
		must(err)
		a.Attach(net.Device(d.ID, a)) // the agent is the channel's handler
		net.Connect(d.ID)
		agents = append(agents, a)
	}
	daily := schedule.Default(schedule.EveryDays, clk.Now(), time.UTC)
	daily.Time = schedule.Clock(9, 0, 0) // 09:00 on each device's own clock
	scan, err := m.Create(ctx, task.System, task.Task{Name: "Daily scan", Application: "Antivirus", Type: "scan",
		Schedule: daily, Scope: scope.Scope{Kind: scope.Group, Group: "office"}})
	must(err)
	for range 24 * 4 { // one simulated day in 15-minute steps
		clk.Add(15 * time.Minute)
		must(srv.Tick(ctx))
		for _, a := range agents {
			must(a.Tick(ctx))
		}
		for net.Pump(ctx) > 0 { // deliver until the channel is idle
		}
	}
	st, err := m.Statistics(ctx, task.System, scan.ID)
	must(err)
	fmt.Printf("%s: %d devices, %v, %.0f%% complete\n", scan.Name, st.Total, st.ByState, st.PercentComplete)
}

// scanner is the device's security application: every scan completes.
type scanner struct{}

func (scanner) AppRunning(context.Context, string) bool { return true }
func (scanner) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	done(agent.Outcome{State: transport.StateCompleted})
	return nil
}
func (scanner) Stop(context.Context, string, int64) error { return nil }

func must(err error) {
	if err != nil {
		panic(err)
	}
}
