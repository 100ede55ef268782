package httptransport

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/taskfleet/taskfleet/task/transport"
)

// The per-device locks exist only while a request holds or waits for
// them: a fleet's enrollments leave none behind, and one device's
// requests are serialized.
func TestDeviceLocksAreReleased(t *testing.T) {
	t.Parallel()
	e, err := NewEnrollment(EnrollmentConfig{Secret: "fleet-enrollment-secret-0123456789", Rate: 1e6, Burst: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	in := 0 // goroutines inside dev-0's lock; guarded by it
	for i := range 200 {
		wg.Go(func() {
			unlock := e.lock("dev-0")
			in++
			if in != 1 {
				t.Errorf("%d goroutines hold dev-0's lock", in)
			}
			in--
			unlock()
			_, _ = e.Enroll(context.Background(), transport.DeviceID("dev-"+strconv.Itoa(i)), e.cfg.Secret)
		})
	}
	wg.Wait()
	e.devMu.Lock()
	defer e.devMu.Unlock()
	if len(e.devs) != 0 {
		t.Fatalf("%d device locks left behind", len(e.devs))
	}
}
