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
// database server), never by a replica's: two replicas whose clocks differ
// by seconds still agree on whether a lease expired. A replica's clock
// only decides p.Before (when work is due), which changes when a run is
// dispatched, never how often.
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
	// FromState is the dispatchable state (typically "scheduled").
	FromState string
	// State and Seq are written to the dispatched results (UpdatedAt At).
	State string
	Seq   int64
	At    time.Time
	// Before: results with DueAt <= Before are due.
	Before time.Time
	// TTL is the lease's length on the store's clock (> 0).
	TTL time.Duration
	// Limit is the largest number of results dispatched (1..MaxListLimit).
	Limit int
}

// StaleParams are ClaimStale's parameters.
type StaleParams struct {
	Owner string
	// State and Seq select dispatched results no device answered.
	State string
	Seq   int64
	TTL   time.Duration
	Limit int
}

// RenewParams are RenewClaims' parameters.
type RenewParams struct {
	Owner  string
	State  string
	Seq    int64
	TTL    time.Duration
	Claims []Claim
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

// Leader is an optional interface for singleton duties among replicas
// (firing server-run activations, purging history): at most one owner
// holds a named lease at a time, judged by the store's clock.
type Leader interface {
	// AcquireLeader takes or renews the named lease for p.Owner. It
	// returns Held false when another owner's lease has not expired. The
	// epoch grows each time the lease changes owner.
	AcquireLeader(ctx context.Context, p LeaderParams) (Leadership, error)
}

// LeaderParams are AcquireLeader's parameters.
type LeaderParams struct {
	Name  string
	Owner string
	TTL   time.Duration
}

// Leadership is the state of a named lease after AcquireLeader.
type Leadership struct {
	Held  bool
	Owner string
	Epoch int64
}
