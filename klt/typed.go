package klt

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// Declared settings keep their Open API value types, chosen from the Go
// type of each field of the registered settings struct:
//
//	[]byte                         binary
//	time.Time                      datetime (whole UTC seconds)
//	int64, uint32, uint64          long
//	int, int8..int32, uint8, uint16 int (long when a value does not fit 32 bits)
//	float64                        double
//	float32                        float
//	struct, map[string]T           params
//	slice, array                   array of the element's type
//
// A field tag klt:"T" chooses where the Go type is ambiguous: klt:"date"
// on a time.Time writes a date ("YYYY-MM-DD", the time of day must be
// midnight UTC); klt:"long" on any integer always writes long; klt:"int"
// on an int64 writes int (values must fit 32 bits); klt:"float" and
// klt:"double" choose between the two. Types a field does not declare
// (interface values, json.RawMessage, types with their own JSON
// encoding) are written by the plain rules: objects params, integers int
// or long by size, other numbers double.
//
// Parse applies the same table: a typed value of another type is refused
// at its path (a datetime for an int64 field, a string for a []byte
// field); int and long are interchangeable for integer fields, and int,
// long, float and double for floating-point fields.

// valueKind is the Open API type a Go type maps to.
type valueKind uint8

const (
	vkPlain valueKind = iota // no declaration: the plain rules
	vkInt
	vkLong
	vkDouble
	vkFloat
	vkDateTime
	vkDate
	vkBinary
	vkParams // struct or map: members by name
	vkArray
)

var (
	timeType      = reflect.TypeOf(time.Time{})
	rawType       = reflect.TypeOf(json.RawMessage(nil))
	marshalerType = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	textMarshaler = reflect.TypeOf((*interface{ MarshalText() ([]byte, error) })(nil)).Elem()
)

// kindOf returns the Open API kind of Go type t with tag (klt:"…").
func kindOf(t reflect.Type, tag string) valueKind {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch tag {
	case "date":
		return vkDate
	case "long":
		return vkLong
	case "int":
		return vkInt
	case "float":
		return vkFloat
	case "double":
		return vkDouble
	case "datetime":
		return vkDateTime
	case "binary":
		return vkBinary
	}
	switch {
	case t == timeType:
		return vkDateTime
	case t == rawType:
		return vkPlain
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return vkBinary
	case t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType),
		t.Implements(textMarshaler) || reflect.PointerTo(t).Implements(textMarshaler):
		return vkPlain
	}
	switch t.Kind() {
	case reflect.Int64, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return vkLong
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint8, reflect.Uint16:
		return vkInt
	case reflect.Float64:
		return vkDouble
	case reflect.Float32:
		return vkFloat
	case reflect.Struct:
		return vkParams
	case reflect.Map:
		if t.Key().Kind() == reflect.String {
			return vkParams
		}
	case reflect.Slice, reflect.Array:
		return vkArray
	}
	return vkPlain
}

// field is a struct field by its JSON name.
type field struct {
	typ reflect.Type
	tag string
}

// structFields returns the fields of struct type t by JSON name (through
// embedded structs), as encoding/json sees them.
func structFields(t reflect.Type) map[string]field {
	out := map[string]field{}
	var walk func(t reflect.Type, depth int)
	walk = func(t reflect.Type, depth int) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || depth > 8 {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				walk(f.Type, depth+1)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if _, dup := out[name]; !dup {
				out[name] = field{typ: f.Type, tag: f.Tag.Get("klt")}
			}
		}
	}
	walk(t, 0)
	return out
}

// member returns the type of a member of a params value of Go type t.
func member(t reflect.Type, key string, fields map[string]field) (reflect.Type, string, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Map {
		return t.Elem(), "", true
	}
	f, ok := fields[key]
	return f.typ, f.tag, ok
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// toTyped converts a plain JSON value of Go type t (tag) into its typed
// Open API form. path names it in errors (settings paths).
func toTyped(n *node, t reflect.Type, tag, path string) (*node, error) {
	if n.kind == kNull {
		return n, nil
	}
	k := kindOf(t, tag)
	bad := func(what string) (*node, error) {
		return nil, errs.Invalid(path, "", "cannot be written as an Open API "+what)
	}
	switch k {
	case vkPlain:
		return plainToParams(n), nil
	case vkInt, vkLong:
		if n.kind != kNumber {
			return bad("integer")
		}
		v, fits, isInt := integer(n.s)
		if !isInt || !fits {
			return bad("integer")
		}
		if k == vkInt && v >= math.MinInt32 && v <= math.MaxInt32 {
			return n, nil
		}
		if k == vkInt && tag == "int" {
			return nil, errs.Invalid(path, n.s, `does not fit the 32 bits of an Open API int (tag klt:"int")`)
		}
		return typed(typeLong, n), nil
	case vkDouble, vkFloat:
		if n.kind != kNumber {
			return bad("number")
		}
		if k == vkFloat {
			return typed(typeFloat, n), nil
		}
		return typed(typeDouble, n), nil
	case vkDateTime, vkDate:
		if n.kind != kString {
			return bad("datetime")
		}
		at, err := time.Parse(time.RFC3339Nano, n.s)
		if err != nil {
			return bad("datetime")
		}
		at = at.UTC()
		if k == vkDate {
			if at.Hour() != 0 || at.Minute() != 0 || at.Second() != 0 || at.Nanosecond() != 0 {
				return nil, errs.Invalid(path, short(n.s), `must be midnight UTC to be written as an Open API date (tag klt:"date")`)
			}
			return typed(typeDate, strNode(at.Format(time.DateOnly))), nil
		}
		if at.Nanosecond() != 0 {
			return nil, errs.Invalid(path, short(n.s), "must be whole seconds to be written as an Open API datetime")
		}
		return typed(typeDateTime, strNode(at.Format(time.RFC3339))), nil
	case vkBinary:
		if n.kind != kString {
			return bad("binary")
		}
		return typed(typeBinary, n), nil
	case vkParams:
		if n.kind != kObject {
			return plainToParams(n), nil
		}
		var fields map[string]field
		if deref(t).Kind() == reflect.Struct {
			fields = structFields(t)
		}
		o := &node{kind: kObject, keys: n.keys, kids: make([]*node, len(n.kids))}
		for i, kid := range n.kids {
			mt, mtag, ok := member(t, n.keys[i], fields)
			var err error
			if !ok {
				o.kids[i] = plainToParams(kid)
				continue
			}
			if o.kids[i], err = toTyped(kid, mt, mtag, join(path, n.keys[i])); err != nil {
				return nil, err
			}
		}
		return paramsNode(o), nil
	case vkArray:
		if n.kind != kArray {
			return plainToParams(n), nil
		}
		a := &node{kind: kArray, kids: make([]*node, len(n.kids))}
		for i, kid := range n.kids {
			var err error
			if a.kids[i], err = toTyped(kid, deref(t).Elem(), "", fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return nil, err
			}
		}
		return a, nil
	}
	return plainToParams(n), nil
}

// fromTyped converts a typed Open API value into the plain JSON that
// decodes into Go type t (tag), refusing a typed value of another type.
func fromTyped(n *node, t reflect.Type, tag, path string) (*node, error) {
	k := kindOf(t, tag)
	if k == vkPlain || n.kind == kNull {
		return paramsToPlain(n, path)
	}
	tn, v := "", n
	if n.kind == kObject {
		var err error
		if tn, v, err = typedParts(n, path); err != nil {
			return nil, err
		}
	}
	want := func(types ...string) error {
		for _, w := range types {
			if tn == w {
				return nil
			}
		}
		got := tn
		switch {
		case got != "":
		case n.kind == kNumber:
			got = "int"
		case n.kind == kString:
			got = "string"
		case n.kind == kBool:
			got = "bool"
		case n.kind == kArray:
			got = "array"
		}
		names := make([]string, len(types))
		for i, w := range types {
			if w == "" {
				w = "int"
			}
			names[i] = w
		}
		return errs.Invalid(path, got, "must be an Open API "+strings.Join(names, " or ")+" for this setting")
	}
	switch k {
	case vkInt, vkLong:
		if err := want("", typeLong); err != nil || v.kind != kNumber {
			return nil, orErr(err, path, "an integer")
		}
		return v, nil
	case vkDouble, vkFloat:
		if err := want("", typeLong, typeDouble, typeFloat); err != nil || v.kind != kNumber {
			return nil, orErr(err, path, "a number")
		}
		return v, nil
	case vkDateTime:
		if err := want(typeDateTime); err != nil {
			return nil, err
		}
		return v, nil
	case vkDate:
		if err := want(typeDate); err != nil {
			return nil, err
		}
		return strNode(v.s + "T00:00:00Z"), nil
	case vkBinary:
		if err := want(typeBinary); err != nil {
			return nil, err
		}
		return v, nil
	case vkParams:
		if tn != typeParams {
			return paramsToPlain(n, path)
		}
		var fields map[string]field
		if deref(t).Kind() == reflect.Struct {
			fields = structFields(t)
		}
		o := &node{kind: kObject, keys: v.keys, kids: make([]*node, len(v.kids))}
		for i, kid := range v.kids {
			mt, mtag, ok := member(t, v.keys[i], fields)
			var err error
			if !ok {
				o.kids[i], err = paramsToPlain(kid, join(path, v.keys[i]))
			} else {
				o.kids[i], err = fromTyped(kid, mt, mtag, join(path, v.keys[i]))
			}
			if err != nil {
				return nil, err
			}
		}
		return o, nil
	case vkArray:
		if n.kind != kArray {
			return paramsToPlain(n, path)
		}
		a := &node{kind: kArray, kids: make([]*node, len(n.kids))}
		for i, kid := range n.kids {
			var err error
			if a.kids[i], err = fromTyped(kid, deref(t).Elem(), "", fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return nil, err
			}
		}
		return a, nil
	}
	return paramsToPlain(n, path)
}

func orErr(err error, path, what string) error {
	if err != nil {
		return err
	}
	return errs.Invalid(path, "", "must be "+what)
}
