package platform

import (
	"sync"
	"time"

	"github.com/capbus/capbus/internal/audit"
)

// Audit actions and decisions: the "action" and "decision" fields of an
// audit record (docs/AUDIT.md describes each kind).
const (
	actHandshake  = audit.ActionHandshake
	actAdmit      = audit.ActionAdmit
	actRefuse     = audit.ActionRefuse
	actCall       = audit.ActionCall
	actPublish    = audit.ActionPublish
	actSubscribe  = audit.ActionSubscribe
	actExport     = audit.ActionExport
	actReply      = audit.ActionReply
	actDisconnect = audit.ActionDisconnect
	actRevoke     = audit.ActionRevoke
	actGrant      = audit.ActionGrant
	actReload     = audit.ActionReload
	actConfig     = audit.ActionConfig
	actStart      = audit.ActionStart
	actStop       = audit.ActionStop

	decAllow = audit.DecisionAllow
	decDeny  = audit.DecisionDeny
)

// auditRecord is one line of the audit log. It never holds a secret: keys
// are public keys.
type auditRecord = audit.Record

// auditor records what the platform decides: to the audit log (aggregated
// and rotated by internal/audit), and the latest denials for operators.
type auditor struct {
	log     *audit.Log
	allowed bool // record allowed calls, publishes and subscribes too

	mu      sync.Mutex
	denials []auditRecord // ring of the latest denials, newest last
	next    int
}

// maxDenials bounds the denials kept for operators (the console).
const maxDenials = 100

func (a *auditor) record(r auditRecord) {
	if a == nil {
		return
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	if a.log != nil {
		a.log.Record(r)
	}
	if r.Decision == decDeny && r.Action != actDisconnect && r.Action != actReload {
		a.mu.Lock()
		if len(a.denials) < maxDenials {
			a.denials = append(a.denials, r)
		} else {
			a.denials[a.next] = r
			a.next = (a.next + 1) % maxDenials
		}
		a.mu.Unlock()
	}
}

// recentDenials returns the latest denials, newest first.
func (a *auditor) recentDenials() []auditRecord {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]auditRecord, 0, len(a.denials))
	for i := range a.denials {
		j := (a.next - 1 - i + 2*len(a.denials)) % len(a.denials)
		out = append(out, a.denials[j])
	}
	return out
}
