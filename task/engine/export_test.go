package engine

// SetAfterClaim installs a hook called after each claim, before the
// claimed starts are completed (tests stall or kill a replica there).
func SetAfterClaim(s *Server, f func()) { s.lead.afterClaim = f }

// SetIntakeChecks turns the intake's item checks on or off (the
// benchmark measures their cost; a server always runs with them on).
func SetIntakeChecks(s *Server, on bool) {
	s.mu.Lock()
	s.in.off = !on
	s.mu.Unlock()
}

// SetGroupCommit turns the intake's unlocked batch writes on or off (off:
// the lock is held during the write, as before; BenchmarkIntakeConcurrent
// compares both).
func SetGroupCommit(s *Server, on bool) {
	s.mu.Lock()
	s.in.holdLock = !on
	s.mu.Unlock()
}
