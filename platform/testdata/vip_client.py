#!/usr/bin/python3
"""A capbus client written from docs/PROTOCOL.md alone (pyzmq + msgpack).

Environment:
  CAPBUS_ADDRESS     platform address, tcp://host:port
  CAPBUS_SERVER_KEY  platform public key (Z85)
  CAPBUS_PUBLIC      this client's public key (Z85)
  CAPBUS_SECRET      this client's secret key (Z85)
  CAPBUS_IDENTITY    identity to claim
  CAPBUS_PEER        agent to call
  CAPBUS_ALLOWED     method of CAPBUS_PEER this client may call
  CAPBUS_DENIED      method of CAPBUS_PEER this client lacks a capability for

Prints one line per step (WELCOME, RESULT, REFUSED, PONG, OK) and exits 0,
or prints FAIL and exits 1.
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
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10000)
    sock.connect(env["CAPBUS_ADDRESS"])
    seq = [0]

    def send(recipient, subsystem, *args, msg_id=None):
        if msg_id is None:
            seq[0] += 1
            msg_id = ("py%d" % seq[0]).encode()
        # [recipient, "VIP1", user, msg-id, subsystem, args...]
        frames = [recipient.encode(), b"VIP1", b"", msg_id, subsystem.encode()]
        frames += [a if isinstance(a, bytes) else a.encode() for a in args]
        sock.send_multipart(frames)
        return msg_id

    def reply_to(msg_id):
        # Skip broadcasts (peerlist add/drop) until the reply with our msg-id.
        while True:
            try:
                frames = sock.recv_multipart()
            except zmq.Again:
                fail("timeout waiting for %r" % msg_id)
            if len(frames) < 5 or frames[1] != b"VIP1":
                fail("bad frames %r" % frames)
            if frames[3] == msg_id:
                return frames

    # hello / welcome
    hello = msgpack.packb({"identity": env["CAPBUS_IDENTITY"], "exports": [], "meta": {"client": "python"}})
    f = reply_to(send("", "hello", hello))
    if f[4] != b"welcome":
        fail("hello refused: %r" % f)
    welcome = msgpack.unpackb(f[5], raw=False)
    if welcome["identity"] != env["CAPBUS_IDENTITY"] or welcome["server_key"] != env["CAPBUS_SERVER_KEY"]:
        fail("unexpected welcome %r" % welcome)
    print("WELCOME %s %s" % (welcome["user_id"], welcome["identity"]), flush=True)

    # ping / pong
    f = reply_to(send("", "ping", b"abc"))
    if f[4] != b"pong" or f[5:] != [b"abc"]:
        fail("bad pong %r" % f)
    print("PONG", flush=True)

    # RPC call: ARGS is [args, kwargs]
    peer = env["CAPBUS_PEER"]
    args = msgpack.packb([[], {}])
    f = reply_to(send(peer, "RPC", b"call", env["CAPBUS_ALLOWED"], args))
    if f[4] != b"RPC" or f[5] != b"result":
        fail("call failed: %r" % f)
    if f[0] != peer.encode():
        fail("reply not stamped with the callee: %r" % f)
    print("RESULT %r" % (msgpack.unpackb(f[7], raw=False),), flush=True)

    # A method this client lacks the capability for: errno 13 from the platform.
    f = reply_to(send(peer, "RPC", b"call", env["CAPBUS_DENIED"], args))
    if f[4] != b"error":
        fail("denied call was not refused: %r" % f)
    errno, text, recipient, subsystem = int(f[5]), f[6].decode(), f[7], f[8]
    data = msgpack.unpackb(f[9], raw=False) if len(f) > 9 and f[9] else {}
    if errno != 13 or recipient != peer.encode() or subsystem != b"RPC":
        fail("unexpected refusal %r" % f)
    if data.get("method") != env["CAPBUS_DENIED"] or not data.get("missing"):
        fail("refusal data %r" % data)
    print("REFUSED %d %s" % (errno, text), flush=True)

    # query whoami
    f = reply_to(send("", "query", b"whoami"))
    me = msgpack.unpackb(f[6], raw=False)
    if me["identity"] != env["CAPBUS_IDENTITY"] or me["key"] != env["CAPBUS_PUBLIC"]:
        fail("whoami %r" % me)
    print("OK", flush=True)
    sock.close()
    ctx.term()


if __name__ == "__main__":
    main()
