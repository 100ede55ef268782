package klt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// knownSecretKeys are the password fields of the public Open API and of
// the server's task storage that a document may carry, encrypted or not:
// the run-as account's password (klprts-TaskAccountPassword), the
// uninstall password (UNLOCK_PASSWORD_CRYPTED), the remote uninstall
// password of a deployment task (DeinstallationPassword) and the proxy
// password (proxy_pwd). None is ever imported or exported.
var knownSecretKeys = []string{
	"klprts-TaskAccountPassword",
	"UNLOCK_PASSWORD_CRYPTED",
	"DeinstallationPassword",
	"KLTSK_RU_DEINSTALLATION_PASSWORD",
	"proxy_pwd",
}

// secretWords mark a field name as a password or a secret
// (case-insensitive, anywhere in the name).
var secretWords = []string{"password", "passwd", "passphrase", "pwd", "secret", "privatekey", "private_key"}

// IsSecretField reports whether a document field of this name holds a
// password or a secret: one of the known password fields of the Open API
// (klprts-TaskAccountPassword, UNLOCK_PASSWORD_CRYPTED, …) or a name
// containing "password", "passwd", "passphrase", "pwd", "secret",
// "privatekey" or "private_key" in any case. Such fields are dropped on
// import (with a WarnCredentials warning) and never written on export.
func IsSecretField(name string) bool {
	for _, k := range knownSecretKeys {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	l := strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

// stripSecrets removes the members with secret names from the params
// containers inside v (in place) and returns the dotted paths removed.
func stripSecrets(v *node, path string) []string {
	var out []string
	switch v.kind {
	case kArray:
		for i, k := range v.kids {
			out = append(out, stripSecrets(k, path+"["+itoa(i)+"]")...)
		}
	case kObject:
		if t := v.get("type"); t != nil && t.kind == kString && t.s == typeParams && len(v.keys) == 2 {
			obj := v.get("value")
			if obj == nil || obj.kind != kObject {
				return nil
			}
			for i := 0; i < len(obj.keys); {
				k := obj.keys[i]
				if IsSecretField(k) {
					out = append(out, join(path, k))
					obj.del(k)
					continue
				}
				out = append(out, stripSecrets(obj.kids[i], join(path, k))...)
				i++
			}
			return out
		}
		// A plain object (the top of a PxgRetVal) or another typed value:
		// only params containers have named members.
		if v.get("type") == nil {
			for i := 0; i < len(v.keys); {
				k := v.keys[i]
				if IsSecretField(k) {
					out = append(out, join(path, k))
					v.del(k)
					continue
				}
				out = append(out, stripSecrets(v.kids[i], join(path, k))...)
				i++
			}
		}
	}
	return out
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	if i == 0 {
		return "0"
	}
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}

// opaqueEntry is the stored form of one Field in task.Task.Opaque. The
// value is kept as its canonical JSON text inside a string, so that a
// store that rewrites JSON (PostgreSQL jsonb reorders keys and rewrites
// numbers) cannot change it.
type opaqueEntry struct {
	Path []string `json:"path"`
	JSON string   `json:"json"`
}

// maxOpaqueBytes bounds task.Task.Opaque as Export reads it.
const maxOpaqueBytes = DefaultMaxSize

// EncodeOpaque returns the task.Task.Opaque form of fields: a JSON array
// of {"path": […], "json": "<canonical value>"}, or nil for no fields.
// Parse sets Import.Task.Opaque to EncodeOpaque(Import.Extra).
func EncodeOpaque(fields []Field) json.RawMessage {
	if len(fields) == 0 {
		return nil
	}
	// Written by hand into one buffer of the right size: json.Marshal of
	// a list of structs costs several times the result for the many
	// small fields of a server document.
	size := 2
	for _, f := range fields {
		size += 20 + quotedLen(string(f.Value))
		for _, k := range f.Path {
			size += quotedLen(k) + 1
		}
	}
	b := bytes.NewBuffer(make([]byte, 0, size)) // Grow would double it
	b.WriteByte('[')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"path":[`)
		for j, k := range f.Path {
			if j > 0 {
				b.WriteByte(',')
			}
			writeString(b, k)
		}
		b.WriteString(`],"json":`)
		writeString(b, string(f.Value))
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes()
}

// DecodeOpaque reads a task.Task.Opaque value written by EncodeOpaque.
// Errors: a *ValidationError (ErrInvalid) on the field "opaque".
func DecodeOpaque(raw json.RawMessage) ([]Field, error) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	if len(raw) > maxOpaqueBytes {
		return nil, errs.Invalid("opaque", "", "must be at most 16 MiB")
	}
	var list []opaqueEntry
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return nil, errs.Invalid("opaque", "", `must be a JSON array of {"path": […], "json": "…"} written by klt`)
	}
	out := make([]Field, len(list))
	for i, e := range list {
		if len(e.Path) < 1 || len(e.Path) > 3 {
			return nil, errs.Invalid(fmt.Sprintf("opaque[%d].path", i), "", "must have 1 to 3 elements")
		}
		if !json.Valid([]byte(e.JSON)) {
			return nil, errs.Invalid(fmt.Sprintf("opaque[%d].json", i), "", "must be a JSON value")
		}
		out[i] = Field{Path: e.Path, Value: json.RawMessage(e.JSON)}
	}
	return out, nil
}

// quotedLen is the length of s as writeString writes it.
func quotedLen(s string) int {
	n := len(s) + 2
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			n++
		case c < 0x20:
			n += 5
		}
	}
	return n
}
