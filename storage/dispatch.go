package storage

import (
	"context"
	"time"
)

// Claimer is an optional interface of a Store shared by several server
// replicas: due results are dispatched by exactly one replica, and the
// dispatched starts that no device has answered are leased to the replica
// that resends them. Detect it with a type assertion
// (store.(storage.Claimer)).
//
// A store without it still supports one server: task/engine then keeps
// due starts in memory and dispatches only while it holds the Leader
// lease, and refuses to run as a second replica (engine.ErrOtherReplica)
// rather than dispatch twice.
//
// # Dispatch is one atomic step
//
// DispatchDue takes due results, moves them from p.FromState to p.State
// with p.Seq, leases them to p.Owner with a new fencing epoch and appends
// one dispatch ledger record per result, all in one transaction (on
// PostgreSQL one statement whose rows are picked with SELECT ... FOR
// UPDATE SKIP LOCKED, so concurrent replicas never wait for each other and
// never take the same row). There is no window in which a result is
// claimed but not yet dispatched: a replica that dies before the commit
// leaves its rows untouched (due again for any replica), and a result
// leaves p.FromState once, so it is dispatched once. Each result is
// written once per dispatch.
//
// # Leases and fencing
//
// A dispatched result stays leased to its replica until the device
// answers (its Seq moves past the dispatched Seq). The replica renews the
// lease each time it resends (RenewClaims); when the lease expires (the
// replica died or stalled), ClaimStale gives the result to another
// replica with a higher epoch, which resends the same start (devices
// de-duplicate it by its idempotency key). The first replica's renewal
// then fails on the epoch, so it stops resending: a stale replica's late
// write is rejected.
//
// # Clocks
//
// Lease expiry is judged by the store's clock (PostgreSQL's now() on the
// database server) unless the caller passes Now: two replicas whose
// clocks differ by seconds still agree on whether a lease expired. A
// replica's clock only decides p.Before (when work is due), which changes
// when a run is dispatched, never how often.
//
// Every lease call takes Now *time.Time (River's pattern): nil means the
// store's clock; a non-nil Now is the instant the store must use instead,
// both to set a lease's end (Now + TTL) and to judge whether a lease
// expired. Callers pass it from an injected clock (tests with a mock
// clock, hosts whose replicas share one clock), so no test waits for a
// lease to expire. A Store must honour it.
type Claimer interface {
	// DispatchDue dispatches up to p.Limit due results (ordered by DueAt,
	// TaskID, DeviceID; rows locked by another replica are skipped, not
	// waited for) of tasks that exist and are not suspended, and returns
	// them as claims, in that order.
	DispatchDue(ctx context.Context, p DispatchParams) ([]Claim, error)
	// ClaimStale takes over up to p.Limit results in p.State whose Seq is
	// still p.Seq (no device answered) and whose lease expired, leasing
	// them to p.Owner with a higher epoch. It writes no ledger record: the
	// start was dispatched before and is only resent.
	ClaimStale(ctx context.Context, p StaleParams) ([]Claim, error)
	// RenewClaims extends by p.TTL the leases of the claims that p.Owner
	// still holds with the same epoch, run, state and seq, and returns
	// those, in input order; the others (taken over, answered, restarted)
	// are left alone.
	RenewClaims(ctx context.Context, p RenewParams) ([]Claim, error)
}

// DispatchParams are DispatchDue's parameters.
type DispatchParams struct {
	// Owner identifies the replica (unique per process lifetime).
	Owner string
	// FromState is the dispatchable state (typically "scheduled"). A
	// store may dispatch from one state only, the one it keeps a queue of
	// (sqlstore on PostgreSQL: "scheduled"); another is ErrInvalid there.
	FromState string
	// State and Seq are written to the dispatched results (UpdatedAt At).
	// State must differ from FromState (else ErrInvalid: the result would
	// stay due and be dispatched again).
	State string
	Seq   int64
	At    time.Time
	// Before: results with DueAt <= Before are due.
	Before time.Time
	// TTL is the lease's length on the store's clock (> 0).
	TTL time.Duration
	// Limit is the largest number of results dispatched (1..MaxListLimit).
	Limit int
	// Now is the lease clock's instant (nil: the store's clock).
	Now *time.Time
}

// StaleParams are ClaimStale's parameters.
type StaleParams struct {
	// Owner is the replica taking the results over.
	Owner string
	// State and Seq select dispatched results no device answered.
	State string
	Seq   int64
	// TTL is the new lease's length (> 0).
	TTL time.Duration
	// Limit is the largest number of results taken (1..MaxListLimit).
	Limit int
	// Now is the lease clock's instant (nil: the store's clock); a lease
	// ending before it has expired.
	Now *time.Time
}

// RenewParams are RenewClaims' parameters.
type RenewParams struct {
	// Owner is the replica renewing; State and Seq must still be the
	// results' (no device answered since).
	Owner string
	State string
	Seq   int64
	// TTL is the renewed lease's length from Now (> 0).
	TTL time.Duration
	// Claims are the leases to renew, with the epoch they were taken with.
	Claims []Claim
	// Now is the lease clock's instant (nil: the store's clock).
	Now *time.Time
}

// Claim is one leased result.
type Claim struct {
	TaskID   string
	DeviceID string
	RunID    int64
	Seq      int64
	DueAt    time.Time
	// Epoch is the result's fencing epoch after this claim.
	Epoch int64
	// TaskRevision is the task's revision when it was claimed, so a
	// replica can tell that its copy of the task is out of date.
	TaskRevision int64
}

// Leader is part of every Store: named leases for singleton duties among
// server replicas (firing server-run activations, purging history, and,
// on a store without Claimer, dispatching at all). At most one owner
// holds a named lease at a time, judged by the store's clock or by
// p.Now. memstore implements it in process.
type Leader interface {
	// AcquireLeader takes or renews the named lease for p.Owner, in one
	// atomic step: the lease is taken when it is free or expired (its
	// end is before the lease clock's now), renewed when p.Owner holds it,
	// and left alone otherwise. It returns Held false when another
	// owner's lease has not expired. The epoch grows each time the lease
	// changes owner (a renewal keeps it), so a new holder can fence a
	// stale one. Concurrent callers for one name get at most one Held.
	// An empty Name or Owner or a TTL <= 0 is ErrInvalid.
	AcquireLeader(ctx context.Context, p LeaderParams) (Leadership, error)
}

// LeaderParams are AcquireLeader's parameters.
type LeaderParams struct {
	// Name names the lease (one holder per name).
	Name string
	// Owner identifies the caller (unique per replica).
	Owner string
	// TTL is how long the lease lasts from now without renewal (> 0).
	TTL time.Duration
	// Now is the lease clock's instant (nil: the store's clock).
	Now *time.Time
}

// Leadership is the state of a named lease after AcquireLeader.
type Leadership struct {
	// Held: the caller holds the lease now.
	Held bool
	// Owner is the lease's holder after the call.
	Owner string
	// Epoch counts the lease's changes of owner (1 for its first owner).
	Epoch int64
}
