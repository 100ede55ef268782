package klt_test

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

var (
	propCases = flag.Int("klt.cases", 1000, "random tasks in TestRoundTripProperty")
	propSeed  = flag.Uint64("klt.seed", 1, "seed of TestRoundTripProperty")
)

// gen generates valid random tasks covering every field of the model.
type gen struct {
	r      *rand.Rand
	sealer credentials.Sealer
}

// text returns a string with characters that need escaping in JSON.
func (g gen) text(maxRunes int, ctrlOK bool) string {
	alphabet := []rune("abcXYZ019 _-.,:;\"'\\/<>&{}[]äöüßéÅ日本語🙂\u2028\u00a0")
	if ctrlOK {
		alphabet = append(alphabet, '\n', '\t', '\r')
	}
	n := 1 + g.r.IntN(maxRunes)
	var b strings.Builder
	for range n {
		b.WriteRune(alphabet[g.r.IntN(len(alphabet))])
	}
	return b.String()
}

func (g gen) name() string {
	for {
		s := strings.TrimSpace(g.text(40, false))
		if s != "" {
			return s
		}
	}
}

func (g gen) instant() time.Time {
	t := time.Date(2000+g.r.IntN(60), time.Month(1+g.r.IntN(12)), 1+g.r.IntN(28), g.r.IntN(24), g.r.IntN(60), g.r.IntN(60), 0, time.UTC)
	if g.r.IntN(3) == 0 {
		t = t.Add(time.Duration(g.r.IntN(1e9))) // fractions of a second survive too
	}
	return t
}

func (g gen) timeOfDay() schedule.TimeOfDay {
	return schedule.Clock(g.r.IntN(24), g.r.IntN(60), g.r.IntN(60))
}

func (g gen) schedule() schedule.Schedule {
	k := schedule.Kinds[g.r.IntN(len(schedule.Kinds))]
	s := schedule.Schedule{Kind: k}
	switch k {
	case schedule.Once:
		s.At = g.instant()
	case schedule.Immediately:
		s.SavedAt = g.instant()
	case schedule.EveryMinutes:
		s.Every, s.Start = 1+g.r.IntN(schedule.MaxEveryMinutes), g.instant()
	case schedule.EveryHours:
		s.Every, s.Start = 1+g.r.IntN(schedule.MaxEveryHours), g.instant()
	case schedule.EveryDays:
		s.Every, s.StartDate, s.Time = 1+g.r.IntN(schedule.MaxEveryDays), schedule.DateOf(g.instant()), g.timeOfDay()
	case schedule.Weekly:
		s.Weekdays, s.Time = schedule.Weekdays(1+g.r.IntN(127)), g.timeOfDay()
	case schedule.Monthly:
		s.Day, s.Time = 1+g.r.IntN(31), g.timeOfDay()
	case schedule.NthWeekday:
		s.Weeks, s.Weekdays, s.Time = schedule.Weeks(1+g.r.IntN(31)), schedule.Weekdays(1+g.r.IntN(127)), g.timeOfDay()
	case schedule.OnVirusOutbreak:
		s.AppTypes = schedule.AppTypes(1 + g.r.IntN(7))
	case schedule.OnTaskCompletion:
		s.TaskID = fmt.Sprintf("task-%d", g.r.IntN(1000))
		s.Status = []schedule.CompletionStatus{schedule.Completed, schedule.Failed}[g.r.IntN(2)]
	}
	s.RunMissed = g.r.IntN(2) == 0
	s.RandomDelay = schedule.RandomDelay{Mode: []schedule.DelayMode{schedule.DelayOff, schedule.DelayAutomatic, schedule.DelayInterval}[g.r.IntN(3)],
		IntervalMinutes: 1 + g.r.IntN(schedule.MaxDelayMinutes)}
	s.StopAfter = schedule.Limit{Enabled: g.r.IntN(2) == 0, Minutes: 1 + g.r.IntN(schedule.MaxStopAfterMinutes)}
	s.WakeOnLAN = schedule.Limit{Enabled: g.r.IntN(2) == 0, Minutes: 1 + g.r.IntN(schedule.MaxWakeMinutes)}
	s.ShutdownAfter = g.r.IntN(2) == 0
	return s
}

func (g gen) id(prefix string) string {
	if g.r.IntN(2) == 0 {
		return fmt.Sprint(g.r.IntN(100000)) // numeric, like the Open API's group ids
	}
	return fmt.Sprintf("%s-%d", prefix, g.r.IntN(100000))
}

func (g gen) scope() scope.Scope {
	switch g.r.IntN(5) {
	case 0:
		return scope.Scope{Kind: scope.Local, Device: scope.DeviceID(g.id("dev"))}
	case 1:
		s := scope.Scope{Kind: scope.Group, Group: scope.GroupID(g.id("grp"))}
		if g.r.IntN(3) == 0 {
			s.GroupOnly = true
			return s
		}
		s.DistributeToServers = g.r.IntN(2) == 0
		for i := range g.r.IntN(4) {
			s.ExcludedGroups = append(s.ExcludedGroups, scope.GroupID(fmt.Sprintf("ex-%d-%d", i, g.r.IntN(100))))
		}
		return s
	case 2:
		s := scope.Scope{Kind: scope.Devices}
		for i := range 1 + g.r.IntN(4) {
			s.Devices = append(s.Devices, scope.DeviceID(fmt.Sprintf("dev-%d-%d", i, g.r.IntN(100))))
		}
		return s
	case 3:
		s := scope.Scope{Kind: scope.Addresses}
		for i := range 1 + g.r.IntN(4) {
			var text string
			switch g.r.IntN(5) {
			case 0:
				text = fmt.Sprintf("10.%d.%d.%d", i, g.r.IntN(256), g.r.IntN(256))
			case 1:
				text = fmt.Sprintf("172.16.%d.0/24", 10*i+g.r.IntN(10))
			case 2:
				text = fmt.Sprintf("PC%d%03d", i, g.r.IntN(1000))
			case 3:
				text = fmt.Sprintf("host%d-%d.example.com", i, g.r.IntN(1000))
			default:
				text = fmt.Sprintf("2001:db8::%x:%x", i, g.r.IntN(65536))
			}
			a, err := scope.ParseAddress(text)
			if err != nil {
				panic(err)
			}
			s.Addresses = append(s.Addresses, a)
		}
		return s
	}
	sels := []string{`device.connected`, `"vip" in device.tags`, `device.os.name.startsWith("Windows")`}
	s := scope.Scope{Kind: scope.Selection, Selection: sels[g.r.IntN(len(sels))]}
	if g.r.IntN(2) == 0 {
		s.SelectionName = g.name()
	}
	return s
}

func (g gen) restart() restart.Policy {
	p := restart.Policy{Action: []restart.Action{restart.DoNotRestart, restart.Restart, restart.Prompt}[g.r.IntN(3)],
		RepeatPrompt:     restart.Interval{Enabled: g.r.IntN(2) == 0, Minutes: 1 + g.r.IntN(restart.MaxMinutes)},
		RestartAfter:     restart.Interval{Enabled: g.r.IntN(2) == 0, Minutes: 1 + g.r.IntN(restart.MaxMinutes)},
		ForceCloseLocked: g.r.IntN(2) == 0}
	if p.Action == restart.Prompt && g.r.IntN(2) == 0 {
		p.Message = g.text(100, true)
	}
	return p
}

func (g gen) task() *task.Task {
	x := &task.Task{ID: "src", Name: g.name(), Schedule: g.schedule(), Scope: g.scope(), Restart: g.restart(),
		Suspended: g.r.IntN(4) == 0, Revision: 7, SettingsRevision: 5, CreatedAt: start, UpdatedAt: start, CreatedBy: "a", UpdatedBy: "b"}
	if g.r.IntN(2) == 0 {
		x.Description = g.text(200, true)
	}
	switch g.r.IntN(3) {
	case 0:
		x.Application, x.ApplicationVersion, x.Type = appES, "12.1", "virus_scan"
		st := &ScanSettings{ScanArchives: g.r.IntN(2) == 0, MaxFileSizeMB: 1 + g.r.IntN(4096),
			Action: []string{"disinfect", "delete", "report"}[g.r.IntN(3)], Quota: g.r.Int64() - g.r.Int64()/2}
		for range g.r.IntN(4) {
			st.Paths = append(st.Paths, g.name())
		}
		if g.r.IntN(2) == 0 {
			st.Ratio = g.r.NormFloat64() * 1e6
		}
		if g.r.IntN(2) == 0 {
			st.Exclusions = map[string]string{}
			for range 1 + g.r.IntN(3) {
				st.Exclusions[g.name()] = g.text(20, true)
			}
		}
		x.Settings = st
	case 1:
		x.Application, x.ApplicationVersion, x.Type = appES, "", "update"
		x.Settings = UpdateSettings{Source: g.name()}
	default:
		x.Application, x.Type = appAgent, "inventory"
	}
	if g.r.IntN(3) == 0 {
		a, err := credentials.Specify(g.name(), credentials.NewSecret("pw-"+g.name()), g.sealer)
		if err != nil {
			panic(err)
		}
		x.Account = a
	}
	n := task.Notifications{History: []task.HistoryLevel{"", task.HistoryAll, task.HistoryProgress, task.HistoryResults}[g.r.IntN(4)],
		NoServerHistory: g.r.IntN(4) == 0, DeviceEventLog: g.r.IntN(2) == 0, ErrorsOnly: g.r.IntN(2) == 0}
	if !n.NoServerHistory && g.r.IntN(2) == 0 {
		n.RetentionDays = 1 + g.r.IntN(task.MaxRetentionDays)
	}
	for i := range g.r.IntN(3) {
		n.Email = append(n.Email, fmt.Sprintf("u%d.%d@example.com", i, g.r.IntN(100)))
	}
	x.Notifications = n
	if x.Scope.Kind != scope.Group {
		perms := []task.Permission{task.PermRead, task.PermModify, task.PermExecute, task.PermDelete}
		for i := range g.r.IntN(3) {
			x.Security.ACL = append(x.Security.ACL, task.AccessEntry{Principal: fmt.Sprintf("user%d", i),
				Allow: perms[:1+g.r.IntN(4)], Deny: perms[g.r.IntN(4):]})
		}
	}
	return x
}

// TestRoundTripProperty exports random tasks, imports them and exports
// them again: the import equals the task except id, name suffix, scope
// (recorded as SourceScope), timestamps, revisions and the password, and
// the second export is byte-identical to the first.
func TestRoundTripProperty(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	b := setup(t)
	g := gen{r: rand.New(rand.NewPCG(*propSeed, 0x6b6c74)), sealer: b.seal}
	t.Logf("seed %d, %d cases", *propSeed, *propCases)
	for i := range *propCases {
		x := g.task()
		for _, err := range []error{x.Schedule.Validate(), x.Scope.Validate(), x.Restart.Validate(), x.Account.Validate()} {
			if err != nil {
				t.Fatalf("case %d: the generator made an invalid task: %v", i, err)
			}
		}
		when := exportTime.Add(time.Duration(i) * time.Second)
		out, rep, err := klt.Export(x, lookup(t, reg, x), klt.ExportOptions{Time: when})
		if err != nil {
			t.Fatalf("case %d: export: %v", i, err)
		}
		if rep.PasswordDropped != !x.Account.IsDefault() {
			t.Fatalf("case %d: report %+v", i, rep)
		}
		imp, err := klt.Parse(bytes.NewReader(out), reg, klt.ParseOptions{})
		if err != nil {
			t.Fatalf("case %d: parse: %v\n%s", i, err, out)
		}
		if d := roundTripDiff(x, imp); d != "" {
			t.Fatalf("case %d: import differs (-want +got):\n%s\n%s", i, d, out)
		}
		y := imp.Task
		y.Scope, y.Account = *imp.SourceScope, x.Account
		again, _, err := klt.Export(&y, lookup(t, reg, &y), klt.ExportOptions{Time: when})
		if err != nil {
			t.Fatalf("case %d: re-export: %v", i, err)
		}
		if !bytes.Equal(out, again) {
			t.Fatalf("case %d: export -> import -> export differs:\n%s\n%s", i, out, again)
		}
	}
}
