"""A libzmq DEALER using CURVE against a capbus echo ROUTER: multipart
messages both ways, a 1 MiB frame, 1000 messages in order."""
import os

import zmq

from common import check, curve_dealer, env, say

ctx = zmq.Context()
s = curve_dealer(ctx, routing_id=b"py-dealer")
s.connect(env("ENDPOINT"))

s.send_multipart([b"hello", b"", b"world"])
check(s.recv_multipart() == [b"hello", b"", b"world"], "multipart echo")
say("MULTIPART OK")

big = os.urandom(1 << 20)
s.send_multipart([b"big", big])
check(s.recv_multipart() == [b"big", big], "1 MiB echo")
say("BIG OK")

for i in range(1000):
    s.send_multipart([b"seq", b"%d" % i])
for i in range(1000):
    m = s.recv_multipart()
    check(m == [b"seq", b"%d" % i], "message %d out of order: %r" % (i, m[:2]))
say("SEQUENCE OK")

s.close()
ctx.term()
