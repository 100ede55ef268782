package storage

import (
	"context"
	"time"
)

// Claimer is an optional interface of a Store shared by several server
// replicas: due results are claimed with a lease so each (task, device,
// run) is dispatched by exactly one replica. Detect it with a type
// assertion (store.(storage.Claimer)).
//
// # Leases and fencing
//
// ClaimDue takes results in state p.State whose DueAt is not after
// p.Before and whose lease is free or expired, gives them to p.Owner for
// p.TTL and increments their epoch. CompleteClaims then moves each claimed
// result to the new state and sequence, and appends one dispatch record,
// only if the result still carries the claim's epoch and state: a replica
// that stalled past its lease and whose work was claimed again by another
// replica (a higher epoch) has its late completion rejected.
//
// # Clocks
//
// Lease expiry is judged by the store's clock (PostgreSQL's now() on the
// database server), never by the replica's: two replicas whose clocks
// differ by seconds still agree on whether a lease expired. A replica's
// clock only decides p.Before (when work is due), which changes when a run
// is dispatched, never how often.
type Claimer interface {
	// ClaimDue claims up to p.Limit due results (ordered by DueAt, TaskID,
	// DeviceID; rows locked by another claimer are skipped, not waited
	// for) and returns the claims.
	ClaimDue(ctx context.Context, p ClaimParams) ([]Claim, error)
	// CompleteClaims settles claims atomically: each result whose stored
	// epoch, owner, run and state still match its claim gets p.State and
	// p.Seq (UpdatedAt p.At) and its lease is released; the others are
	// rejected (fenced). It returns the accepted claims, in input order.
	CompleteClaims(ctx context.Context, p CompleteParams) ([]Claim, error)
	// ReleaseClaims frees the leases of claims not completed (the replica
	// gives work back, e.g. a suspended task), keeping their state.
	ReleaseClaims(ctx context.Context, owner string, claims []Claim) error
}

// ClaimParams are ClaimDue's parameters.
type ClaimParams struct {
	// Owner identifies the replica (unique per process lifetime).
	Owner string
	// State is the claimable state (typically "scheduled").
	State string
	// Before: results with DueAt <= Before are due.
	Before time.Time
	// TTL is the lease's length on the store's clock (> 0).
	TTL time.Duration
	// Limit is the largest number of claims returned (> 0).
	Limit int
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
}

// CompleteParams are CompleteClaims' parameters.
type CompleteParams struct {
	Owner string
	// FromState is the state the results must still be in.
	FromState string
	// State and Seq are written to accepted results.
	State string
	Seq   int64
	At    time.Time
	// Claims to settle.
	Claims []Claim
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
