package platform

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/configstore/configdb"
	"github.com/capbus/capbus/internal/codec"
	"github.com/capbus/capbus/internal/vip"
	"github.com/capbus/capbus/rpc"
)

// The capabilities of the configuration store, VOLTTRON's names, and the
// call parameter that auth.json restrictions on them name
// (docs/AUTH.md, "The configuration store").
const (
	// CapEditConfigStore lets a user change (put, delete, roll back) the
	// configuration entries of the identities it is granted for, and read
	// them. An agent's own store too: configuration is the operator's.
	CapEditConfigStore = "edit_config_store"
	// CapReadConfigStore lets a user read the entries of other identities.
	// An agent reads its own entries without it.
	CapReadConfigStore = "read_config_store"
	// ConfigIdentityParam is the parameter a restriction names to limit
	// which identities' stores a grant covers:
	// {"edit_config_store": {"identity": "/platform\\..*/"}}.
	ConfigIdentityParam = "identity"
)

// WithConfigStore serves the configuration store (docs/PROTOCOL.md, the
// config subsystem) from the configdb file at path, created if it does
// not exist. Run opens it, and fails if another process has it open.
// Without this option the config subsystem answers errno 2.
func WithConfigStore(path string) Option {
	return optionFunc(func(c *config) { c.configStore = path })
}

// configService is the platform's side of the configuration store.
type configService struct {
	store *configdb.Store // nil without WithConfigStore; set by Run before it listens

	// mu serializes every change with the push of its entry, and every
	// watch answer with the changes, so that a watching agent receives
	// each change once and in revision order: what its answer holds, then
	// the changes made after it.
	mu sync.Mutex
}

// openConfigStore opens the store of WithConfigStore, if any, and returns
// the function that closes it.
func (p *Platform) openConfigStore() (func(), error) {
	if p.cfg.configStore == "" {
		return func() {}, nil
	}
	s, err := configdb.Open(p.cfg.configStore)
	if err != nil {
		return nil, fmt.Errorf("platform: configuration store: %w", err)
	}
	p.config.store = s
	return func() {
		if err := s.Close(); err != nil {
			p.log.Warn("closing the configuration store", "err", err)
		}
	}, nil
}

// configArgs is how many frames follow each operation.
var configArgs = map[string]int{
	vip.OpConfigGet:         2,
	vip.OpConfigList:        1,
	vip.OpConfigHistory:     2,
	vip.OpConfigPut:         4,
	vip.OpConfigDelete:      2,
	vip.OpConfigDeleteStore: 1,
	vip.OpConfigRollback:    3,
	vip.OpConfigWatch:       1,
}

// configOp handles ["", "VIP1", "", msg-id, "config", op, args...].
func (p *Platform) configOp(pe *peer, frames [][]byte) {
	args := frames[vip.FrameArgs:]
	if len(args) == 0 {
		p.protocolError(pe, frames, "config needs an operation frame")
		return
	}
	op := string(args[0])
	n, ok := configArgs[op]
	switch {
	case !ok:
		p.protocolError(pe, frames, "unknown config operation "+quote(args[0]))
		return
	case len(args) < n+1:
		p.protocolError(pe, frames, fmt.Sprintf("config %s needs %d argument frame(s)", op, n))
		return
	}
	cs := &p.config
	if cs.store == nil {
		p.configRefuse(pe, frames, errorf(rpc.CodeNotFound, "no configuration store on this platform"))
		return
	}
	if op == vip.OpConfigWatch {
		p.configWatch(pe, frames, args[1])
		return
	}
	target := string(args[1])
	if msg := checkIdentity(target); msg != "" {
		p.configRefuse(pe, frames, errorf(rpc.CodeInvalidArgs, "config store of "+quote(args[1])+": "+msg))
		return
	}
	var name string
	if n >= 2 {
		name = string(args[2])
	}
	if e := p.authorizeConfig(pe, op, target); e != nil {
		required, _ := e.data["required"].([]string)
		missing, _ := e.data["missing"].([]string)
		p.audit.record(auditRecord{Action: actConfig, Decision: decDeny, UserID: pe.userID, Identity: pe.identity,
			Key: pe.key.Z85(), Peer: target, Method: op, Topic: name, Errno: int(e.code), Reason: e.text,
			Required: required, Missing: missing, Generation: p.policy().Generation()})
		p.configRefuse(pe, frames, e)
		return
	}

	ctx := p.ctx
	var (
		one  configstore.Entry
		many []configstore.Entry
		err  error
	)
	switch op {
	case vip.OpConfigGet:
		one, err = cs.store.Get(ctx, target, name)
	case vip.OpConfigList:
		many, err = cs.store.List(ctx, target)
	case vip.OpConfigHistory:
		many, err = cs.store.History(ctx, target, name)
	case vip.OpConfigPut:
		kind, data := configstore.Kind(args[3]), args[4]
		one, err = p.configChange(func() (configstore.Entry, error) {
			return cs.store.Put(ctx, target, name, kind, data, pe.userID)
		})
	case vip.OpConfigDelete:
		one, err = p.configChange(func() (configstore.Entry, error) {
			return cs.store.Delete(ctx, target, name, pe.userID)
		})
	case vip.OpConfigRollback:
		version, perr := strconv.ParseUint(string(args[3]), 10, 64)
		if perr != nil {
			p.configRefuse(pe, frames, errorf(rpc.CodeInvalidArgs, "config rollback: version "+quote(args[3])+" is not a decimal number"))
			return
		}
		one, err = p.configChange(func() (configstore.Entry, error) {
			return cs.store.Rollback(ctx, target, name, version, pe.userID)
		})
	case vip.OpConfigDeleteStore:
		cs.mu.Lock()
		many, err = cs.store.DeleteAll(ctx, target, pe.userID)
		for _, e := range many {
			p.configPush(e)
		}
		cs.mu.Unlock()
	}
	if err != nil {
		p.configRefuse(pe, frames, p.configError(err))
		return
	}

	switch op {
	case vip.OpConfigPut, vip.OpConfigDelete, vip.OpConfigRollback:
		p.auditConfigChange(pe, op, target, name, fmt.Sprintf("version %d, revision %d", one.Version, one.Revision))
	case vip.OpConfigDeleteStore:
		p.auditConfigChange(pe, op, target, "", fmt.Sprintf("%d entries deleted", len(many)))
	}
	switch op {
	case vip.OpConfigList, vip.OpConfigHistory, vip.OpConfigDeleteStore:
		p.configAnswer(pe, frames, configFrames(frames[vip.FrameMsgID], vip.OpConfigEntries), many)
	default:
		p.configAnswer(pe, frames, configFrames(frames[vip.FrameMsgID], vip.OpConfigEntry), []configstore.Entry{one})
	}
}

// configChange runs one change of an entry and pushes it to the owner,
// serialized with every other change and watch.
func (p *Platform) configChange(change func() (configstore.Entry, error)) (configstore.Entry, error) {
	p.config.mu.Lock()
	defer p.config.mu.Unlock()
	e, err := change()
	if err == nil {
		p.configPush(e)
	}
	return e, err
}

// configWatch handles ["config", "watch", since]: it answers with the
// identity's revision and every entry of the sender's own store changed
// after since (all of them, tombstones included, when since is beyond the
// revision: the store was replaced), and from then on pushes each change
// of that store to the connection.
func (p *Platform) configWatch(pe *peer, frames [][]byte, sinceFrame []byte) {
	since, err := strconv.ParseUint(string(sinceFrame), 10, 64)
	if err != nil {
		p.configRefuse(pe, frames, errorf(rpc.CodeInvalidArgs, "config watch: since "+quote(sinceFrame)+" is not a decimal number"))
		return
	}
	cs := &p.config
	cs.mu.Lock()
	defer cs.mu.Unlock()
	rev, err := cs.store.Revision(p.ctx, pe.identity)
	if err != nil {
		p.configRefuse(pe, frames, p.configError(err))
		return
	}
	if since > rev {
		since = 0
	}
	changes, err := cs.store.Changes(p.ctx, pe.identity, since)
	if err != nil {
		p.configRefuse(pe, frames, p.configError(err))
		return
	}
	pe.configWatch.Store(true)
	answer := configFrames(frames[vip.FrameMsgID], vip.OpConfigWatching, []byte(strconv.FormatUint(rev, 10)))
	p.configAnswer(pe, frames, answer, changes)
}

// configPush queues ["config", "changed", ENTRY] for the connection of the
// entry's identity, if it watches its store. p.config.mu must be held. A
// full queue drops the push: the agent sees the gap in revisions at the
// next change and asks for what it missed (or catches up when it
// reconnects).
func (p *Platform) configPush(e configstore.Entry) {
	p.mu.RLock()
	owner := p.byIdentity[e.Identity]
	p.mu.RUnlock()
	if owner == nil || !owner.configWatch.Load() {
		return
	}
	b, err := codec.Marshal(vip.ConfigEntryOf(e))
	if err != nil {
		p.log.Error("encoding a configuration entry", "identity", e.Identity, "name", e.Name, "err", err)
		return
	}
	msg := configFrames(nil, vip.OpConfigChanged, b)
	if err := owner.send(msg); err != nil {
		p.log.Warn("configuration change not pushed", "identity", e.Identity, "name", e.Name,
			"revision", e.Revision, "err", err)
	}
}

// configFrames builds ["", "VIP1", "", msg-id, "config", op, args...].
func configFrames(msgID []byte, op string, args ...[]byte) [][]byte {
	out := [][]byte{vip.Empty, vip.SignatureFrame, vip.Empty, clone(msgID), []byte(vip.SubConfig), []byte(op)}
	return append(out, args...)
}

// configAnswer appends one ENTRY frame per entry to answer and queues it
// for pe; an answer larger than pe's queue allows is refused with errno
// 105.
func (p *Platform) configAnswer(pe *peer, frames, answer [][]byte, entries []configstore.Entry) {
	for _, e := range entries {
		b, err := codec.Marshal(vip.ConfigEntryOf(e))
		if err != nil {
			p.configRefuse(pe, frames, errorf(rpc.CodeInternal, "encoding entry "+strconv.Quote(e.Name)+": "+err.Error()))
			return
		}
		answer = append(answer, b)
	}
	if err := pe.sendFrom(pe, answer); errors.Is(err, errQueueFull) {
		var size int
		for _, f := range answer {
			size += len(f)
		}
		p.configRefuse(pe, frames, errorf(rpc.CodeOverloaded,
			fmt.Sprintf("the answer (%d entries, %d bytes) does not fit in this connection's queue", len(entries), size)))
	}
}

// configRefuse answers a config request with an error.
func (p *Platform) configRefuse(pe *peer, frames [][]byte, e *wireError) {
	p.reply(pe, errorFrames(frames[vip.FrameMsgID], e, frames[vip.FramePeer], frames[vip.FrameSubsystem]))
}

// configError maps an error of the store to the wire.
func (p *Platform) configError(err error) *wireError {
	text := strings.TrimPrefix(err.Error(), "configstore: ")
	switch {
	case errors.Is(err, configstore.ErrNotFound):
		return errorf(rpc.CodeNotFound, text)
	case errors.Is(err, configstore.ErrInvalid):
		return errorf(rpc.CodeInvalidArgs, text)
	case errors.Is(err, configdb.ErrClosed), errors.Is(err, context.Canceled):
		return errorf(rpc.CodeUnavailable, "platform shutting down")
	}
	p.log.Error("configuration store", "err", err)
	return errorf(rpc.CodeInternal, "configuration store: "+text)
}

func (p *Platform) auditConfigChange(pe *peer, op, target, name, what string) {
	p.audit.record(auditRecord{Action: actConfig, Decision: decAllow, UserID: pe.userID, Identity: pe.identity,
		Key: pe.key.Z85(), Peer: target, Method: op, Topic: name, Reason: what, Generation: p.policy().Generation()})
}

// authorizeConfig judges op on target's store by the policy in force: an
// agent reads its own store freely; reading another's needs
// read_config_store or edit_config_store, and every change needs
// edit_config_store, each judged like a method call whose parameter
// "identity" is target, so that auth.json restrictions on "identity"
// apply. A refusal names what is missing, or the restriction that failed.
func (p *Platform) authorizeConfig(pe *peer, op, target string) *wireError {
	write := op == vip.OpConfigPut || op == vip.OpConfigDelete || op == vip.OpConfigRollback || op == vip.OpConfigDeleteStore
	if !write && target == pe.identity {
		return nil
	}
	pol := p.policy()
	e := p.judgeConfig(pe, pol, op, target, write)
	if e != nil {
		// A grant written to auth.json just before applies now (see fresher).
		if next := p.fresher(pol); next != nil {
			e = p.judgeConfig(pe, next, op, target, write)
		}
	}
	return e
}

func (p *Platform) judgeConfig(pe *peer, pol *auth.Policy, op, target string, write bool) *wireError {
	subj, err := pe.subject(pol)
	if err != nil {
		return errorf(rpc.CodeUnauthorized, err.Error())
	}
	args := map[string]any{ConfigIdentityParam: target}
	editReq := configRequirement(pol, CapEditConfigStore)
	edit := pol.Decide(subj, editReq, args)
	if edit.Allowed {
		return nil
	}
	if write {
		return configDenied(target, op, editReq, edit, "")
	}
	readReq := configRequirement(pol, CapReadConfigStore)
	read := pol.Decide(subj, readReq, args)
	switch {
	case read.Allowed:
		return nil
	case len(read.Missing()) == 0: // held, but a restriction or condition failed
		return configDenied(target, op, readReq, read, "")
	case len(edit.Missing()) == 0:
		return configDenied(target, op, editReq, edit, "")
	}
	return configDenied(target, op, readReq, read, " or ["+CapEditConfigStore+"]")
}

// configRequirement compiles the requirement of capability c against pol:
// a pseudo-method named after the capability, with the one parameter
// "identity", declared by no agent (so no "methods" rule or
// rpc_method_authorizations of auth.json adds to it). It is compiled for
// each request that needs it, not cached: compiling is a small part of a
// configuration request (docs/BENCHMARKS.md, "The configuration store").
func configRequirement(pol *auth.Policy, c string) *auth.Requirement {
	return pol.Requirement(rpc.Principal{}, c, auth.Declared{Capabilities: []string{c}, Params: []string{ConfigIdentityParam}})
}

// configDenied builds the errno-13 refusal of op on target's store:
//
//	config store of "weather": put requires capabilities [edit_config_store], but capabilities [] were provided; missing [edit_config_store]
//	config store of "weather": put denied: capability edit_config_store is granted only with parameter "identity" matching /platform\..*/, but identity="weather"
//
// alt names an alternative to the requirement in the text (" or [...]").
func configDenied(target, op string, req *auth.Requirement, d auth.Decision, alt string) *wireError {
	caps := req.Capabilities()
	missing := d.Missing()
	var text string
	if len(missing) > 0 {
		miss := make(map[string]bool, len(missing))
		for _, m := range missing {
			miss[m] = true
		}
		held := []string{}
		for _, c := range caps {
			if !miss[c] {
				held = append(held, c)
			}
		}
		text = fmt.Sprintf("config store of %q: %s requires capabilities %s%s, but capabilities %s were provided; missing %s",
			target, op, list(caps), alt, list(held), list(missing))
	} else {
		// The decision's reason reads `method "cap": ...` or `method "cap"
		// is denied: ...`; the pseudo-method is not a method to the reader.
		why := d.Reason()
		if rest, ok := strings.CutPrefix(why, "method "+strconv.Quote(req.Capabilities()[0])); ok {
			why = strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(rest, ":"), " is denied:"), " ")
		}
		text = fmt.Sprintf("config store of %q: %s denied: %s", target, op, why)
	}
	e := errorf(rpc.CodeUnauthorized, text)
	e.data = map[string]any{
		"identity":   target,
		"operation":  op,
		"required":   nonNil(caps),
		"missing":    nonNil(missing),
		"reason":     d.Reason(),
		"generation": d.Generation,
	}
	return e
}
