package sqlstore

import (
	"context"
	"fmt"

	"github.com/taskfleet/taskfleet/storage"
)

var _ storage.UniqueNameLookup = (*Store)(nil)

// TaskIDByUniqueName implements storage.UniqueNameLookup with the unique
// index on tasks.unique_name.
func (s *Store) TaskIDByUniqueName(ctx context.Context, name string) (string, error) {
	if err := s.checkOpen(); err != nil {
		return "", err
	}
	var id string
	err := s.r.GetContext(ctx, &id, s.r.Rebind(`SELECT id FROM tasks WHERE unique_name = ?`), name)
	if err != nil {
		return "", fmt.Errorf("sqlstore: task named %q: %w", name, mapErr(err))
	}
	return id, nil
}
