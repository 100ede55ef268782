package memstore

import (
	"context"
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/storage"
)

// lease is one named leader lease.
type lease struct {
	owner string
	epoch int64
	until time.Time
}

// AcquireLeader implements storage.Leader in process: the lease is judged
// by p.Now, or by the store's Clock (Config.Clock) when p.Now is nil.
func (s *Store) AcquireLeader(ctx context.Context, p storage.LeaderParams) (storage.Leadership, error) {
	if p.Name == "" || p.Owner == "" || p.TTL <= 0 {
		return storage.Leadership{}, fmt.Errorf("memstore: acquire leader: name and owner must not be empty and ttl must be positive: %w", storage.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.Leadership{}, errClosed()
	}
	now := s.clk.Now()
	if p.Now != nil {
		now = *p.Now
	}
	l := s.leases[p.Name]
	switch {
	case l == nil:
		l = &lease{owner: p.Owner, epoch: 1}
		s.leases[p.Name] = l
	case l.owner == p.Owner:
	case l.until.Before(now):
		l.owner, l.epoch = p.Owner, l.epoch+1
	default:
		return storage.Leadership{Owner: l.owner, Epoch: l.epoch}, nil
	}
	l.until = now.Add(p.TTL)
	return storage.Leadership{Held: true, Owner: l.owner, Epoch: l.epoch}, nil
}
