package engine_test

import "github.com/taskfleet/taskfleet/task/engine"

// rejected returns the server's count of rejected device items (kept in
// its own file, so that the hostile suite can be run against servers
// without the counter).
func rejected(s *engine.Server) int64 { return s.Stats().Rejected }

const maxUnknownWithdraws = engine.MaxUnknownWithdraws
