#!/usr/bin/python3
"""A capbus agent in Python (pyzmq + msgpack), for the Go SDK's interop test.

It claims CAPBUS_IDENTITY exporting "echo", calls weather.temperature by
position and by keyword (printing each RESULT), prints READY, then serves
"echo" (text -> text + " from python", caller user id appended) until it is
called with "quit". Exits 0, or prints FAIL and exits 1.
"""
import os
import sys

import msgpack
import zmq


def fail(msg):
    print("FAIL " + msg, flush=True)
    sys.exit(1)


def main():
    env = os.environ
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.curve_serverkey = env["CAPBUS_SERVER_KEY"].encode()
    sock.curve_publickey = env["CAPBUS_PUBLIC"].encode()
    sock.curve_secretkey = env["CAPBUS_SECRET"].encode()
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.RCVTIMEO, 10000)
    sock.connect(env["CAPBUS_ADDRESS"])
    pack = lambda v: msgpack.packb(v, use_bin_type=True)
    unpack = lambda b: msgpack.unpackb(b, raw=False)

    def recv():
        try:
            frames = sock.recv_multipart()
        except zmq.Again:
            fail("timeout")
        if len(frames) < 5 or frames[1] != b"VIP1":
            fail("bad frames %r" % frames)
        return frames

    def request(recipient, msg_id, subsystem, *args):
        sock.send_multipart([recipient, b"VIP1", b"", msg_id, subsystem] + list(args))
        while True:
            f = recv()
            if f[3] == msg_id:
                return f

    hello = {"identity": env["CAPBUS_IDENTITY"],
             "exports": [{"name": "echo", "capabilities": [], "roles": [], "params": ["text"]},
                         {"name": "quit"}]}
    f = request(b"", b"h1", b"hello", pack(hello))
    if f[4] != b"welcome":
        fail("hello: %r" % f)
    for i, args in enumerate([[["Paris"], {}], [[], {"name": "Paris"}]]):
        f = request(b"weather", b"c%d" % i, b"RPC", b"call", b"temperature", pack(args))
        if f[4] != b"RPC" or f[5] != b"result":
            fail("call: %r" % f)
        print("RESULT %r" % unpack(f[7]), flush=True)
    print("READY", flush=True)

    while True:
        f = recv()
        sender, user, msg_id, subsystem = f[0], f[2], f[3], f[4]
        if subsystem != b"RPC" or f[5] != b"call":
            continue
        method = f[6].decode()
        args, kwargs = unpack(f[7]) if len(f) > 7 else ([], {})
        if method == "echo":
            text = args[0] if args else kwargs["text"]
            out = ["result", pack("%s from python (%s)" % (text, user.decode()))]
        elif method == "quit":
            out = ["result", pack("bye")]
        else:
            out = ["error", pack({"code": 2, "message": "no method " + method})]
        sock.send_multipart([sender, b"VIP1", b"", msg_id, b"RPC", out[0].encode(), f[6], out[1]])
        if method == "quit":
            sock.close()
            return


main()
