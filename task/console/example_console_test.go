package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/console"
)

// A host mounts the console under a prefix of its own server, with its
// own login deciding the actor.
func Example() {
	ctx := context.Background()
	reg := task.NewRegistry()
	_ = reg.Register(task.TaskType{Application: "Administration Server", Name: "backup", ServerTask: true})
	m, _ := task.New(task.Config{Store: memstore.New(), Registry: reg})
	admin := task.Actor{ID: "admin"}
	_, _ = m.Create(ctx, admin, task.Task{Name: "Nightly backup", Application: "Administration Server", Type: "backup", Scope: scope.Scope{Kind: scope.Server}})

	c, err := console.New(console.Config{
		Manager: m,
		Prefix:  "/console",
		Actor: func(r *http.Request) (task.Actor, error) {
			// The host's own login: a session, a header from its proxy.
			return admin, nil
		},
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", c)

	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/console/", nil))
	fmt.Println(w.Code, strings.Contains(w.Body.String(), "Nightly backup"))
	// Output: 200 true
}
