package platform

import "sync/atomic"

// stats are the platform's counters that no other structure holds.
type stats struct {
	unmatchedReplies atomic.Uint64 // replies that answered no call, dropped
	auditWriteErrors atomic.Uint64 // audit records that could not be written
	slowConsumers    atomic.Uint64 // connections closed as slow consumers
	dropped          atomic.Uint64 // deliveries dropped for a full queue or budget
	refusedConns     atomic.Uint64 // handshakes refused by a connection limit
}
