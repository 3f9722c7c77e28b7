"""A libzmq DEALER whose key the capbus server refuses: its socket monitor
must report HANDSHAKE_FAILED_AUTH with the status code 400."""
import zmq
from zmq.utils.monitor import recv_monitor_message

from common import curve_dealer, env, fail, say

ctx = zmq.Context()
s = curve_dealer(ctx)
mon = s.get_monitor_socket()
s.connect(env("ENDPOINT"))

poller = zmq.Poller()
poller.register(mon, zmq.POLLIN)
while True:
    if not poller.poll(10000):
        fail("no handshake event within 10 s")
    evt = recv_monitor_message(mon)
    if evt["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        say("HANDSHAKE_FAILED_AUTH %d" % evt["value"])
        break
    if evt["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
        fail("handshake succeeded for a refused key")
    if evt["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        fail("protocol error %d instead of an auth failure" % evt["value"])

s.disable_monitor()
mon.close()
s.close()
ctx.term()
