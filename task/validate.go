package task

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
)

// validate checks every setting of t against its registered type and
// the product documentation's rules. It returns ValidationErrors with JSON paths.
// typeErr is typeOf's error when t's type is not registered (reg is nil
// then): it is reported with the checks that need no type.
func (m *Manager) validate(t *Task, reg *registered, typeErr error) error {
	var bad ValidationErrors
	if typeErr != nil {
		var ve *ValidationError
		if !errors.As(typeErr, &ve) {
			return typeErr
		}
		bad = append(bad, ve)
	}
	add := func(err error, prefix string) {
		if err == nil {
			return
		}
		if prefix != "" {
			err = errs.Prefix(prefix, err)
		}
		switch e := err.(type) {
		case *ValidationError:
			bad = append(bad, e)
		case ValidationErrors:
			bad = append(bad, e...)
		default:
			bad = append(bad, errs.Invalid(prefix, "", err.Error()))
		}
	}
	checkText := func(field, v string, max int, required bool) {
		switch {
		case required && strings.TrimSpace(v) == "":
			bad = append(bad, errs.Invalid(field, "", "is required"))
		case !utf8.ValidString(v):
			bad = append(bad, errs.Invalid(field, "", "must be valid UTF-8"))
		case utf8.RuneCountInString(v) > max:
			bad = append(bad, errs.Invalid(field, "", fmt.Sprintf("must be at most %d characters", max)))
		default:
			for _, r := range v {
				if unicode.IsControl(r) && (field == "name" || (r != '\n' && r != '\r' && r != '\t')) {
					bad = append(bad, errs.Invalid(field, "", fmt.Sprintf("must not contain the control character %U", r)))
					break
				}
			}
		}
	}
	checkText("name", t.Name, MaxNameLength, true)
	if t.Name != strings.TrimSpace(t.Name) {
		bad = append(bad, errs.Invalid("name", t.Name, "must not begin or end with spaces"))
	}
	checkText("description", t.Description, MaxDescriptionLength, false)

	add(t.Scope.Validate(), "scope")
	if reg != nil && reg.ServerTask != (t.Scope.Kind == scope.Server) {
		if reg.ServerTask {
			bad = append(bad, errs.Invalid("scope.kind", string(t.Scope.Kind), "an Administration Server task type needs the server scope"))
		} else {
			bad = append(bad, errs.Invalid("scope.kind", string(t.Scope.Kind), "only Administration Server task types may use the server scope"))
		}
	}
	add(t.Schedule.Validate(), "schedule")
	if reg != nil && !reg.AllowsSchedule(t.Schedule.Kind) {
		allowed := make([]string, len(reg.Schedules))
		for i, k := range reg.Schedules {
			allowed[i] = string(k)
		}
		bad = append(bad, errs.Invalid("schedule.kind", string(t.Schedule.Kind), "the task type allows only: "+strings.Join(allowed, ", ")))
	}
	add(t.Restart.Validate(), "restart")
	add(t.Account.Validate(), "account")

	n := t.Notifications
	switch n.History {
	case "", HistoryAll, HistoryProgress, HistoryResults:
	default:
		bad = append(bad, errs.Invalid("notifications.history", string(n.History), "must be one of: all, progress, results"))
	}
	if n.RetentionDays != 0 && (n.RetentionDays < MinRetentionDays || n.RetentionDays > MaxRetentionDays) {
		bad = append(bad, errs.Range("notifications.retention_days", n.RetentionDays, MinRetentionDays, MaxRetentionDays))
	}
	if n.NoServerHistory && n.RetentionDays != 0 {
		bad = append(bad, errs.Invalid("notifications.retention_days", fmt.Sprint(n.RetentionDays), "must be 0 when server history is off"))
	}
	if len(n.Email) > MaxEmailRecipients {
		bad = append(bad, errs.Invalid("notifications.email", "", fmt.Sprintf("must have at most %d recipients", MaxEmailRecipients)))
	}
	for i, a := range n.Email {
		if i >= MaxEmailRecipients {
			break // reported above; do not parse what is over the limit
		}
		if len(a) > MaxEmailLength {
			bad = append(bad, errs.Invalid(fmt.Sprintf("notifications.email[%d]", i), "", fmt.Sprintf("must be at most %d bytes", MaxEmailLength)))
			continue
		}
		if addr, err := mail.ParseAddress(a); err != nil || addr.Address != a {
			bad = append(bad, errs.Invalid(fmt.Sprintf("notifications.email[%d]", i), a, "must be a plain e-mail address"))
		}
	}

	if t.Kind() == Group && len(t.Security.ACL) > 0 {
		bad = append(bad, errs.Invalid("security.acl", "", "group tasks take their group's security settings; the access list must be empty"))
	}
	if len(t.Security.ACL) > MaxACLEntries {
		bad = append(bad, errs.Invalid("security.acl", "", fmt.Sprintf("must have at most %d entries", MaxACLEntries)))
	}
	for i, e := range t.Security.ACL {
		if i >= MaxACLEntries {
			break // reported above
		}
		f := fmt.Sprintf("security.acl[%d]", i)
		switch {
		case strings.TrimSpace(e.Principal) == "":
			bad = append(bad, errs.Invalid(f+".principal", "", "is required"))
		case len(e.Principal) > MaxPrincipalLength:
			bad = append(bad, errs.Invalid(f+".principal", "", fmt.Sprintf("must be at most %d bytes", MaxPrincipalLength)))
		case !utf8.ValidString(e.Principal) || strings.IndexFunc(e.Principal, unicode.IsControl) >= 0:
			bad = append(bad, errs.Invalid(f+".principal", "", "must be valid UTF-8 without control characters"))
		}
		if len(e.Allow) > len(allPermissions) || len(e.Deny) > len(allPermissions) {
			bad = append(bad, errs.Invalid(f, "", fmt.Sprintf("allow and deny each list at most the %d permissions", len(allPermissions))))
			continue
		}
		if len(e.Allow) == 0 && len(e.Deny) == 0 {
			bad = append(bad, errs.Invalid(f, e.Principal, "must allow or deny at least one permission"))
		}
		for j, p := range e.Allow {
			if !validPermission(p) {
				bad = append(bad, errs.Invalid(fmt.Sprintf("%s.allow[%d]", f, j), string(p), "must be one of: read, modify, execute, delete"))
			}
		}
		for j, p := range e.Deny {
			if !validPermission(p) {
				bad = append(bad, errs.Invalid(fmt.Sprintf("%s.deny[%d]", f, j), string(p), "must be one of: read, modify, execute, delete"))
			}
		}
	}

	if reg == nil {
		// Without a type the settings cannot be checked.
	} else if err := reg.checkSettingsType(t.Settings); err != nil {
		add(err, "")
	} else if t.Settings != nil {
		add(m.reg.validateSettings(reg, t.Settings), "")
	}
	return bad.Err()
}

var allPermissions = []Permission{PermRead, PermModify, PermExecute, PermDelete}

func validPermission(p Permission) bool {
	switch p {
	case PermRead, PermModify, PermExecute, PermDelete:
		return true
	}
	return false
}
