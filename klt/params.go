package klt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// The Open API's typed values inside a params container (KSC Open API,
// "paramParams" and its member types). Strings, booleans, int (32-bit)
// numbers, arrays and null are plain JSON; the other types are objects
// {"type": T, "value": V}.
const (
	typeParams   = "params"
	typeLong     = "long"
	typeDouble   = "double"
	typeFloat    = "float"
	typeDateTime = "datetime"
	typeDate     = "date"
	typeBinary   = "binary"
)

func typed(t string, v *node) *node {
	return &node{kind: kObject, keys: []string{"type", "value"}, kids: []*node{strNode(t), v}}
}

// paramsNode wraps an object as {"type":"params","value":{…}}.
func paramsNode(obj *node) *node { return typed(typeParams, obj) }

// intNode writes an integer as paramInt (a plain number) when it fits 32
// bits and as paramLong otherwise.
func intNode(v int64) *node {
	lit := fmt.Sprint(v)
	if v >= math.MinInt32 && v <= math.MaxInt32 {
		return numNode(lit)
	}
	return typed(typeLong, numNode(lit))
}

// plainToParams converts a plain JSON tree (our packages' stable JSON
// encodings, type-specific settings) into the Open API's typed params
// form: objects become params containers, integers paramInt or paramLong,
// other numbers paramDouble (their literal text is kept).
func plainToParams(n *node) *node {
	switch n.kind {
	case kObject:
		o := &node{kind: kObject, keys: n.keys, kids: make([]*node, len(n.kids))}
		for i, k := range n.kids {
			o.kids[i] = plainToParams(k)
		}
		return paramsNode(o)
	case kArray:
		a := &node{kind: kArray, kids: make([]*node, len(n.kids))}
		for i, k := range n.kids {
			a.kids[i] = plainToParams(k)
		}
		return a
	case kNumber:
		v, fits, isInt := integer(n.s)
		switch {
		case isInt && fits && v >= math.MinInt32 && v <= math.MaxInt32:
			return n
		case isInt && fits:
			return typed(typeLong, n)
		}
		return typed(typeDouble, n)
	}
	return n
}

// paramsToPlain converts a typed params value back into plain JSON,
// checking every typed value's shape. path names n in errors.
func paramsToPlain(n *node, path string) (*node, error) {
	switch n.kind {
	case kArray:
		a := &node{kind: kArray, kids: make([]*node, len(n.kids))}
		for i, k := range n.kids {
			v, err := paramsToPlain(k, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			a.kids[i] = v
		}
		return a, nil
	case kObject:
		t, v, err := typedParts(n, path)
		if err != nil {
			return nil, err
		}
		switch t {
		case typeParams:
			o := &node{kind: kObject, keys: v.keys, kids: make([]*node, len(v.kids))}
			for i, k := range v.kids {
				c, err := paramsToPlain(k, join(path, v.keys[i]))
				if err != nil {
					return nil, err
				}
				o.kids[i] = c
			}
			return o, nil
		}
		return v, nil
	}
	return n, nil
}

// typedParts checks that n is {"type": T, "value": V} with a V that suits
// T and returns them.
func typedParts(n *node, path string) (string, *node, error) {
	tn, vn := n.get("type"), n.get("value")
	if len(n.keys) != 2 || tn == nil || vn == nil || tn.kind != kString {
		return "", nil, errs.Invalid(path, "", `must be a plain value or an Open API typed value {"type": …, "value": …}`)
	}
	bad := func(want string) (string, *node, error) {
		return "", nil, errs.Invalid(path, tn.s, "the value of a "+tn.s+" must be "+want) // tn.s is a known type name here
	}
	switch tn.s {
	case typeParams:
		if vn.kind != kObject {
			return bad("an object")
		}
	case typeLong:
		if vn.kind != kNumber {
			return bad("an integer")
		}
		if _, fits, isInt := integer(vn.s); !isInt || !fits {
			return bad("a signed 64-bit integer")
		}
	case typeDouble, typeFloat:
		if vn.kind != kNumber {
			return bad("a number")
		}
	case typeDateTime:
		if vn.kind != kString {
			return bad(`a string "YYYY-MM-DDTHH:MM:SSZ"`)
		}
		if _, err := time.Parse(time.RFC3339, vn.s); err != nil {
			return bad(`a string "YYYY-MM-DDTHH:MM:SSZ"`)
		}
	case typeDate:
		if vn.kind != kString {
			return bad(`a string "YYYY-MM-DD"`)
		}
		if _, err := time.Parse(time.DateOnly, vn.s); err != nil {
			return bad(`a string "YYYY-MM-DD"`)
		}
	case typeBinary:
		if vn.kind != kString {
			return bad("a base64 string")
		}
		if _, err := base64.StdEncoding.DecodeString(vn.s); err != nil {
			return bad("a base64 string")
		}
	default:
		return "", nil, errs.Invalid(join(path, "type"), short(tn.s), "must be one of: params, long, double, float, datetime, date, binary")
	}
	return tn.s, vn, nil
}

// paramsObject returns the members of a params container at path:
// {"type":"params","value":{…}}, or a plain object when plain is true
// (the top level of a PxgRetVal).
func paramsObject(n *node, path string, plain bool) (*node, error) {
	if n == nil {
		return nil, nil
	}
	if plain && n.kind == kObject && n.get("type") == nil {
		return n, nil
	}
	if n.kind != kObject {
		return nil, errs.Invalid(path, "", `must be a params container {"type": "params", "value": {…}}`)
	}
	t, v, err := typedParts(n, path)
	if err != nil {
		return nil, err
	}
	if t != typeParams {
		return nil, errs.Invalid(path, t, `must be a params container {"type": "params", "value": {…}}`)
	}
	return v, nil
}

// plainTree parses JSON produced by encoding/json (trusted, small).
func plainTree(b []byte) (*node, error) {
	return decodeTreeBuf(bytes.NewReader(b), limits{size: math.MaxInt64, depth: 1 << 20, values: math.MaxInt}, min(len(b)+16, 4<<10))
}

// unmarshalPlain decodes a plain tree into v, strictly (unknown fields
// refused) when strict is set.
func unmarshalPlain(n *node, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(compact(n)))
	if strict {
		dec.DisallowUnknownFields()
	}
	return dec.Decode(v)
}
