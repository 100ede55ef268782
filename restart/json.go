package restart

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// MaxPolicyJSONSize bounds the size of a policy document accepted by
// UnmarshalJSON (the longest message is MaxMessageLength characters, up to
// 4 bytes each, plus escapes).
const MaxPolicyJSONSize = 64 << 10

// MarshalJSON encodes the policy with every field present, in a fixed
// order:
//
//	{"action":"prompt","message":"","repeat_prompt":{"enabled":true,"minutes":5},
//	 "restart_after":{"enabled":true,"minutes":30},"force_close_locked":false}
//
// The encoding is stable: field names and values never change meaning
// within the major version.
func (p Policy) MarshalJSON() ([]byte, error) {
	type plain Policy // drop the methods, keep the tags
	return json.Marshal(plain(p))
}

// UnmarshalJSON decodes a policy strictly. A field that is absent keeps
// the product documentation's default (so {} is Default(), and {"repeat_prompt":{"minutes":10}}
// keeps the toggle on); unknown fields, duplicate fields, null, values of
// the wrong type and out-of-range values are rejected with
// ValidationErrors naming the JSON path. On error p is left unchanged.
func (p *Policy) UnmarshalJSON(data []byte) error {
	np, err := decodePolicy(data)
	if err != nil {
		return err
	}
	*p = np
	return nil
}

func decodePolicy(data []byte) (Policy, error) {
	if len(data) > MaxPolicyJSONSize {
		return Policy{}, errs.Invalid("", "", "policy document must be at most "+strconv.Itoa(MaxPolicyJSONSize)+" bytes")
	}
	p := Default()
	var bad ValidationErrors
	err := readObject(data, "", func(key string, raw json.RawMessage) {
		switch key {
		case "action":
			var s string
			if e := decodeString(raw, key, &s); e != nil {
				bad = append(bad, e)
				return
			}
			p.Action = Action(s)
		case "message":
			if e := decodeString(raw, key, &p.Message); e != nil {
				bad = append(bad, e)
			}
		case "repeat_prompt":
			bad = append(bad, decodeInterval(raw, key, &p.RepeatPrompt)...)
		case "restart_after":
			bad = append(bad, decodeInterval(raw, key, &p.RestartAfter)...)
		case "force_close_locked":
			if e := decodeBool(raw, key, &p.ForceCloseLocked); e != nil {
				bad = append(bad, e)
			}
		default:
			bad = append(bad, errs.Invalid(key, "", "unknown field; allowed: action, message, repeat_prompt, restart_after, force_close_locked"))
		}
	})
	if err != nil {
		return Policy{}, err
	}
	if len(bad) > 0 {
		return Policy{}, bad.Err()
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

func decodeInterval(raw json.RawMessage, field string, iv *Interval) ValidationErrors {
	var bad ValidationErrors
	next := *iv
	err := readObject(raw, field, func(key string, v json.RawMessage) {
		path := field + "." + key
		switch key {
		case "enabled":
			if e := decodeBool(v, path, &next.Enabled); e != nil {
				bad = append(bad, e)
			}
		case "minutes":
			if e := decodeMinutes(v, path, &next.Minutes); e != nil {
				bad = append(bad, e)
			}
		default:
			bad = append(bad, errs.Invalid(path, "", "unknown field; allowed: enabled, minutes"))
		}
	})
	if err != nil {
		return asList(err)
	}
	if len(bad) == 0 {
		*iv = next
	}
	return bad
}

func asList(err error) ValidationErrors {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ValidationErrors{ve}
	}
	var ves ValidationErrors
	if errors.As(err, &ves) {
		return ves
	}
	return ValidationErrors{errs.Invalid("", "", err.Error())}
}

// readObject walks one JSON object, calling fn for each member in order.
// It rejects anything that is not an object, duplicate keys and trailing
// data, reporting the error at path.
func readObject(data []byte, path string, fn func(key string, raw json.RawMessage)) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return errs.Invalid(path, "", "malformed JSON: "+jsonReason(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errs.Invalid(path, "", "must be a JSON object, got "+kindOf(tok))
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errs.Invalid(path, "", "malformed JSON: "+jsonReason(err))
		}
		key, ok := tok.(string)
		if !ok {
			return errs.Invalid(path, "", "malformed JSON: object key is not a string")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return errs.Invalid(join(path, key), "", "malformed JSON: "+jsonReason(err))
		}
		if seen[key] {
			return errs.Invalid(join(path, key), "", "duplicate field")
		}
		seen[key] = true
		fn(key, raw)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return errs.Invalid(path, "", "malformed JSON: "+jsonReason(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errs.Invalid(path, "", "malformed JSON: trailing data after the object")
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func jsonReason(err error) string {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return "unexpected end of input"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func kindOf(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "a delimiter"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "an unexpected value"
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func decodeString(raw json.RawMessage, path string, dst *string) *ValidationError {
	if isNull(raw) {
		return errs.Invalid(path, "", "must be a string, not null")
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return errs.Invalid(path, "", "must be a string")
	}
	return nil
}

func decodeBool(raw json.RawMessage, path string, dst *bool) *ValidationError {
	if isNull(raw) {
		return errs.Invalid(path, "", "must be true or false, not null")
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return errs.Invalid(path, "", "must be true or false")
	}
	return nil
}

func decodeMinutes(raw json.RawMessage, path string, dst *int) *ValidationError {
	const reason = "must be an integer between 1 and 1440"
	s := string(bytes.TrimSpace(raw))
	n, err := strconv.Atoi(s)
	if err != nil {
		v := s
		if len(v) > 32 {
			v = v[:32] + "..."
		}
		return errs.Invalid(path, v, reason)
	}
	*dst = n
	return nil
}
