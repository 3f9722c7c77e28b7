package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Audit actions: the "action" field of an audit record.
const (
	actHandshake  = "handshake"  // a key refused at the CURVE handshake
	actAdmit      = "admit"      // hello accepted
	actRefuse     = "refuse"     // hello refused (identity, hook, identity in use)
	actCall       = "call"       // a call or notify denied (policy or hook)
	actPublish    = "publish"    // a publish denied
	actSubscribe  = "subscribe"  // a subscribe denied, or dropped by a reload
	actDisconnect = "disconnect" // a connection ended
	actRevoke     = "revoke"     // a reload closed a connection
	actReload     = "reload"     // the policy was reloaded (or a reload failed)
	actExport     = "export"     // an export change after hello refused
	actReply      = "reply"      // a reply that answers no call, dropped
)

// Decisions: the "decision" field.
const (
	decAllow = "allow"
	decDeny  = "deny"
)

// auditRecord is one line of the audit log. It never holds a secret: keys
// are public keys.
type auditRecord struct {
	Time       string   `json:"time"`
	Action     string   `json:"action"`
	Decision   string   `json:"decision,omitempty"`
	UserID     string   `json:"user_id,omitempty"`
	Identity   string   `json:"identity,omitempty"`
	Key        string   `json:"key,omitempty"`
	Remote     string   `json:"remote,omitempty"`
	Peer       string   `json:"peer,omitempty"`
	Method     string   `json:"method,omitempty"`
	Topic      string   `json:"topic,omitempty"`
	Errno      int      `json:"errno,omitempty"`
	Required   []string `json:"required,omitempty"`
	Missing    []string `json:"missing,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	File       string   `json:"file,omitempty"`
	Generation uint64   `json:"generation,omitempty"`
}

// auditor writes audit records as JSON lines and to slog.
type auditor struct {
	log *slog.Logger
	mu  sync.Mutex
	ws  []io.Writer
}

func newAuditor(log *slog.Logger, ws ...io.Writer) *auditor {
	a := &auditor{log: log}
	for _, w := range ws {
		if w != nil {
			a.ws = append(a.ws, w)
		}
	}
	return a
}

func (a *auditor) record(r auditRecord) {
	if a == nil {
		return
	}
	r.Time = time.Now().UTC().Format(time.RFC3339Nano)
	if a.log.Enabled(context.Background(), slog.LevelInfo) {
		// Only the fields that apply, as in the JSON record.
		attrs := make([]slog.Attr, 0, 10)
		for _, f := range [...]struct{ k, v string }{
			{"action", r.Action}, {"decision", r.Decision}, {"user_id", r.UserID},
			{"identity", r.Identity}, {"key", r.Key}, {"peer", r.Peer}, {"method", r.Method},
			{"topic", r.Topic}, {"reason", r.Reason},
		} {
			if f.v != "" {
				attrs = append(attrs, slog.String(f.k, f.v))
			}
		}
		if r.Generation != 0 {
			attrs = append(attrs, slog.Uint64("generation", r.Generation))
		}
		a.log.LogAttrs(context.Background(), slog.LevelInfo, "audit", attrs...)
	}
	if len(a.ws) == 0 {
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // Z85 keys contain < > &
	if err := enc.Encode(r); err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.ws {
		_, _ = w.Write(buf.Bytes())
	}
}
