package engine

// SetAfterClaim installs a hook called after each claim, before the
// claimed starts are completed (tests stall or kill a replica there).
func SetAfterClaim(s *Server, f func()) { s.afterClaim = f }
