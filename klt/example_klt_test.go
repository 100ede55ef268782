package klt_test

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
)

// A console exports a task to a KLT file, then imports the file in two
// steps: Parse shows what will be imported, Commit creates the task in the
// scope the administrator picks. The name is taken, so the import gets
// " (1)".
func Example() {
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))

	inv := inmem.New()
	_ = inv.PutGroups(ctx, scope.AdminGroup{ID: "office", Name: "Office"}, scope.AdminGroup{ID: "lab", Name: "Lab"})

	type ScanSettings struct {
		ScanArchives bool `json:"scan_archives"`
		MaxFileMB    int  `json:"max_file_mb" validate:"min=1,max=4096"`
	}
	reg := task.NewRegistry()
	_ = reg.Register(task.TaskType{Application: "Endpoint Security", Name: "virus_scan", Settings: ScanSettings{MaxFileMB: 100}})
	m, _ := task.New(task.Config{Store: memstore.New(), Registry: reg, Inventory: inv, Clock: clk})
	admin := task.Actor{ID: "admin"}

	sealer, _ := credentials.NewAESGCM(credentials.AESGCMConfig{
		Keys: []credentials.Key{{ID: "k1", Material: make([]byte, 32)}}, ActiveKeyID: "k1"})
	account, _ := credentials.Specify(`CORP\svc-scan`, credentials.NewSecret("s3cret!"), sealer)

	weekly := schedule.Default(schedule.Weekly, clk.Now(), time.UTC) // Fridays 18:00
	weekly.RunMissed = true
	src, err := m.Create(ctx, admin, task.Task{
		Name: "Friday scan", Application: "Endpoint Security", Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "office"}, Schedule: weekly, Account: account,
		Settings: ScanSettings{ScanArchives: true, MaxFileMB: 250},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Export: the password stays behind, the account name travels.
	tt, _ := reg.Lookup(src.Application, src.Type)
	file, report, err := klt.Export(src, tt, klt.ExportOptions{Clock: clk})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("exported; password dropped:", report.PasswordDropped)

	// Step 1: parse and validate; nothing is stored yet.
	imp, err := klt.Parse(bytes.NewReader(file), reg, klt.ParseOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("will import %q (%s/%s), %s schedule, run missed %v\n",
		imp.Task.Name, imp.Task.Application, imp.Task.Type, imp.Task.Schedule.Kind, imp.Task.Schedule.RunMissed)
	fmt.Printf("settings %+v, exported from group %q\n", imp.Task.Settings, imp.SourceScope.Group)
	for _, w := range imp.Warnings {
		fmt.Println("warning:", w.Code, w.Path)
	}

	// Step 2: the administrator picks the scope and re-enters the password.
	imp.Task.Account, _ = credentials.Specify(imp.AccountName, credentials.NewSecret("s3cret!"), sealer)
	created, err := imp.Commit(ctx, m, admin, scope.Scope{Kind: scope.Group, Group: "lab"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("imported %q into group %q, next start %s\n", created.Name, created.Scope.Group,
		func() string { t, _ := created.Schedule.Next(clk.Now(), time.UTC); return t.Format(time.RFC1123) }())

	// Output:
	// exported; password dropped: true
	// will import "Friday scan" (Endpoint Security/virus_scan), weekly schedule, run missed true
	// settings {ScanArchives:true MaxFileMB:250}, exported from group "office"
	// warning: credentials_required task.TASK_ADDITIONAL_PARAMS.klprts-TaskAccountUser
	// imported "Friday scan (1)" into group "lab", next start Fri, 20 Nov 2026 18:00:00 UTC
}
