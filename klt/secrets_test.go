package klt_test

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
)

// secretsInVendorDoc is every secret of testdata/openapi_secrets_vendor.json,
// as text and as base64.
var secretsInVendorDoc = []string{
	"c2VjcmV0LXVubG9jay0xMjM0", "ZW5jcnlwdGVkLXJ1bi1hcy1wYXNzd29yZA==", "vendor-secret-0001",
	"proxy-password-5678", "cHJveHk=", "deep-secret-9",
	"UNLOCK_PASSWORD_CRYPTED", "klprts-TaskAccountPassword", "KLX_VENDOR_API_SECRET", "proxy_pwd", "ProxyPassword", "secretKey",
}

// Known password fields and fields named like secrets are dropped on
// import with a credentials warning, also inside vendor containers, and
// never reach the task, its opaque fields or an export.
func TestSecretsAreNeverImportedOrExported(t *testing.T) {
	t.Parallel()
	b := setup(t)
	imp, _ := parseFile(t, b.reg, "testdata/openapi_secrets_vendor.json")
	ws := codes(imp.Warnings)
	for _, w := range []string{
		"credentials_required@PxgRetVal.UNLOCK_PASSWORD_CRYPTED",
		"credentials_required@PxgRetVal.klprts-TaskAccountPassword",
		"credentials_required@PxgRetVal.KLX_VENDOR_API_SECRET",
		"credentials_required@PxgRetVal.TASK_ADDITIONAL_PARAMS.proxy_pwd",
		"credentials_required@PxgRetVal.TASK_ADDITIONAL_PARAMS.vendor_params.ProxyPassword",
		"credentials_required@PxgRetVal.TASK_ADDITIONAL_PARAMS.vendor_params.deep.secretKey",
	} {
		if !slices.Contains(ws, w) {
			t.Errorf("no warning %q in %q", w, ws)
		}
	}
	held := fmt.Sprintf("%v %s %+v", imp.Extra, imp.Task.Opaque, imp.Task)
	for _, s := range secretsInVendorDoc {
		if bytes.Contains([]byte(held), []byte(s)) {
			t.Errorf("the import holds %q", s)
		}
	}
	got, err := imp.Commit(b.ctx, b.m, b.admin, scope.Scope{Kind: scope.Group, Group: "42"})
	must(t, err)
	out, rep, err := klt.Export(got, lookup(t, b.reg, got), klt.ExportOptions{Time: exportTime})
	must(t, err)
	for _, s := range secretsInVendorDoc {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("the export contains %q", s)
		}
	}
	if len(rep.SecretsDropped) != 0 {
		t.Errorf("nothing secret was left to drop, report says %q", rep.SecretsDropped)
	}
}

// A caller that hands secret fields to Export by hand gets them dropped
// and named in the report, never written.
func TestExportDropsSecretExtraFields(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	x := fullTask(t, nil)
	extra := []klt.Field{
		{Path: []string{"task", "UNLOCK_PASSWORD_CRYPTED"}, Value: []byte(`"c2VjcmV0"`)},
		{Path: []string{"task", "TASK_INFO_PARAMS", "klprts-TaskAccountPassword"}, Value: []byte(`{"type":"binary","value":"c2VjcmV0"}`)},
		{Path: []string{"task", "KLX_BLOB"}, Value: []byte(`{"type":"params","value":{"keep":1,"ApiSecret":"c2VjcmV0"}}`)},
	}
	x.Opaque = klt.EncodeOpaque([]klt.Field{{Path: []string{"task", "TASK_INFO_PARAMS", "admin_passwd"}, Value: []byte(`"c2VjcmV0"`)}})
	out, rep, err := klt.Export(x, lookup(t, reg, x), klt.ExportOptions{Time: exportTime, Extra: extra})
	must(t, err)
	if bytes.Contains(out, []byte("c2VjcmV0")) {
		t.Fatalf("a secret was exported:\n%s", out)
	}
	if !bytes.Contains(out, []byte(`"keep": 1`)) {
		t.Fatalf("the rest of a vendor container was lost:\n%s", out)
	}
	want := []string{"task.UNLOCK_PASSWORD_CRYPTED", "task.TASK_INFO_PARAMS.klprts-TaskAccountPassword", "task.KLX_BLOB.ApiSecret", "task.TASK_INFO_PARAMS.admin_passwd"}
	if d := cmp.Diff(want, rep.SecretsDropped); d != "" {
		t.Fatalf("SecretsDropped (-want +got):\n%s", d)
	}
}

// Vendor fields of every Open API value type survive import, a commit to
// a store (memory and SQLite), a later export from the stored task with
// no help from the caller, and compare value for value, types included.
func TestOpaqueFieldsSurviveStorage(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/openapi_secrets_vendor.json")
	must(t, err)
	sqlite, err := sqlstore.OpenSQLite(t.Context(), ":memory:")
	must(t, err)
	t.Cleanup(func() { sqlite.Close() })
	stores := []struct {
		name  string
		store storage.Store
	}{{"memstore", nil}, {"sqlite", sqlite}}
	if pg := postgresStore(t); pg != nil {
		stores = append(stores, struct {
			name  string
			store storage.Store
		}{"postgres", pg})
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			b := setupStore(t, st.store)
			imp, err := klt.Parse(bytes.NewReader(raw), b.reg, klt.ParseOptions{})
			must(t, err)
			if len(imp.Extra) < 15 {
				t.Fatalf("only %d opaque fields: %v", len(imp.Extra), imp.Extra)
			}
			created, err := imp.Commit(b.ctx, b.m, b.admin, scope.Scope{Kind: scope.Group, Group: "42"})
			must(t, err)
			stored, err := b.m.Get(b.ctx, b.admin, created.ID)
			must(t, err)
			out, _, err := klt.Export(stored, lookup(t, b.reg, stored), klt.ExportOptions{Time: exportTime})
			must(t, err)
			again, err := klt.Parse(bytes.NewReader(out), b.reg, klt.ParseOptions{})
			must(t, err)
			if d := cmp.Diff(imp.Extra, again.Extra); d != "" {
				t.Fatalf("opaque fields changed through the store (-imported +exported later):\n%s", d)
			}
			for _, want := range []string{
				`"value": 9007199254740993`,
				`"value": 1.50`, `"value": 2.5e-3`, `"value": 1e2`, `"type": "float"`, `"type": "date"`, `"type": "binary"`,
				`"vendor_null": null`, `"vendor_int": -2147483648`, `"TASK_UNIQUE_ID": "_LOCAL_6e5b3c"`,
			} {
				if !bytes.Contains(out, []byte(want)) {
					t.Errorf("the later export lacks %s:\n%s", want, out)
				}
			}
		})
	}
}

// ParseOptions.AnyType shows a task of a type the registry does not have:
// its settings are kept as opaque fields; without it the type is refused.
func TestAnyTypeKeepsSettingsOpaque(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/openapi_secrets_vendor.json")
	must(t, err)
	reg := task.NewRegistry()
	if _, err := klt.Parse(bytes.NewReader(raw), reg, klt.ParseOptions{}); !errors.Is(err, klt.ErrInvalid) || !slices.Contains(fieldsOf(err), "PxgRetVal.TASK_NAME") {
		t.Fatalf("an unregistered type without AnyType: %v", err)
	}
	imp, err := klt.Parse(bytes.NewReader(raw), reg, klt.ParseOptions{AnyType: true})
	must(t, err)
	if imp.Task.Settings != nil || !slices.Contains(codes(imp.Warnings), "unregistered_type@PxgRetVal.TASK_NAME") {
		t.Fatalf("settings %v, warnings %q", imp.Task.Settings, codes(imp.Warnings))
	}
	var paths []string
	for _, f := range imp.Extra {
		paths = append(paths, f.PathString())
	}
	if !slices.Contains(paths, "task.TASK_ADDITIONAL_PARAMS.source") || slices.Contains(paths, "task.TASK_ADDITIONAL_PARAMS.proxy_pwd") {
		t.Fatalf("opaque fields %q", paths)
	}
}

// postgresStore opens a store in a fresh schema of the PostgreSQL server
// named by TASKFLEET_TEST_POSTGRES (CI sets it), or returns nil without
// one: PostgreSQL rewrites JSON bodies (jsonb), which opaque fields must
// survive.
func postgresStore(t *testing.T) *sqlstore.Store {
	base := os.Getenv("TASKFLEET_TEST_POSTGRES")
	if base == "" {
		return nil
	}
	var rnd [6]byte
	_, err := rand.Read(rnd[:])
	must(t, err)
	schema := "tf_klt_" + hex.EncodeToString(rnd[:])
	admin, err := sql.Open("pgx", base)
	must(t, err)
	defer admin.Close()
	_, err = admin.Exec("CREATE SCHEMA " + schema)
	must(t, err)
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			t.Error(err)
			return
		}
		defer db.Close()
		if _, err := db.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	dsn := base + " search_path=" + schema
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		dsn = u.String()
	}
	s, err := sqlstore.Open(t.Context(), sqlstore.Config{Dialect: sqlstore.Postgres, DSN: dsn})
	must(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}
