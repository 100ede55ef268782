package klt

import (
	"fmt"
	"slices"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/scope"
)

// Public names, besides the schedule's, that this version maps (see the
// package documentation for the pages and readings).
const (
	// In TASK_ADDITIONAL_PARAMS: the restart options and the run-as
	// account of the Open API's list of deployment task attributes.
	keyRebootImmediately = "KLTSK_RU_REBOOT_IMMEDIATELY"
	keyRebootAsk         = "KLTSK_RU_REBOOT_ASK_FOR_REBOOT"
	keyRebootAskPeriod   = "KLTSK_RU_REBOOT_ASK_FOR_REBOOT_PERIOD"
	keyRebootForce       = "KLTSK_RU_REBOOT_FORCE_REBOOT_PERIOD"
	keyRebootMessage     = "KLTSK_RU_REBOOT_MESSAGE"
	keyAccountUser       = "klprts-TaskAccountUser"
	// At the task level: the devices of a task for specific devices.
	keyHostList = "HostList"
)

// publicAdditional are the TASK_ADDITIONAL_PARAMS names this version maps
// itself; they are reserved (a settings field of one of these names is
// not supported).
var publicAdditional = []string{keyRebootImmediately, keyRebootAsk, keyRebootAskPeriod, keyRebootForce, keyRebootMessage, keyAccountUser}

// publicRestart sets the restart options of pol on add.
func publicRestart(add *node, pol restart.Policy) {
	add.set(keyRebootImmediately, boolNode(pol.Action == restart.Restart))
	add.set(keyRebootAsk, boolNode(pol.Action == restart.Prompt))
	period := func(iv restart.Interval) *node {
		m := int64(0)
		if iv.Enabled {
			m = int64(iv.Minutes)
		}
		return typed(typeLong, numNode(fmt.Sprint(m)))
	}
	add.set(keyRebootAskPeriod, period(pol.RepeatPrompt))
	add.set(keyRebootForce, period(pol.RestartAfter))
	add.set(keyRebootMessage, strNode(pol.Message))
}

// restartFromPublic reads the restart options of a document without
// TF_RESTART; ok is false when it has none of them.
func (p *parser) restartFromPublic(add *node, path string) (restart.Policy, bool) {
	pol := restart.Default()
	found := false
	for _, k := range publicAdditional[:5] {
		if add.get(k) != nil {
			found = true
		}
	}
	if !found {
		return pol, false
	}
	imm, _ := p.boolean(add, keyRebootImmediately, join(path, keyRebootImmediately))
	ask, hasAsk := p.boolean(add, keyRebootAsk, join(path, keyRebootAsk))
	switch {
	case imm && ask:
		p.fail(errs.Invalid(join(path, keyRebootAsk), "true", "must be false when "+keyRebootImmediately+" is true"))
	case imm:
		pol.Action = restart.Restart
	case ask || !hasAsk:
		pol.Action = restart.Prompt
	default:
		pol.Action = restart.DoNotRestart
	}
	interval := func(key string, iv *restart.Interval) {
		v, ok := p.pubIntIn(add, key, join(path, key), 0, restart.MaxMinutes, -1)
		switch {
		case !ok || v < 0:
		case v == 0:
			iv.Enabled = false
		default:
			*iv = restart.Interval{Enabled: true, Minutes: int(v)}
		}
	}
	interval(keyRebootAskPeriod, &pol.RepeatPrompt)
	interval(keyRebootForce, &pol.RestartAfter)
	if m, ok := p.str(add, keyRebootMessage, join(path, keyRebootMessage), false); ok {
		pol.Message = m
	}
	if err := pol.Validate(); err != nil {
		p.fail(errs.Prefix(path, err))
	}
	return pol, true
}

// checkMirror refuses public fields of obj that disagree with the ones
// Export writes (want), naming what is authoritative.
func (p *parser) checkMirror(obj, want *node, path, authority string) {
	for i, k := range want.keys {
		got := obj.get(k)
		if got == nil {
			continue
		}
		if string(compact(got)) != string(compact(want.kids[i])) {
			p.fail(errs.Invalid(join(path, k), short(string(compact(got))), fmt.Sprintf("disagrees with %s, which has %s", authority, short(string(compact(want.kids[i]))))))
		}
	}
}

// pubIntIn reads an integer field (paramInt or paramLong) of obj at path
// within [lo, hi]; an absent field gives def.
func (p *parser) pubIntIn(obj *node, key, path string, lo, hi, def int64) (int64, bool) {
	n := obj.get(key)
	if n == nil {
		return def, true
	}
	if n.kind == kObject {
		t, v, err := typedParts(n, path)
		if err != nil || t != typeLong {
			p.fail(errs.Invalid(path, "", "must be an integer (int or long)"))
			return 0, false
		}
		n = v
	}
	v, ok, isInt := integer(n.s)
	if n.kind != kNumber || !isInt || !ok {
		p.fail(errs.Invalid(path, "", "must be an integer (int or long)"))
		return 0, false
	}
	if v < lo || v > hi {
		p.fail(errs.Invalid(path, short(n.s), fmt.Sprintf("must be in %d..%d", lo, hi)))
		return 0, false
	}
	return v, true
}

// hostListNode writes the devices of a devices scope.
func hostListNode(devs []scope.DeviceID) *node {
	arr := &node{kind: kArray, kids: make([]*node, len(devs))}
	for i, d := range devs {
		arr.kids[i] = strNode(string(d))
	}
	return arr
}

// hostList reads HostList: device ids as strings.
func (p *parser) hostList(tp *node) ([]scope.DeviceID, bool) {
	n := tp.get(keyHostList)
	if n == nil {
		return nil, false
	}
	path := p.path(keyHostList)
	if n.kind != kArray {
		p.fail(errs.Invalid(path, "", "must be an array of device ids (strings)"))
		return nil, false
	}
	out := make([]scope.DeviceID, 0, len(n.kids))
	for i, k := range n.kids {
		if k.kind != kString {
			p.fail(errs.Invalid(fmt.Sprintf("%s[%d]", path, i), "", "must be a device id (a string)"))
			return nil, false
		}
		out = append(out, scope.DeviceID(k.s))
	}
	return out, true
}

func isPublicAdditional(k string) bool { return slices.Contains(publicAdditional, k) }
