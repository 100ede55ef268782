package scope

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
)

// Limits on device selections, so a host can accept selections from
// administrators safely.
const (
	// MaxSelectionLength is the longest selection expression, in bytes.
	MaxSelectionLength = 4096
	// MaxSelectionCost is the largest worst-case CEL cost of one
	// evaluation against one device that CompileSelection accepts (cost
	// units are roughly one per operation, per list element visited and per
	// 10 bytes of string compared). The worst case is estimated statically
	// at compile time with every device list (tags, software, ips,
	// applications) at MaxSelectionListFacts entries and every string at
	// MaxSelectionFactLength bytes, so a quadratic expression such as
	// `device.software.all(a, device.software.all(b, a.name != b.name))`
	// is rejected before it ever runs, and evaluation needs no per-device
	// cost tracking.
	MaxSelectionCost = 10_000_000
	// MaxSelectionListFacts is the list size the cost estimate assumes. A
	// device with a longer tags, software, ips or applications list is
	// reported as Unknown by selections that read that list, since its
	// evaluation could exceed MaxSelectionCost.
	MaxSelectionListFacts = MaxFactListLength
	// MaxSelectionFactLength is the string length, in bytes, the cost
	// estimate assumes: the inventory's MaxFactLength. A device with a
	// longer string fact is reported as Unknown by selections that read
	// it.
	MaxSelectionFactLength = MaxFactLength
	// MaxSelectionNesting is the parser's recursion limit.
	MaxSelectionNesting = 32
)

// CEL type names of the device schema.
const (
	celDevice      = "taskfleet.Device"
	celSoftware    = "taskfleet.Software"
	celOS          = "taskfleet.OS"
	celApplication = "taskfleet.Application"
	celServer      = "taskfleet.Server"
)

var (
	deviceType      = types.NewObjectType(celDevice)
	softwareType    = types.NewObjectType(celSoftware)
	osType          = types.NewObjectType(celOS)
	applicationType = types.NewObjectType(celApplication)
	serverType      = types.NewObjectType(celServer)
)

// unknownFact is the evaluation error for a fact the inventory does not
// have; CEL's && and || absorb it like an unknown (false && x is false).
type unknownFact string

func (u unknownFact) Error() string { return unknownPrefix + string(u) }

const unknownPrefix = "unknown fact "

func tooLong(path string, n int) error {
	return fmt.Errorf("%s has %d entries, more than the %d a selection may visit (MaxSelectionListFacts)", path, n, MaxSelectionListFacts)
}

type field struct {
	name string
	typ  *types.Type
	get  func(any) (any, error)
	set  func(any) bool
}

func dev(v any) *Device { return v.(*Device) }

func sw(v any) *Software {
	if p, ok := v.(*Software); ok {
		return p
	}
	s := v.(Software)
	return &s
}

func str(path, s string) (any, error) {
	if s == "" {
		return nil, unknownFact(path)
	}
	return known(path, s)
}

// known returns s, or an error if it is longer than the cost estimate
// assumed.
func known(path, s string) (any, error) {
	if len(s) > MaxFactLength {
		return nil, longFact(path, len(s))
	}
	return s, nil
}

func longFact(path string, n int) error {
	return fmt.Errorf("%s is %d bytes, more than the %d a selection may read (MaxFactLength)", path, n, MaxFactLength)
}

// schema is the documented device schema (see doc.go, "Device selections").
var schema = map[string][]field{
	celDevice: {
		{"id", types.StringType, func(v any) (any, error) { return known("device.id", string(dev(v).ID)) }, nil},
		{"netbios_name", types.StringType, func(v any) (any, error) { return str("device.netbios_name", dev(v).NetBIOSName) }, func(v any) bool { return dev(v).NetBIOSName != "" }},
		{"dns_name", types.StringType, func(v any) (any, error) { return str("device.dns_name", dev(v).DNSName) }, func(v any) bool { return dev(v).DNSName != "" }},
		{"ips", types.NewListType(types.StringType), func(v any) (any, error) {
			d := dev(v)
			if d.IPs == nil {
				return nil, unknownFact("device.ips")
			}
			if len(d.IPs) > MaxSelectionListFacts {
				return nil, tooLong("device.ips", len(d.IPs))
			}
			out := make([]string, len(d.IPs))
			for i, ip := range d.IPs {
				out[i] = ip.String()
			}
			return out, nil
		}, func(v any) bool { return dev(v).IPs != nil }},
		{"group", types.StringType, func(v any) (any, error) { return known("device.group", string(dev(v).GroupID)) }, nil},
		{"tags", types.NewListType(types.StringType), func(v any) (any, error) {
			if t := dev(v).Tags; t != nil {
				if len(t) > MaxSelectionListFacts {
					return nil, tooLong("device.tags", len(t))
				}
				for _, s := range t {
					if len(s) > MaxFactLength {
						return nil, longFact("a device.tags entry", len(s))
					}
				}
				return strList{&dev(v).Tags}, nil
			}
			return nil, unknownFact("device.tags")
		}, func(v any) bool { return dev(v).Tags != nil }},
		{"software", types.NewListType(softwareType), func(v any) (any, error) {
			if s := dev(v).Software; s != nil {
				if len(s) > MaxSelectionListFacts {
					return nil, tooLong("device.software", len(s))
				}
				// No allocation per element: the list and its elements
				// point into the device.
				return swList{&dev(v).Software}, nil
			}
			return nil, unknownFact("device.software")
		}, func(v any) bool { return dev(v).Software != nil }},
		{"os", osType, func(v any) (any, error) {
			if o := dev(v).OS; o != nil {
				return o, nil
			}
			return nil, unknownFact("device.os")
		}, func(v any) bool { return dev(v).OS != nil }},
		{"time_zone", types.StringType, func(v any) (any, error) { return str("device.time_zone", dev(v).TimeZone) }, func(v any) bool { return dev(v).TimeZone != "" }},
		{"applications", types.NewMapType(types.StringType, applicationType), func(v any) (any, error) {
			if a := dev(v).Applications; a != nil {
				if len(a) > MaxSelectionListFacts {
					return nil, tooLong("device.applications", len(a))
				}
				for k := range a {
					if len(k) > MaxFactLength {
						return nil, longFact("a device.applications key", len(k))
					}
				}
				return a, nil
			}
			return nil, unknownFact("device.applications")
		}, func(v any) bool { return dev(v).Applications != nil }},
		{"last_seen", types.TimestampType, func(v any) (any, error) {
			if t := dev(v).LastSeen; !t.IsZero() {
				return t.UTC(), nil
			}
			return nil, unknownFact("device.last_seen")
		}, func(v any) bool { return !dev(v).LastSeen.IsZero() }},
		{"connected", types.BoolType, func(v any) (any, error) { return dev(v).Connected, nil }, nil},
		{"server", serverType, func(v any) (any, error) { return dev(v).Server, nil }, nil},
	},
	celSoftware: {
		{"name", types.StringType, func(v any) (any, error) { return known("device.software[].name", sw(v).Name) }, nil},
		{"version", types.StringType, func(v any) (any, error) { return known("device.software[].version", sw(v).Version) }, nil},
		{"vendor", types.StringType, func(v any) (any, error) { return known("device.software[].vendor", sw(v).Vendor) }, nil},
	},
	celOS: {
		{"name", types.StringType, func(v any) (any, error) { return str("device.os.name", v.(*OS).Name) }, func(v any) bool { return v.(*OS).Name != "" }},
		{"version", types.StringType, func(v any) (any, error) { return str("device.os.version", v.(*OS).Version) }, func(v any) bool { return v.(*OS).Version != "" }},
		{"build", types.StringType, func(v any) (any, error) { return str("device.os.build", v.(*OS).Build) }, func(v any) bool { return v.(*OS).Build != "" }},
		{"platform", types.StringType, func(v any) (any, error) { return str("device.os.platform", v.(*OS).Platform) }, func(v any) bool { return v.(*OS).Platform != "" }},
	},
	celApplication: {
		{"installed", types.BoolType, func(v any) (any, error) { return v.(AppState).Installed, nil }, nil},
		{"running", types.BoolType, func(v any) (any, error) { return v.(AppState).Running, nil }, nil},
	},
	celServer: {
		{"id", types.StringType, func(v any) (any, error) { return str("device.server.id", v.(ServerRef).ID) }, func(v any) bool { return v.(ServerRef).ID != "" }},
		{"role", types.StringType, func(v any) (any, error) { return str("device.server.role", string(v.(ServerRef).Role.effective())) }, func(v any) bool { return true }},
	},
}

// celTypes is the CEL type provider and adapter for the device schema.
type celTypes struct {
	*types.Registry
	fields map[string]map[string]*types.FieldType
	names  map[string][]string
	objs   map[string]*types.Type
}

func newCELTypes() (*celTypes, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, err
	}
	p := &celTypes{Registry: reg, fields: map[string]map[string]*types.FieldType{}, names: map[string][]string{},
		objs: map[string]*types.Type{celDevice: deviceType, celSoftware: softwareType, celOS: osType, celApplication: applicationType, celServer: serverType}}
	for tn, fs := range schema {
		p.fields[tn] = map[string]*types.FieldType{}
		for _, f := range fs {
			set := f.set
			if set == nil {
				set = func(any) bool { return true }
			}
			get := f.get
			p.fields[tn][f.name] = &types.FieldType{Type: f.typ, IsSet: set, GetFrom: get}
			p.names[tn] = append(p.names[tn], f.name)
		}
	}
	return p, nil
}

func (p *celTypes) FindStructType(name string) (*types.Type, bool) {
	if t, ok := p.objs[name]; ok {
		return types.NewTypeTypeWithParam(t), true
	}
	return p.Registry.FindStructType(name)
}

func (p *celTypes) FindStructFieldNames(name string) ([]string, bool) {
	if n, ok := p.names[name]; ok {
		return n, true
	}
	return p.Registry.FindStructFieldNames(name)
}

func (p *celTypes) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if fs, ok := p.fields[name]; ok {
		f, ok := fs[field]
		return f, ok
	}
	return p.Registry.FindStructFieldType(name, field)
}

func (p *celTypes) NativeToValue(v any) ref.Val {
	switch v := v.(type) {
	case *Device:
		return objVal{v, deviceType}
	case *OS:
		return objVal{v, osType}
	case Software:
		return swVal{&v}
	case *Software:
		return swVal{v}
	case AppState:
		return objVal{v, applicationType}
	case ServerRef:
		return objVal{v, serverType}
	case []Software:
		return types.NewDynamicList(p, v)
	case map[string]AppState:
		return appMap{v}
	case []string:
		return types.NewStringList(p, v)
	}
	return p.Registry.NativeToValue(v)
}

// objVal is a device-schema object inside a CEL evaluation.
type objVal struct {
	v any
	t *types.Type
}

func (o objVal) ConvertToNative(t reflect.Type) (any, error) {
	if reflect.TypeOf(o.v).AssignableTo(t) {
		return o.v, nil
	}
	return nil, fmt.Errorf("cannot convert %s to %v", o.t.TypeName(), t)
}

func (o objVal) ConvertToType(t ref.Type) ref.Val {
	switch {
	case t == types.TypeType:
		return o.t
	case t.TypeName() == o.t.TypeName():
		return o
	}
	return types.NewErr("type conversion error from %s to %s", o.t.TypeName(), t.TypeName())
}

func (o objVal) Equal(other ref.Val) ref.Val {
	ov, ok := other.(objVal)
	if !ok || ov.t.TypeName() != o.t.TypeName() {
		return types.False
	}
	switch a := o.v.(type) {
	case *OS:
		return types.Bool(*a == *ov.v.(*OS))
	case *Device:
		return types.Bool(a == ov.v.(*Device))
	}
	return types.Bool(o.v == ov.v)
}

func (o objVal) Type() ref.Type { return o.t }

// swVal is one installed program inside a CEL evaluation. It holds a
// single pointer, so storing it in an interface does not allocate.
type swVal struct{ p *Software }

func (v swVal) ConvertToNative(t reflect.Type) (any, error) {
	switch {
	case reflect.TypeOf(v.p).AssignableTo(t):
		return v.p, nil
	case reflect.TypeOf(*v.p).AssignableTo(t):
		return *v.p, nil
	}
	return nil, fmt.Errorf("cannot convert %s to %v", celSoftware, t)
}

func (v swVal) ConvertToType(t ref.Type) ref.Val {
	switch {
	case t == types.TypeType:
		return softwareType
	case t.TypeName() == celSoftware:
		return v
	}
	return types.NewErr("type conversion error from %s to %s", celSoftware, t.TypeName())
}

func (v swVal) Equal(other ref.Val) ref.Val {
	o, ok := other.(swVal)
	return types.Bool(ok && *o.p == *v.p)
}

func (v swVal) Type() ref.Type { return softwareType }
func (v swVal) Value() any     { return v.p }

// swList is device.software inside a CEL evaluation: comprehensions fold
// over the device's own slice without allocating; the rarely used list
// operations work on a materialized copy.
type swList struct{ p *[]Software }

func (l swList) list() traits.Lister {
	vals := make([]ref.Val, len(*l.p))
	for i := range *l.p {
		vals[i] = swVal{&(*l.p)[i]}
	}
	return types.NewRefValList(types.DefaultTypeAdapter, vals)
}

func (l swList) ConvertToNative(t reflect.Type) (any, error) { return l.list().ConvertToNative(t) }
func (l swList) ConvertToType(t ref.Type) ref.Val            { return l.list().ConvertToType(t) }
func (l swList) Equal(other ref.Val) ref.Val                 { return l.list().Equal(other) }
func (l swList) Type() ref.Type                              { return types.ListType }
func (l swList) Value() any                                  { return *l.p }
func (l swList) Add(other ref.Val) ref.Val                   { return l.list().Add(other) }
func (l swList) Contains(v ref.Val) ref.Val                  { return l.list().Contains(v) }
func (l swList) Iterator() traits.Iterator                   { return l.list().Iterator() }
func (l swList) Size() ref.Val                               { return types.Int(len(*l.p)) }

func (l swList) Get(i ref.Val) ref.Val {
	idx, ok := i.(types.Int)
	if !ok {
		return l.list().Get(i)
	}
	if idx < 0 || int64(idx) >= int64(len(*l.p)) {
		return types.NewErr("index out of range: %d", idx)
	}
	return swVal{&(*l.p)[idx]}
}

// strList is device.tags inside a CEL evaluation: `"x" in device.tags`
// and comprehensions read the device's own slice without copying it.
type strList struct{ p *[]string }

func (l strList) list() traits.Lister { return types.NewStringList(types.DefaultTypeAdapter, *l.p) }

func (l strList) ConvertToNative(t reflect.Type) (any, error) { return l.list().ConvertToNative(t) }
func (l strList) ConvertToType(t ref.Type) ref.Val            { return l.list().ConvertToType(t) }
func (l strList) Equal(other ref.Val) ref.Val                 { return l.list().Equal(other) }
func (l strList) Type() ref.Type                              { return types.ListType }
func (l strList) Value() any                                  { return *l.p }
func (l strList) Add(other ref.Val) ref.Val                   { return l.list().Add(other) }
func (l strList) Iterator() traits.Iterator                   { return l.list().Iterator() }
func (l strList) Get(i ref.Val) ref.Val                       { return l.list().Get(i) }
func (l strList) Size() ref.Val                               { return types.Int(len(*l.p)) }

func (l strList) Contains(v ref.Val) ref.Val {
	s, ok := v.(types.String)
	if !ok {
		return l.list().Contains(v)
	}
	return types.Bool(slices.Contains(*l.p, string(s)))
}

func (l strList) Fold(f traits.Folder) {
	for i, s := range *l.p {
		if !f.FoldEntry(i, types.String(s)) {
			return
		}
	}
}

func (l swList) Fold(f traits.Folder) {
	s := *l.p
	for i := range s {
		if !f.FoldEntry(i, swVal{&s[i]}) {
			return
		}
	}
}
func (o objVal) Value() any { return o.v }

var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	p, err := newCELTypes()
	if err != nil {
		return nil, err
	}
	return cel.NewEnv(
		cel.CustomTypeProvider(p),
		cel.CustomTypeAdapter(p),
		cel.Variable("device", deviceType),
		ext.Strings(),
		cel.ParserRecursionLimit(MaxSelectionNesting),
		cel.ParserExpressionSizeLimit(MaxSelectionLength),
	)
})

// Program is a compiled device selection. It is safe for concurrent use;
// compile once with CompileSelection and evaluate per device.
type Program struct {
	expr string
	prg  cel.Program
}

// String returns the source expression.
func (p *Program) String() string { return p.expr }

// CompileSelection compiles a device selection: a CEL expression of type
// bool over the variable `device` (the schema is documented in the package
// documentation, "Device selections").
//
// It returns a *ValidationError or ValidationErrors (both match
// ErrInvalid) with Field "selection"
// and the 1-based Column of each syntax or type error (and the 1-based Line
// when the expression has several lines); an expression longer
// than MaxSelectionLength, nested deeper than MaxSelectionNesting, or not
// of type bool is rejected.
func CompileSelection(expr string) (*Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, &ValidationError{Field: "selection", Reason: "is required: a CEL expression of type bool"}
	}
	if len(expr) > MaxSelectionLength {
		return nil, &ValidationError{Field: "selection", Value: clip(expr), Reason: fmt.Sprintf("must be at most %d bytes", MaxSelectionLength)}
	}
	if !utf8.ValidString(expr) {
		return nil, &ValidationError{Field: "selection", Value: clip(expr), Reason: "must be valid UTF-8"}
	}
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("scope: CEL environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss != nil && len(iss.Errors()) > 0 {
		var bad ValidationErrors
		for _, e := range iss.Errors() {
			ve := &ValidationError{Field: "selection", Value: clip(expr), Reason: e.Message}
			if c := e.Location.Column(); c >= 0 && e.Location.Line() >= 1 {
				ve.Column = c + 1
				if strings.Contains(expr, "\n") {
					ve.Line = e.Location.Line()
				}
			}
			bad = append(bad, ve)
		}
		return nil, bad.Err()
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return nil, &ValidationError{Field: "selection", Value: clip(expr), Reason: "must evaluate to bool, not " + ast.OutputType().String()}
	}
	est, err := env.EstimateCost(ast, sizeBounds{})
	if err != nil {
		return nil, &ValidationError{Field: "selection", Value: clip(expr), Reason: "cannot estimate cost: " + err.Error()}
	}
	if est.Max > MaxSelectionCost {
		return nil, &ValidationError{Field: "selection", Value: clip(expr), Reason: fmt.Sprintf("worst-case cost %d per device exceeds the limit %d (MaxSelectionCost); avoid nested loops over device lists", est.Max, MaxSelectionCost)}
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, &ValidationError{Field: "selection", Value: clip(expr), Reason: err.Error()}
	}
	return &Program{expr: expr, prg: prg}, nil
}

// sizeBounds gives the static cost estimate its assumptions about device
// facts.
type sizeBounds struct{}

func (sizeBounds) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

func (sizeBounds) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if n.ComputedSize() != nil {
		return nil
	}
	switch n.Type().Kind() {
	case types.StringKind, types.BytesKind, types.StructKind:
		// A struct's size bounds the cost of comparing two of them.
		return &cost.SizeEstimate{Min: 0, Max: MaxSelectionFactLength}
	case types.ListKind, types.MapKind:
		return &cost.SizeEstimate{Min: 0, Max: MaxSelectionListFacts}
	}
	return nil
}

// appMap is device.applications inside a CEL evaluation, without the
// reflection of a generic map.
type appMap struct {
	m map[string]AppState // the only field: an appMap fits in an interface without allocating
}

func (a appMap) ConvertToNative(t reflect.Type) (any, error) {
	if reflect.TypeOf(a.m).AssignableTo(t) {
		return a.m, nil
	}
	return nil, fmt.Errorf("cannot convert device.applications to %v", t)
}

func (a appMap) ConvertToType(t ref.Type) ref.Val {
	switch {
	case t == types.TypeType:
		return types.MapType
	case t.TypeName() == types.MapType.TypeName():
		return a
	}
	return types.NewErr("type conversion error from map to %s", t.TypeName())
}

func (a appMap) Equal(other ref.Val) ref.Val {
	o, ok := other.(appMap)
	if !ok {
		return types.False
	}
	if len(o.m) != len(a.m) {
		return types.False
	}
	for k, v := range a.m {
		if w, ok := o.m[k]; !ok || w != v {
			return types.False
		}
	}
	return types.True
}

func (a appMap) Type() ref.Type { return types.MapType }
func (a appMap) Value() any     { return a.m }

func (a appMap) Contains(key ref.Val) ref.Val {
	_, found := a.Find(key)
	return types.Bool(found)
}

func (a appMap) Get(key ref.Val) ref.Val {
	v, found := a.Find(key)
	if !found {
		return types.ValOrErr(v, "no such key: %v", key)
	}
	return v
}

func (a appMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), false
	}
	v, ok := a.m[string(k)]
	if !ok {
		return nil, false
	}
	return objVal{v, applicationType}, true
}

func (a appMap) Size() ref.Val { return types.Int(len(a.m)) }

func (a appMap) Iterator() traits.Iterator {
	keys := make([]string, 0, len(a.m))
	for k := range a.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return types.NewStringList(types.DefaultTypeAdapter, keys).Iterator()
}

// programCache keeps recently compiled selections, so Resolve and Explain
// (called once per device by a UI) do not recompile the same expression.
var programCache struct {
	sync.Mutex
	m map[string]*Program
}

// maxCachedPrograms bounds programCache; it is emptied when full.
const maxCachedPrograms = 256

// compileCached is CompileSelection with a cache of successes.
func compileCached(expr string) (*Program, error) {
	programCache.Lock()
	p, ok := programCache.m[expr]
	programCache.Unlock()
	if ok {
		return p, nil
	}
	p, err := CompileSelection(expr)
	if err != nil {
		return nil, err
	}
	programCache.Lock()
	if programCache.m == nil || len(programCache.m) >= maxCachedPrograms {
		programCache.m = make(map[string]*Program)
	}
	programCache.m[expr] = p
	programCache.Unlock()
	return p, nil
}

type deviceActivation struct{ d *Device }

func (a deviceActivation) ResolveName(name string) (any, bool) {
	if name == "device" {
		return a.d, true
	}
	return nil, false
}

func (a deviceActivation) Parent() interpreter.Activation { return nil }

// Evaluate reports whether d is selected: In, Out, or Unknown when the
// answer depends on a fact d does not have (reason names it, for example
// "unknown fact device.os") or the evaluation failed (reason says why, for
// example the cost limit). CEL's logic absorbs unknowns where it can:
// `device.connected && device.os.name == "x"` is Out for a disconnected
// device with no OS facts.
func (p *Program) Evaluate(d *Device) (Membership, string) {
	val, _, err := p.prg.Eval(deviceActivation{d})
	if err != nil {
		return Unknown, evalReason(err)
	}
	switch v := val.(type) {
	case types.Bool:
		if v {
			return In, ""
		}
		return Out, ""
	case *types.Err:
		return Unknown, evalReason(v)
	}
	return Unknown, "evaluation error: result is " + val.Type().TypeName()
}

func evalReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, unknownPrefix); i >= 0 {
		return msg[i:]
	}
	var u unknownFact
	if errors.As(err, &u) {
		return u.Error()
	}
	return "evaluation error: " + msg
}

// NamedSelection is a ready-made device selection.
type NamedSelection struct {
	// Name is the selection's display name.
	Name string
	// Expr is its CEL expression.
	Expr string
}

// ExampleSelections returns named example selections that hosts can offer
// as templates. Every one compiles.
func ExampleSelections() []NamedSelection {
	return []NamedSelection{
		{"Windows 11 devices without application X",
			`device.os.name.startsWith("Windows 11") && !("X" in device.applications)`},
		{"tag = accounting", `"accounting" in device.tags`},
		{"Devices with Firefox older than 128",
			`device.software.exists(s, s.name == "Mozilla Firefox" && int(s.version.split(".")[0]) < 128)`},
		{"Linux servers in group g-servers",
			`device.os.platform == "linux" && device.group == "g-servers"`},
		{"Devices where Kaspersky Endpoint Security is installed but not running",
			`"Kaspersky Endpoint Security" in device.applications && !device.applications["Kaspersky Endpoint Security"].running`},
		{"Devices not seen since 2026-01-01",
			`device.last_seen < timestamp("2026-01-01T00:00:00Z")`},
		{"Devices managed by a secondary or virtual Administration Server",
			`device.server.role in ["secondary", "virtual"]`},
	}
}
