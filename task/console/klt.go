package console

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// export downloads a task as a KLT file. Reading the task is enough: the
// file never holds the run-as password.
func (c *Console) export(w http.ResponseWriter, q *req) error {
	t, err := c.m.Get(q.ctx(), q.actor, q.r.PathValue("id"))
	if err != nil {
		return err
	}
	tt, ok := c.m.Registry().Lookup(t.Application, t.Type)
	if !ok {
		return errs.Invalid("type", t.Type, "the task type is not registered, so the task cannot be exported")
	}
	b, _, err := klt.Export(t, tt, klt.ExportOptions{Clock: c.clk})
	if err != nil {
		return err
	}
	name := strings.Map(func(r rune) rune {
		if r < 0x20 || r == '"' || r == '\\' || r == '/' || r > 0x7e {
			return '_'
		}
		return r
	}, t.Name)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.klt"`)
	_, err = w.Write(b)
	return err
}

type importView struct {
	Base
	Error string
}

func (c *Console) importPage(w http.ResponseWriter, q *req) error {
	return c.render(w, "import.html", importView{Base: c.base(q, "Import a task")})
}

// previewView is step 1 of an import: what the file holds, its warnings,
// and the scope to choose. Doc carries the file to step 2.
type previewView struct {
	Base
	Task        task.Task
	General     []field
	Settings    []field
	Schedule    []field
	Warnings    []klt.Warning
	AccountName string
	SourceScope string
	ScopeKind   string
	ScopeValue  string
	Doc         string
	// CanSetPassword is true when the console has a Sealer and the file
	// names a run-as account.
	CanSetPassword bool
}

func (c *Console) readImport(q *req) ([]byte, error) {
	if s := q.r.PostFormValue("doc"); s != "" {
		if int64(len(s)) > int64(base64.StdEncoding.EncodedLen(int(c.cfg.MaxImportSize))) {
			return nil, errs.Invalid("doc", "", fmt.Sprintf("the file is larger than %d bytes", c.cfg.MaxImportSize))
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, errs.Invalid("doc", "", "is not the file of the preview")
		}
		return b, nil
	}
	f, _, err := q.r.FormFile("file")
	if err != nil {
		return nil, errs.Invalid("file", "", "choose a KLT file to import")
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, c.cfg.MaxImportSize+1))
	if err != nil {
		return nil, fmt.Errorf("console: read the uploaded file: %w", err)
	}
	if int64(len(b)) > c.cfg.MaxImportSize {
		return nil, errs.Invalid("file", "", fmt.Sprintf("the file is larger than %d bytes", c.cfg.MaxImportSize))
	}
	return b, nil
}

func (c *Console) parseImport(q *req) (*klt.Import, []byte, error) {
	b, err := c.readImport(q)
	if err != nil {
		return nil, nil, err
	}
	imp, err := klt.Parse(bytes.NewReader(b), c.m.Registry(), klt.ParseOptions{MaxSize: c.cfg.MaxImportSize})
	if err != nil {
		var ve *klt.VersionError
		if errors.As(err, &ve) {
			return nil, nil, errs.Invalid("file", "", err.Error())
		}
		return nil, nil, err
	}
	return imp, b, nil
}

// importPreview is step 1: parse and validate, store nothing.
func (c *Console) importPreview(w http.ResponseWriter, q *req) error {
	imp, b, err := c.parseImport(q)
	if err != nil {
		return err
	}
	t := imp.Task
	v := previewView{Base: c.base(q, "Import: "+t.Name), Task: t, General: generalFields(&t), Settings: settingsFields(t.Settings),
		Schedule: jsonFields("schedule", t.Schedule, nil), Warnings: imp.Warnings, AccountName: imp.AccountName,
		Doc: base64.StdEncoding.EncodeToString(b), ScopeKind: string(scope.Group), CanSetPassword: c.cfg.Sealer != nil && imp.AccountName != ""}
	if s := imp.SourceScope; s != nil {
		v.SourceScope = string(s.Kind)
		switch s.Kind {
		case scope.Group:
			v.ScopeKind, v.ScopeValue = string(scope.Group), string(s.Group)
			v.SourceScope += " " + string(s.Group)
		case scope.Devices:
			v.ScopeKind = string(scope.Devices)
			ids := make([]string, 0, min(len(s.Devices), 1000))
			for i, d := range s.Devices {
				if i == 1000 {
					break
				}
				ids = append(ids, string(d))
			}
			v.ScopeValue = strings.Join(ids, "\n")
		case scope.Selection:
			v.ScopeKind, v.ScopeValue = string(scope.Selection), s.Selection
		}
	}
	return c.render(w, "preview.html", v)
}

// importCommit is step 2: create the task in the chosen scope.
func (c *Console) importCommit(w http.ResponseWriter, q *req) error {
	imp, _, err := c.parseImport(q)
	if err != nil {
		return err
	}
	sc, err := scopeFromForm(q.r.PostFormValue("scope_kind"), q.r.PostFormValue("scope_value"))
	if err != nil {
		return err
	}
	if pw := q.r.PostFormValue("password"); pw != "" {
		if c.cfg.Sealer == nil || imp.AccountName == "" {
			return errs.Invalid("password", "", "this import has no account whose password could be set")
		}
		acct, err := credentials.Specify(imp.AccountName, credentials.NewSecret(pw), c.cfg.Sealer)
		if err != nil {
			return err
		}
		imp.Task.Account = acct
	}
	t, err := imp.Commit(q.ctx(), c.m, q.actor, sc)
	if err != nil {
		return err
	}
	return c.redirect(w, q, t.ID, "import")
}

// scopeFromForm builds the scope an administrator chose for an import: a
// group id, a device list, an address list or a selection expression.
func scopeFromForm(kind, value string) (scope.Scope, error) {
	value = strings.TrimSpace(value)
	switch scope.Kind(kind) {
	case scope.Group:
		if value == "" || len(value) > scope.MaxIDLength {
			return scope.Scope{}, errs.Invalid("scope.group", shorten(value), fmt.Sprintf("enter a group id of 1 to %d bytes", scope.MaxIDLength))
		}
		return scope.Scope{Kind: scope.Group, Group: scope.GroupID(value)}, nil
	case scope.Devices:
		devs, err := ParseDeviceList(value)
		if err != nil {
			return scope.Scope{}, err
		}
		return scope.Scope{Kind: scope.Devices, Devices: devs}, nil
	case scope.Addresses:
		addrs, err := scope.ParseAddressList(strings.NewReader(value))
		if err != nil {
			return scope.Scope{}, err
		}
		return scope.Scope{Kind: scope.Addresses, Addresses: addrs}, nil
	case scope.Selection:
		return scope.Scope{Kind: scope.Selection, Selection: value}, nil
	}
	return scope.Scope{}, errs.Invalid("scope_kind", shorten(kind), "must be one of: group, devices, addresses, selection")
}
