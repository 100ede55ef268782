package agent_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/task/agent"
)

type secretExec struct {
	exec
	got agent.Run
}

func (x *secretExec) Start(ctx context.Context, r agent.Run, done func(agent.Outcome)) error {
	x.got = r
	return x.exec.Start(ctx, r, done)
}

// "Specify account": the agent opens the sealed password at run time and
// hands it to the executor only; it never reaches logs or reports.
func TestRunAsAccountPasswordReachesOnlyTheExecutor(t *testing.T) {
	t.Parallel()
	sealer, err := credentials.NewAESGCM(credentials.AESGCMConfig{Keys: []credentials.Key{{ID: "k1", Material: bytes.Repeat([]byte{7}, 32)}}, ActiveKeyID: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	acct, err := credentials.Specify("CORP\\svc-scan", credentials.NewSecret("s3cret-pa55"), sealer)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	x := &secretExec{exec: exec{running: true}}
	clk := clock.NewMock()
	clk.Set(t0)
	a, err := agent.New(context.Background(), agent.Config{Device: "d1", Store: agent.NewMemStore(), Executor: x, Clock: clk, Sealer: sealer, Logger: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	ep := &endpoint{}
	a.Attach(ep)
	d := manualDef(restart.Default())
	d.Task.Account = acct
	start(a, d, 1)
	if err := a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if x.got.Password.Reveal() != "s3cret-pa55" {
		t.Fatal("the executor did not get the opened password")
	}
	var sent strings.Builder
	for _, m := range ep.sent {
		sent.WriteString(strings.Join(m.Merged, ","))
		for _, r := range m.Results {
			sent.WriteString(r.Message)
		}
	}
	if strings.Contains(sent.String()+logs.String(), "s3cret-pa55") {
		t.Error("the password leaked into reports or logs")
	}
}
