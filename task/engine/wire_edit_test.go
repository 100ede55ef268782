package engine_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// A protocol 2 agent edits its local task by sending the whole task back.
// Its owner device's edit is merged, but only in what a device user may
// change: an access list, a scope or e-mail recipients in the document
// are not taken (devices are no longer sent them, and they are the
// server's to set).
func TestLocalEditOfProtocol2TakesOnlyDeviceFields(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	tk := b.create(t, task.Task{Scope: scope.Scope{Kind: scope.Local, Device: "d00001"}, Description: "v1",
		Notifications: task.Notifications{Email: []string{"admin@example.com"}}})
	doc := *tk
	doc.Description = "edited by the user"
	doc.Security.ACL = []task.AccessEntry{{Principal: "attacker", Allow: []task.Permission{task.PermModify}}}
	doc.Scope = scope.Scope{Kind: scope.Group, Group: "g-all"}
	doc.Notifications.Email = []string{"attacker@example.com"}
	body, err := json.Marshal(doc)
	must(t, err)
	b.inject(t, "d00001", fmt.Sprintf(`{"version":2,"kind":"local_edit","key":"e-1","edit":{"user":"bob","baseRevision":%d,"task":%s}}`, tk.Revision, body))
	b.step(t, 10*time.Minute)
	got, err := b.sim.Manager.Get(b.ctx, task.System, tk.ID)
	must(t, err)
	if got.Description != "edited by the user" {
		t.Errorf("description %q: the owner's edit was not merged", got.Description)
	}
	if len(got.Security.ACL) != 0 || got.Scope.Kind != scope.Local || got.Scope.Device != "d00001" ||
		len(got.Notifications.Email) != 1 || got.Notifications.Email[0] != "admin@example.com" {
		t.Errorf("the device changed server-only fields: ACL %v, scope %+v, e-mail %v", got.Security.ACL, got.Scope, got.Notifications.Email)
	}
}
