"""Shared helpers of the libzmq interop peers (run by the Go tests)."""
import os
import sys

import zmq


def env(name):
    v = os.environ.get(name)
    if not v:
        fail("missing environment variable %s" % name)
    return v


def fail(what):
    print("FAIL " + what, flush=True)
    sys.exit(1)


def say(line):
    print(line, flush=True)


def check(cond, what):
    if not cond:
        fail(what)


def curve_dealer(ctx, **opts):
    """A DEALER using CURVE with the keys from the environment."""
    s = ctx.socket(zmq.DEALER)
    s.curve_serverkey = env("CURVE_SERVER_PUBLIC").encode()
    s.curve_publickey = env("CURVE_CLIENT_PUBLIC").encode()
    s.curve_secretkey = env("CURVE_CLIENT_SECRET").encode()
    s.linger = 0
    s.rcvtimeo = 10000
    s.sndtimeo = 10000
    for k, v in opts.items():
        setattr(s, k, v)
    return s
