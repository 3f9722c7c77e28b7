"""A libzmq DEALER with ZMTP heartbeats (100 ms interval, 300 ms timeout)
stays connected to a capbus ROUTER over many intervals and still exchanges
messages afterwards."""
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from common import check, curve_dealer, env, fail, say

ctx = zmq.Context()
s = curve_dealer(ctx, heartbeat_ivl=100, heartbeat_timeout=300, heartbeat_ttl=1000)
mon = s.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
s.connect(env("ENDPOINT"))

s.send_multipart([b"before"])
check(s.recv_multipart() == [b"before"], "echo before the heartbeats")
say("CONNECTED")

# Watch the connection for 15 heartbeat intervals: libzmq disconnects if no
# PONG (or other traffic) arrives within the timeout after a PING.
poller = zmq.Poller()
poller.register(mon, zmq.POLLIN)
deadline = time.monotonic() + 1.5
while True:
    left = deadline - time.monotonic()
    if left <= 0:
        break
    if poller.poll(left * 1000):
        evt = recv_monitor_message(mon)
        if evt["event"] == zmq.EVENT_DISCONNECTED:
            fail("disconnected during heartbeats")

s.send_multipart([b"after", b"heartbeats"])
check(s.recv_multipart() == [b"after", b"heartbeats"], "echo after the heartbeats")
say("STILL CONNECTED")

s.disable_monitor()
mon.close()
s.close()
ctx.term()
