package platform

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"time"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/platform/admin"
	"github.com/capbus/capbus/rpc"
)

// The admin endpoint (platform/admin): metrics, probes and the web
// console, served by Run when WithAdmin is given.

// Bounds of the console's permission matrix: a platform with more users or
// agent methods shows the first ones (sorted) and says so in the policy
// state's file line.
const (
	maxMatrixUsers   = 200
	maxMatrixTargets = 400
)

// WithAdmin serves the admin endpoint at address ("host:port"; a loopback
// host is what an operator should use, or a firewall): /metrics, /healthz,
// /readyz and the web console. Console access needs the secret in
// tokenFile, generated (mode 0600) if missing. Run opens the endpoint once
// the platform listens and closes it when the platform stops; AdminAddr
// says where it listens.
func WithAdmin(address, tokenFile string) Option {
	return optionFunc(func(c *config) { c.adminAddress, c.adminTokenFile = address, tokenFile })
}

// AdminAddr returns the address the admin endpoint listens on ("host:port"),
// or "" without WithAdmin or before Ready.
func (p *Platform) AdminAddr() string {
	select {
	case <-p.ready:
		return p.adminAddr
	default:
		return ""
	}
}

// listenAdmin binds the admin endpoint's address, if configured (nil
// otherwise). Binding writes nothing.
func (p *Platform) listenAdmin() (net.Listener, error) {
	if p.cfg.adminAddress == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", p.cfg.adminAddress)
	if err != nil {
		return nil, fmt.Errorf("platform: admin endpoint: %w", err)
	}
	return ln, nil
}

// closeListener closes ln, if any.
func closeListener(ln net.Listener) {
	if ln != nil {
		_ = ln.Close()
	}
}

// serveAdmin serves the admin endpoint on ln (nothing when ln is nil) until
// the returned stop is called. It writes the token file if missing.
func (p *Platform) serveAdmin(ctx context.Context, ln net.Listener) (stop func(), err error) {
	if ln == nil {
		return func() {}, nil
	}
	srv, err := admin.New(consoleBackend{p},
		admin.WithTokenFile(p.cfg.adminTokenFile),
		admin.WithMetrics(p.MetricsHandler()),
		admin.WithLogger(p.log))
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("platform: admin endpoint: %w", err)
	}
	p.adminAddr = ln.Addr().String()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, ln); err != nil {
			p.log.Error("admin endpoint stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// consoleBackend is the platform as the admin console sees it.
type consoleBackend struct{ p *Platform }

// Ready says whether the platform listens with a policy.
func (b consoleBackend) Ready(context.Context) error {
	p := b.p
	switch {
	case p.Addr() == "":
		return errors.New("not listening yet")
	case p.policy().Closed():
		return errors.New("no policy in force: auth.json is missing, empty or invalid, nobody is admitted")
	}
	return nil
}

// Snapshot is the state the overview page shows.
func (b consoleBackend) Snapshot(ctx context.Context) (admin.Snapshot, error) {
	p := b.p
	pol := p.policy()
	var s admin.Snapshot

	p.mu.RLock()
	peers := make([]*peer, 0, len(p.conns))
	for pe := range p.conns {
		peers = append(peers, pe)
	}
	p.mu.RUnlock()
	sort.Slice(peers, func(i, j int) bool {
		if a, b := peers[i].ident(), peers[j].ident(); a != b {
			return a < b
		}
		return peers[i].id < peers[j].id
	})
	type target struct {
		name   string
		callee *peer
		exp    *export
	}
	var targets []target
	for _, pe := range peers {
		n, bytes := pe.queued()
		s.Peers = append(s.Peers, admin.Peer{Identity: pe.ident(), UserID: pe.userID, Address: pe.remoteAddr,
			Since: pe.since, CallsIn: pe.callsIn.Load(), CallsOut: pe.callsOut.Load(), QueueMessages: n, QueueBytes: bytes})
		if !pe.welcomed.Load() {
			continue
		}
		table := *pe.exports.Load()
		names := make([]string, 0, len(table))
		for name := range table {
			names = append(names, name)
		}
		sort.Strings(names)
		a := admin.Agent{Identity: pe.identity, UserID: pe.userID}
		for _, name := range names {
			exp := table[name]
			req := exp.requirement(pol, pe)
			a.Methods = append(a.Methods, admin.Method{Name: name, Capabilities: req.Capabilities(),
				Roles: req.Roles(), Params: exp.decl.Params})
			targets = append(targets, target{pe.identity + "." + name, pe, exp})
		}
		s.Agents = append(s.Agents, a)
	}

	users := pol.Users()
	sort.Strings(users)
	users = slices.DeleteFunc(users, func(u string) bool { return u == "*" })
	if len(users) > maxMatrixUsers {
		users = users[:maxMatrixUsers]
	}
	if len(targets) > maxMatrixTargets {
		targets = targets[:maxMatrixTargets]
	}
	s.Matrix.Users = users
	for _, t := range targets {
		s.Matrix.Targets = append(s.Matrix.Targets, t.name)
	}
	for _, u := range users {
		if err := ctx.Err(); err != nil {
			return admin.Snapshot{}, err
		}
		row := make([]admin.Cell, len(targets))
		subj, err := pol.Subject(rpc.Principal{UserID: u})
		for i, t := range targets {
			if err != nil {
				row[i] = admin.Cell{Reason: err.Error()}
				continue
			}
			req := t.exp.requirement(pol, t.callee)
			d := pol.Decide(subj, req, nil)
			c := admin.Cell{Allowed: d.Allowed, Conditional: req.NeedsArgs(), Reason: d.Reason(), Missing: d.Missing()}
			ex := d.Explanation()
			for _, g := range ex.Held {
				if slices.Contains(ex.RequiredCapabilities, g.Name) {
					for _, src := range g.Sources {
						c.Sources = append(c.Sources, g.Name+": "+src.String())
					}
				}
			}
			for _, g := range ex.HeldRoles {
				if slices.Contains(ex.RequiredRoles, g.Name) {
					for _, src := range g.Sources {
						c.Sources = append(c.Sources, "role "+g.Name+": "+src.String())
					}
				}
			}
			row[i] = c
		}
		s.Matrix.Cells = append(s.Matrix.Cells, row)
	}

	for _, r := range p.audit.recentDenials() {
		target := r.Topic
		if r.Method != "" {
			target = r.Peer + "." + r.Method
		}
		s.Denials = append(s.Denials, admin.Denial{Time: r.Time, UserID: r.UserID, Identity: r.Identity,
			Target: target, Reason: r.Reason, Missing: r.Missing})
	}

	s.Policy = admin.PolicyState{File: p.cfg.authFile, Generation: pol.Generation(), LoadedAt: p.loadedAt()}
	if p.store != nil {
		s.Policy.File = p.store.Path()
		if rej := p.store.Rejected(); rej != nil {
			s.Policy.Rejected = &admin.RejectedEdit{Time: p.rejectedAt(), Line: rej.Line, Column: rej.Column, Message: rej.Error()}
		}
	}
	return s, nil
}

// Grant gives user the capability in its allow entry.
func (b consoleBackend) Grant(ctx context.Context, by, user, capability string) error {
	return b.p.editCapability(ctx, by, user, capability, true)
}

// Revoke takes the capability from user's allow entries.
func (b consoleBackend) Revoke(ctx context.Context, by, user, capability string) error {
	return b.p.editCapability(ctx, by, user, capability, false)
}

// errNoAuthFile is the error of a console edit on a platform whose policy
// does not come from a file.
var errNoAuthFile = errors.New("this platform's policy does not come from an auth.json file: nothing to edit")

// editCapability grants (or revokes) capability to user through
// auth.EditFile, the CLI's validated atomic writer, then reloads the file so
// that the change is in force when it returns, and audits it with by.
func (p *Platform) editCapability(ctx context.Context, by, user, capability string, grant bool) error {
	if p.store == nil {
		return errNoAuthFile
	}
	if capability == "" || user == "" {
		return errors.New("a user and a capability are needed")
	}
	err := auth.EditFile(ctx, p.store.Path(), func(f *auth.File) error {
		found := false
		for i := range f.Allow {
			e := &f.Allow[i]
			if e.UserID != user {
				continue
			}
			found = true
			has := slices.Contains(e.Capabilities.Names(), capability)
			switch {
			case grant && !has:
				e.Capabilities = append(e.Capabilities, auth.Capability{Name: capability})
				return nil // the user's first entry gets it
			case grant:
				return fmt.Errorf("user %q already holds %q in its entry", user, capability)
			case has:
				e.Capabilities = slices.DeleteFunc(e.Capabilities, func(c auth.Capability) bool { return c.Name == capability })
			}
		}
		switch {
		case !found:
			return fmt.Errorf("no allow entry with user_id %q", user)
		case !grant && !slices.ContainsFunc(f.Allow, func(e auth.Entry) bool { return e.UserID == user }):
			return fmt.Errorf("no allow entry with user_id %q", user)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := p.store.Reload(); err != nil {
		return fmt.Errorf("written, but the platform did not install it: %w", err)
	}
	act := actGrant
	if !grant {
		act = actRevoke
	}
	p.audit.record(auditRecord{Action: act, Decision: decAllow, UserID: user, Required: []string{capability},
		By: by, File: p.store.Path(), Generation: p.policy().Generation()})
	return nil
}

// loadedAt returns when the policy in force was installed.
func (p *Platform) loadedAt() time.Time {
	if t := p.polLoaded.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// rejectedAt returns when the last rejected edit was seen.
func (p *Platform) rejectedAt() time.Time {
	if t := p.polRejected.Load(); t != nil {
		return *t
	}
	return time.Time{}
}
