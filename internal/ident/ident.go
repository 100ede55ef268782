// Package ident holds the identifier types that the domain packages and
// the wire protocol share, so that neither has to import the other: a
// device agent links package task/transport without package scope, and
// scope.DeviceID and transport.DeviceID stay one type (aliases of
// DeviceID), so no conversion is needed between them.
package ident

// DeviceID identifies a device in the inventory and on the device
// channel. It is opaque; scope resolution orders devices by comparing IDs
// as byte strings. Hosts name it scope.DeviceID or transport.DeviceID.
type DeviceID string
