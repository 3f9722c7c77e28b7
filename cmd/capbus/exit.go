package main

import (
	"context"
	"errors"

	"github.com/capbus/capbus/auth/curve"
	"github.com/capbus/capbus/rpc"
)

// Exit codes of capbus. Scripts can tell why a command failed.
const (
	exitOK          = 0
	exitError       = 1 // anything else: bad file, I/O, internal
	exitUsage       = 2 // bad flags or arguments
	exitRefused     = 3 // the platform or policy refused (unauthorized, unknown key, identity refused)
	exitNotFound    = 4 // no such method, peer, user or entry
	exitUnreachable = 5 // the platform could not be reached or the connection was lost
	exitTimeout     = 6 // the deadline passed
)

// usageError marks errors in how the command was called.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// exitError carries a chosen exit code with its error.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: code, err: err}
}

// exitCode maps an error to the exit code that describes it.
func exitCode(err error) int {
	var ce *codedError
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		return ce.code
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, rpc.ErrUnauthorized), errors.Is(err, rpc.ErrPermission), errors.Is(err, curve.ErrRefused):
		return exitRefused
	case errors.Is(err, rpc.ErrNotFound), errors.Is(err, rpc.ErrNoRoute):
		return exitNotFound
	case errors.Is(err, rpc.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return exitTimeout
	case errors.Is(err, rpc.ErrUnavailable):
		return exitUnreachable
	}
	return exitError
}
