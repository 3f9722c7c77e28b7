package platform

import "sync/atomic"

// stats are the platform's counters that no other structure holds.
type stats struct {
	unmatchedReplies atomic.Uint64 // replies that answered no call, dropped
	auditWriteErrors atomic.Uint64 // audit records that could not be written
}
