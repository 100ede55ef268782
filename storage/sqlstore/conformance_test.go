package sqlstore_test

import (
	"context"
	"testing"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/storage/storagetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	t.Run("SQLiteFile", func(t *testing.T) {
		t.Parallel()
		storagetest.Run(t, storagetest.Harness{
			New:      func(t *testing.T) storage.Store { return openSQLiteFile(t) },
			Features: storagetest.Features{Claimer: true, Hierarchy: true, DeviceKeys: true},
		})
	})
	t.Run("SQLiteMemory", func(t *testing.T) {
		t.Parallel()
		storagetest.Run(t, storagetest.Harness{
			New: func(t *testing.T) storage.Store {
				s, err := sqlstore.OpenSQLite(context.Background(), ":memory:")
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Features: storagetest.Features{Claimer: true, Hierarchy: true, DeviceKeys: true},
		})
	})
	t.Run("Postgres", func(t *testing.T) {
		t.Parallel()
		storagetest.Run(t, storagetest.Harness{
			New:      func(t *testing.T) storage.Store { return openPG(t) },
			Features: storagetest.Features{Claimer: true, Hierarchy: true, DeviceKeys: true},
		})
	})
}
