package task_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
)

// Settings types that cannot survive being stored and read back are
// refused at Register (a Secret field was stored as "[REDACTED]" and the
// password lost, and the task then broke Get, List and Delete).
func TestRegisterRefusesSettingsThatCannotRoundTrip(t *testing.T) {
	t.Parallel()
	type withSecret struct {
		Token credentials.Secret `json:"token"`
	}
	type nested struct {
		Hosts []struct {
			Password credentials.Secret `json:"password"`
		} `json:"hosts"`
	}
	type withAny struct {
		Extra any `json:"extra"`
	}
	type withFunc struct {
		F func() `json:"f"`
	}
	type withMapKey struct {
		M map[[2]int]string `json:"m"`
	}
	type sealedOK struct {
		Token credentials.Sealed `json:"token"`
		Skip  credentials.Secret `json:"-"`
	}
	for _, c := range []struct {
		name     string
		settings any
		ok       bool
	}{
		{"secret field", withSecret{}, false},
		{"secret deep in a slice", &nested{}, false},
		{"interface field", withAny{}, false},
		{"func field", withFunc{}, false},
		{"map with array keys", withMapKey{}, false},
		{"sealed and skipped fields", sealedOK{}, true},
	} {
		err := task.NewRegistry().Register(task.TaskType{Application: "A", Name: "t", Settings: c.settings})
		if c.ok && err != nil {
			t.Errorf("%s: refused: %v", c.name, err)
		}
		if !c.ok && !errors.Is(err, task.ErrInvalid) {
			t.Errorf("%s: Register = %v, want ErrInvalid", c.name, err)
		}
	}
}

// Versions of a host's settings type, as if the host shipped v1, then v2.
type settingsV1 struct {
	Source  string `json:"source"`
	Retries string `json:"retries,omitempty"`
	Legacy  bool   `json:"legacy"`
}

type settingsV2 struct {
	Source  string `json:"source"`
	Retries int    `json:"retries"`
}

func managerWith(t *testing.T, st *memstore.Store, tt task.TaskType, authz task.Authorizer) *task.Manager {
	t.Helper()
	reg := task.NewRegistry()
	tt.Application, tt.Name = appES, "sync"
	must(t, reg.Register(tt))
	clk := clock.NewMock()
	clk.Set(start)
	m, err := task.New(task.Config{Store: st, Registry: reg, Clock: clk, Authorizer: authz})
	must(t, err)
	return m
}

func TestStoredSettingsDecodeAcrossVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memstore.New()
	v1 := managerWith(t, st, task.TaskType{ApplicationVersion: "1", Settings: settingsV1{Source: "ksn"}}, nil)
	admin := task.Actor{ID: "admin"}
	old, err := v1.Create(ctx, admin, task.Task{Name: "Sync", Application: appES, Type: "sync", Scope: devicesScope("dev-01"),
		Settings: settingsV1{Source: "mirror", Retries: "3", Legacy: true}})
	must(t, err)

	t.Run("unknown fields are ignored", func(t *testing.T) {
		type v1b struct {
			Source  string `json:"source"`
			Retries string `json:"retries"`
		}
		m := managerWith(t, st, task.TaskType{ApplicationVersion: "1", Settings: v1b{}}, nil)
		got, err := m.Get(ctx, admin, old.ID)
		must(t, err)
		if d := cmp.Diff(v1b{Source: "mirror", Retries: "3"}, got.Settings); d != "" {
			t.Fatalf("settings (-want +got):\n%s", d)
		}
	})
	t.Run("the migration hook converts them", func(t *testing.T) {
		var from string
		m := managerWith(t, st, task.TaskType{ApplicationVersion: "2", Settings: settingsV2{},
			Migrate: func(version string, raw json.RawMessage) (json.RawMessage, error) {
				from = version
				var s settingsV1
				if err := json.Unmarshal(raw, &s); err != nil {
					return nil, err
				}
				n := len(s.Retries) // "3" -> 1, a toy conversion
				return json.Marshal(settingsV2{Source: s.Source, Retries: n})
			}}, nil)
		got, err := m.Get(ctx, admin, old.ID)
		must(t, err)
		if d := cmp.Diff(settingsV2{Source: "mirror", Retries: 1}, got.Settings); d != "" || from != "1" {
			t.Fatalf("from %q, settings (-want +got):\n%s", from, d)
		}
	})
}

// A task whose stored settings no longer decode is reported, not fatal:
// Get gives a typed error without the stored value, List lists every
// other task and marks it, Delete removes it.
func TestUndecodableTaskIsIsolated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memstore.New()
	admin := task.Actor{ID: "admin"}
	v1 := managerWith(t, st, task.TaskType{ApplicationVersion: "1", Settings: settingsV1{}}, nil)
	var ids []string
	for _, name := range []string{"A", "B", "C"} {
		x, err := v1.Create(ctx, admin, task.Task{Name: name, Application: appES, Type: "sync", Scope: devicesScope("dev-01"),
			Settings: settingsV1{Source: "s", Retries: "tok-" + name}})
		must(t, err)
		ids = append(ids, x.ID)
	}
	// B's settings fit v2 (an empty "retries" is not stored).
	b, err := v1.Get(ctx, admin, ids[1])
	must(t, err)
	b.Settings = settingsV1{Source: "s"}
	_, err = v1.Update(ctx, admin, *b)
	must(t, err)

	owner := task.Actor{ID: "owner"}
	v2 := managerWith(t, st, task.TaskType{ApplicationVersion: "1", Settings: settingsV2{}}, task.ACLAuthorizer{})
	_, err = v2.Get(ctx, owner, ids[0])
	var de *task.DecodeError
	if !errors.As(err, &de) || !errors.Is(err, task.ErrUndecodable) || de.TaskID != ids[0] || de.Name != "A" {
		t.Fatalf("Get of an undecodable task = %v, want a *DecodeError for %s", err, ids[0])
	}
	if strings.Contains(err.Error(), "tok-A") {
		t.Fatalf("the error quotes the stored value: %v", err)
	}
	page, err := v2.List(ctx, owner, task.ListParams{})
	must(t, err)
	var listed, marked []string
	for _, a := range page.Applications {
		for _, x := range a.Tasks {
			listed = append(listed, x.Name)
		}
	}
	for _, u := range page.Undecodable {
		marked = append(marked, u.Name)
	}
	if d := cmp.Diff([]string{"B"}, listed); d != "" {
		t.Errorf("listed (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"A", "C"}, marked); d != "" {
		t.Errorf("marked undecodable (-want +got):\n%s", d)
	}
	must(t, v2.Delete(ctx, owner, ids[0], 0))
	if _, err := v2.Get(ctx, owner, ids[0]); !errors.Is(err, task.ErrNotFound) {
		t.Fatalf("after Delete, Get = %v, want ErrNotFound", err)
	}
	rep, err := v2.Runtime().PurgeHistory(ctx)
	must(t, err)
	if rep.Undecodable != 1 || rep.Tasks != 1 {
		t.Fatalf("PurgeHistory = %+v, want 1 task purged and 1 undecodable", rep)
	}
}

// The access list of an undecodable task still applies.
func TestUndecodableTaskKeepsItsAccessList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memstore.New()
	owner := task.Actor{ID: "owner"}
	v1 := managerWith(t, st, task.TaskType{ApplicationVersion: "1", Settings: settingsV1{}}, task.ACLAuthorizer{})
	x, err := v1.Create(ctx, owner, task.Task{Name: "A", Application: appES, Type: "sync", Scope: devicesScope("dev-01"),
		Settings: settingsV1{Retries: "x"},
		Security: task.Security{ACL: []task.AccessEntry{{Principal: "owner", Allow: []task.Permission{task.PermRead, task.PermModify, task.PermDelete}}}}})
	must(t, err)
	v2 := managerWith(t, st, task.TaskType{ApplicationVersion: "1", Settings: settingsV2{}}, task.ACLAuthorizer{})
	stranger := task.Actor{ID: "mallory"}
	if _, err := v2.Get(ctx, stranger, x.ID); !errors.Is(err, task.ErrPermission) {
		t.Errorf("stranger's Get = %v, want ErrPermission", err)
	}
	if err := v2.Delete(ctx, stranger, x.ID, 0); !errors.Is(err, task.ErrPermission) {
		t.Errorf("stranger's Delete = %v, want ErrPermission", err)
	}
	page, err := v2.List(ctx, stranger, task.ListParams{})
	must(t, err)
	if len(page.Undecodable) != 0 {
		t.Errorf("the stranger sees %d undecodable tasks", len(page.Undecodable))
	}
	if _, err := v2.Get(ctx, owner, x.ID); !errors.Is(err, task.ErrUndecodable) {
		t.Errorf("owner's Get = %v, want ErrUndecodable", err)
	}
}

// Update of an undecodable task is refused with the typed error, after
// the permission check.
func TestUpdateOfUndecodableTask(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memstore.New()
	owner := task.Actor{ID: "owner"}
	acl := task.Security{ACL: []task.AccessEntry{{Principal: "owner", Allow: []task.Permission{task.PermRead, task.PermModify}}}}
	v1 := managerWith(t, st, task.TaskType{ApplicationVersion: "1", Settings: settingsV1{}}, task.ACLAuthorizer{})
	x, err := v1.Create(ctx, owner, task.Task{Name: "A", Application: appES, Type: "sync", Scope: devicesScope("dev-01"), Settings: settingsV1{Retries: "x"}, Security: acl})
	must(t, err)
	v2 := managerWith(t, st, task.TaskType{ApplicationVersion: "1", Settings: settingsV2{}}, task.ACLAuthorizer{})
	upd := task.Task{ID: x.ID, Revision: x.Revision, Name: "A", Application: appES, Type: "sync", Scope: devicesScope("dev-01"), Settings: settingsV2{}, Security: acl}
	if _, err := v2.Update(ctx, task.Actor{ID: "mallory"}, upd); !errors.Is(err, task.ErrPermission) {
		t.Errorf("stranger's Update = %v, want ErrPermission", err)
	}
	if _, err := v2.Update(ctx, owner, upd); !errors.Is(err, task.ErrUndecodable) {
		t.Errorf("owner's Update = %v, want ErrUndecodable", err)
	}
}
