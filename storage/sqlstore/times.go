package sqlstore

import (
	"fmt"
	"time"
)

// zeroMicros is time.Time{} as microseconds since the Unix epoch: SQLite
// stores the zero time as this instant, PostgreSQL as 0001-01-01 UTC.
var zeroMicros = time.Time{}.UnixMicro()

// tv converts a time for a query parameter: int64 microseconds on SQLite,
// a UTC time.Time truncated to microseconds on PostgreSQL.
func (s *Store) tv(t time.Time) any {
	if s.dialect == SQLite {
		return microsOf(t)
	}
	return t.UTC().Truncate(time.Microsecond)
}

func microsOf(t time.Time) int64 {
	if t.IsZero() {
		return zeroMicros
	}
	return t.UnixMicro()
}

// dbTime scans either representation back into a UTC time.Time; the zero
// instant comes back as the zero time.Time.
type dbTime struct{ T time.Time }

// Scan implements sql.Scanner.
func (d *dbTime) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		d.T = time.Time{}
	case int64:
		if v == zeroMicros {
			d.T = time.Time{}
		} else {
			d.T = time.UnixMicro(v).UTC()
		}
	case time.Time:
		d.T = v.UTC()
		if d.T.UnixMicro() == zeroMicros {
			d.T = time.Time{}
		}
	default:
		return fmt.Errorf("sqlstore: cannot scan %T into a time", src)
	}
	return nil
}
