package task_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
)

// Version 2 of a host changed a setting from a comma-separated string to
// a list. Its Migrate hook converts the settings of tasks saved by
// version 1 when they are read; fields version 2 dropped are ignored.
func ExampleTaskType_migrate() {
	ctx := context.Background()
	store := memstore.New()
	admin := task.Actor{ID: "admin"}

	type backupV1 struct {
		Folders  string `json:"folders"`
		Compress bool   `json:"compress"`
	}
	reg1 := task.NewRegistry()
	_ = reg1.Register(task.TaskType{Application: "Backup", ApplicationVersion: "1", Name: "backup", Settings: backupV1{}})
	v1, _ := task.New(task.Config{Store: store, Registry: reg1})
	saved, _ := v1.Create(ctx, admin, task.Task{Name: "Nightly", Application: "Backup", Type: "backup",
		Scope: scope.Scope{Kind: scope.Devices, Devices: []scope.DeviceID{"pc-1"}}, Settings: backupV1{Folders: "C:\\Users,D:\\Data", Compress: true}})

	type backupV2 struct {
		Folders []string `json:"folders"`
	}
	reg2 := task.NewRegistry()
	_ = reg2.Register(task.TaskType{Application: "Backup", ApplicationVersion: "2", Name: "backup", Settings: backupV2{},
		Migrate: func(from string, raw json.RawMessage) (json.RawMessage, error) {
			if from != "1" {
				return raw, nil
			}
			var old struct {
				Folders string `json:"folders"`
			}
			if err := json.Unmarshal(raw, &old); err != nil {
				return nil, err
			}
			return json.Marshal(backupV2{Folders: strings.Split(old.Folders, ",")})
		}})
	v2, _ := task.New(task.Config{Store: store, Registry: reg2})
	t, err := v2.Get(ctx, admin, saved.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%q\n", t.Settings.(backupV2).Folders)
	// Output:
	// ["C:\\Users" "D:\\Data"]
}
