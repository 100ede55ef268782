package credentials

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Reason says why ScanSettings reported a value.
type Reason string

const (
	// ReasonPlaintextSecret: a Secret (a plaintext password) is part of the
	// settings.
	ReasonPlaintextSecret Reason = "plaintext_secret"
	// ReasonPrivateKey: a PEM private key block.
	ReasonPrivateKey Reason = "private_key"
	// ReasonSecretName: the field or key name says password, secret, token,
	// API key... and the value is not empty.
	ReasonSecretName Reason = "secret_name"
	// ReasonURLCredentials: a URL with a password in it
	// (scheme://user:password@host).
	ReasonURLCredentials Reason = "url_credentials"
	// ReasonEmbeddedPassword: "password=..." inside a longer value
	// (connection strings, command lines).
	ReasonEmbeddedPassword Reason = "embedded_password"
	// ReasonKnownToken: the format of a well-known token (JWT, AWS access
	// key id, GitHub or Slack token).
	ReasonKnownToken Reason = "known_token"
	// ReasonHighEntropy: a long random-looking token.
	ReasonHighEntropy Reason = "high_entropy"
	// ReasonMarkedSecret: the field is marked secret with the struct tag
	// `taskfleet:"secret"` and its value is not zero.
	ReasonMarkedSecret Reason = "marked_secret"
)

// SecretTag is the struct tag that marks a settings field as secret:
// `taskfleet:"secret"`. ScanSettings reports a marked field whatever its
// value looks like, so task revision diffs redact it and validation
// errors never quote it.
const SecretTag = "secret"

// markedSecret reports whether a struct field carries `taskfleet:"secret"`.
func markedSecret(f reflect.StructField) bool {
	for _, opt := range strings.Split(f.Tag.Get("taskfleet"), ",") {
		if strings.TrimSpace(opt) == SecretTag {
			return true
		}
	}
	return false
}

// Finding is one value of a task's settings that looks like private data.
// It never contains the value itself.
type Finding struct {
	// Path is the dotted JSON path of the value ("install.args[2]",
	// `env["DB PASSWORD"]`); "" is the root.
	Path string `json:"path"`
	// Reason says why the value looks private.
	Reason Reason `json:"reason"`
}

// String formats the finding as "path: reason".
func (f Finding) String() string {

	p := f.Path
	if p == "" {
		p = "(root)"
	}
	return p + ": " + string(f.Reason)
}

// scanLimits keep ScanSettings cheap on hostile or cyclic input.
const (
	scanMaxDepth    = 64
	scanMaxFindings = 1000
)

// ScanSettings warns about private data in a task's settings (the product documentation:
// "Do not include private data in task settings. For example, avoid
// specifying the domain administrator password."). It walks v — structs
// (by their JSON field names, honouring `json:"-"` and embedded structs),
// maps, slices, arrays, pointers, interfaces, json.RawMessage and types
// implementing json.Marshaler (through their JSON) — and reports the path
// of every value that looks like a secret, at most one finding per path, in
// a deterministic order (struct fields in order, map keys sorted).
//
// It is a heuristic: it can miss secrets and flag harmless values, so use
// it to warn, not to reject. Sealed passwords (Sealed, Account, text
// starting with "tfsealed:") are the right way to store passwords and are
// never reported; placeholders such as "${DB_PASSWORD}", "%PASSWORD%" or
// "****" neither. Hashes under names like "sha256" or "checksum", UUIDs and
// paths are not reported as high-entropy tokens.
func ScanSettings(v any) []Finding {
	sc := &scanner{seen: map[visit]bool{}}
	sc.walk(reflect.ValueOf(v), "", "", 0)
	return sc.out
}

type scanner struct {
	out  []Finding
	seen map[visit]bool
}

var (
	typeSecret     = reflect.TypeFor[Secret]()
	typeSealed     = reflect.TypeFor[Sealed]()
	typeAccount    = reflect.TypeFor[Account]()
	typeRawMessage = reflect.TypeFor[json.RawMessage]()
	typeMarshaler  = reflect.TypeFor[json.Marshaler]()
)

// enter marks p as being walked; false means p is already on the current
// path (a cycle).
func (sc *scanner) enter(v reflect.Value) bool {
	k := visit{v.Pointer(), v.Type()}
	if sc.seen[k] {
		return false
	}
	sc.seen[k] = true
	return true
}

func (sc *scanner) leave(v reflect.Value) { delete(sc.seen, visit{v.Pointer(), v.Type()}) }

// visit identifies a pointer, map or slice being walked.
type visit struct {
	p uintptr
	t reflect.Type
}

func (sc *scanner) add(path string, r Reason) {
	if len(sc.out) < scanMaxFindings {
		sc.out = append(sc.out, Finding{Path: path, Reason: r})
	}
}

func (sc *scanner) walk(v reflect.Value, path, key string, depth int) {
	if !v.IsValid() || depth > scanMaxDepth || len(sc.out) >= scanMaxFindings {
		return
	}
	switch v.Type() {
	case typeSecret:
		if !v.Field(0).IsNil() { // only the zero Secret has no closure
			sc.add(path, ReasonPlaintextSecret)
		}
		return
	case typeSealed, typeAccount:
		return
	case typeRawMessage:
		sc.walkJSON(v.Bytes(), path, key, depth)
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return
		}
		if v.Kind() == reflect.Pointer {
			if !sc.enter(v) {
				return
			}
			defer sc.leave(v)
		}
		sc.walk(v.Elem(), path, key, depth+1)
		return
	}
	if v.Kind() == reflect.Struct && v.Type().Implements(typeMarshaler) && v.CanInterface() {
		if b, err := v.Interface().(json.Marshaler).MarshalJSON(); err == nil {
			sc.walkJSON(b, path, key, depth)
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		sc.checkString(v.String(), path, key)
	case reflect.Struct:
		sc.walkStruct(v, path, depth)
	case reflect.Map:
		if v.IsNil() || !sc.enter(v) {
			return
		}
		defer sc.leave(v)
		type kv struct {
			name string
			v    reflect.Value
		}
		var entries []kv
		for it := v.MapRange(); it.Next(); {
			entries = append(entries, kv{mapKeyName(it.Key()), it.Value()})
		}
		slices.SortFunc(entries, func(a, b kv) int { return strings.Compare(a.name, b.name) })
		for _, e := range entries {
			sc.walk(e.v, joinKey(path, e.name), e.name, depth+1)
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice {
			if v.IsNil() {
				return
			}
			if v.Type().Elem().Kind() == reflect.Uint8 { // []byte
				if v.Len() > 0 && secretName(key) {
					sc.add(path, ReasonSecretName)
				}
				return
			}
			if v.Len() > 0 && v.Type().Elem().Size() > 0 {
				if !sc.enter(v) {
					return
				}
				defer sc.leave(v)
			}
		}
		for i := range v.Len() {
			sc.walk(v.Index(i), path+"["+strconv.Itoa(i)+"]", key, depth+1)
		}
	}
}

func (sc *scanner) walkStruct(v reflect.Value, path string, depth int) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				sc.walk(v.Field(i), path, "", depth+1) // promoted fields
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if markedSecret(f) {
			if !v.Field(i).IsZero() {
				sc.add(joinKey(path, name), ReasonMarkedSecret)
			}
			continue
		}
		sc.walk(v.Field(i), joinKey(path, name), name, depth+1)
	}
}

func (sc *scanner) walkJSON(data []byte, path, key string, depth int) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		sc.checkString(string(data), path, key)
		return
	}
	sc.walkDoc(doc, path, key, depth)
}

func (sc *scanner) walkDoc(doc any, path, key string, depth int) {
	if depth > scanMaxDepth || len(sc.out) >= scanMaxFindings {
		return
	}
	switch d := doc.(type) {
	case string:
		sc.checkString(d, path, key)
	case map[string]any:
		keys := make([]string, 0, len(d))
		for k := range d {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			sc.walkDoc(d[k], joinKey(path, k), k, depth+1)
		}
	case []any:
		for i, e := range d {
			sc.walkDoc(e, path+"["+strconv.Itoa(i)+"]", key, depth+1)
		}
	}
}

func mapKeyName(k reflect.Value) string {
	if k.Kind() == reflect.Interface && !k.IsNil() {
		k = k.Elem()
	}
	switch k.Kind() {
	case reflect.String:
		return k.String()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(k.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(k.Uint(), 10)
	}
	return k.Type().String()
}

var identKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func joinKey(path, key string) string {
	if !identKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

var (
	rePEMPrivate  = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----`)
	reURLCreds    = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@`)
	reEmbeddedPwd = regexp.MustCompile(`(?i)(^|[^a-z])(password|passwd|pwd|pass)\s*[=:]\s*[^\s;,'"&]+`)
	reKnownToken  = regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}|\b(AKIA|ASIA)[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}\b|\bxox[abprs]-[A-Za-z0-9-]{10,}`)
	rePlaceholder = regexp.MustCompile(`^(\$\{[^}]+\}|\$[A-Za-z_][A-Za-z0-9_]*|%[A-Za-z_][A-Za-z0-9_]*%|\{\{[^}]*\}\}|<[^<>]*>|\*+|x{3,}|X{3,}|\[REDACTED\])$`)
	reUUID        = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

func (sc *scanner) checkString(s, path, key string) {
	t := strings.TrimSpace(s)
	if t == "" || strings.HasPrefix(t, sealedTextPrefix) || rePlaceholder.MatchString(t) {
		return
	}
	switch {
	case rePEMPrivate.MatchString(s):
		sc.add(path, ReasonPrivateKey)
	case secretName(key):
		sc.add(path, ReasonSecretName)
	case reURLCreds.MatchString(s):
		sc.add(path, ReasonURLCredentials)
	case reEmbeddedPwd.MatchString(s):
		sc.add(path, ReasonEmbeddedPassword)
	case reKnownToken.MatchString(s):
		sc.add(path, ReasonKnownToken)
	case !checksumName(key) && hasRandomToken(s):
		sc.add(path, ReasonHighEntropy)
	}
}

// nameWords splits a field or key name into lower-case words:
// "adminPassword" -> admin password, "APIKey" -> api key,
// "db_pwd-2" -> db pwd 2.
func nameWords(name string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(name)
	for i, r := range rs {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
			continue
		case i > 0 && unicode.IsUpper(r):
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				flush()
			}
		case i > 0 && unicode.IsDigit(r) != unicode.IsDigit(rs[i-1]):
			flush()
		}
		cur = append(cur, r)
	}
	flush()
	return words
}

var (
	secretWords = map[string]bool{
		"password": true, "passwords": true, "passwd": true, "passphrase": true, "pwd": true, "pass": true,
		"secret": true, "secrets": true, "token": true, "tokens": true, "apikey": true, "credential": true,
		"credentials": true, "privatekey": true, "accesskey": true, "secretkey": true, "clientsecret": true,
		"sessionkey": true, "psk": true, "passcode": true,
	}
	secretPairs = map[[2]string]bool{
		{"api", "key"}: true, {"private", "key"}: true, {"access", "key"}: true, {"secret", "key"}: true,
		{"shared", "key"}: true, {"encryption", "key"}: true, {"signing", "key"}: true, {"session", "key"}: true,
		{"pass", "phrase"}: true, {"pass", "word"}: true,
	}
	// A secret word followed by one of these names metadata, not a secret:
	// "password_expires", "token_url", "secret_name".
	metaWords = map[string]bool{
		"name": true, "names": true, "id": true, "ids": true, "url": true, "uri": true, "file": true, "path": true,
		"length": true, "len": true, "policy": true, "hint": true, "required": true, "enabled": true, "type": true,
		"expiry": true, "expires": true, "expiration": true, "age": true, "count": true, "changed": true,
		"prompt": true, "label": true, "field": true, "ttl": true, "lifetime": true, "format": true, "mode": true,
		"kind": true, "source": true, "ref": true, "set": true, "complexity": true, "min": true, "max": true,
	}
	checksumWords = map[string]bool{
		"hash": true, "sha": true, "sha1": true, "sha256": true, "sha512": true, "md5": true, "checksum": true,
		"digest": true, "thumbprint": true, "fingerprint": true, "etag": true, "crc": true, "crc32": true,
		"sum": true, "id": true, "guid": true, "uuid": true, "revision": true, "commit": true,
	}
)

func secretName(key string) bool {
	words := nameWords(key)
	if len(words) == 0 || metaWords[words[len(words)-1]] {
		return false
	}
	for i, w := range words {
		if secretWords[w] {
			return true
		}
		if i+1 < len(words) && secretPairs[[2]string{w, words[i+1]}] {
			return true
		}
	}
	return false
}

func checksumName(key string) bool {
	for _, w := range nameWords(key) {
		if checksumWords[w] || strings.HasPrefix(w, "sha") {
			return true
		}
	}
	return false
}

// hasRandomToken reports whether s contains a token that looks random: 32+
// hex digits, or 20+ characters of base64/base64url with mixed character
// classes, high Shannon entropy and frequent class changes. Paths are split on slashes, so a long
// file name is judged on its own.
func hasRandomToken(s string) bool {
	tokens := strings.FieldsFunc(s, func(r rune) bool {
		return !(r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '_' || r == '-'))
	})
	for _, t := range tokens {
		if len(t) < 20 || reUUID.MatchString(t) {
			continue
		}
		var lower, upper, digit, sym, hexOnly = false, false, false, false, true
		for _, r := range t {
			switch {
			case r >= 'a' && r <= 'z':
				lower = true
			case r >= 'A' && r <= 'Z':
				upper = true
			case r >= '0' && r <= '9':
				digit = true
			default:
				sym = true
			}
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
				hexOnly = false
			}
		}
		e := entropy(t)
		if hexOnly {
			if len(t) >= 32 && digit && (lower || upper) && e >= 3.0 {
				return true
			}
			continue
		}
		classes := 0
		for _, c := range []bool{lower, upper, digit, sym} {
			if c {
				classes++
			}
		}
		if classes >= 3 && digit && e >= 3.7 && classSwitchRate(t) >= 0.5 {
			return true
		}
	}
	return false
}

// classSwitchRate is the share of adjacent character pairs whose classes
// (lower, upper, digit, other) differ: about 0.65 for random base64, much
// lower for names made of words ("AgentSetup_2026-01-Release-x64" 0.45,
// "libSomethingVeryLong2026Edition" 0.29).
func classSwitchRate(t string) float64 {
	class := func(c byte) int {
		switch {
		case c >= 'a' && c <= 'z':
			return 0
		case c >= 'A' && c <= 'Z':
			return 1
		case c >= '0' && c <= '9':
			return 2
		}
		return 3
	}
	switches := 0
	for i := 1; i < len(t); i++ {
		if class(t[i]) != class(t[i-1]) {
			switches++
		}
	}
	return float64(switches) / float64(len(t)-1)
}

// entropy is the Shannon entropy of s in bits per character.
func entropy(s string) float64 {
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}
