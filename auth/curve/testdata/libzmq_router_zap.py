"""A libzmq ROUTER using CURVE with ZAP (ThreadAuthenticator and a custom
credentials provider). It admits CURVE_ALLOWED_CLIENT with the user id
CURVE_USER_ID and answers every message with
[b"user-id", <User-Id property of the message>] + message, until it gets
[b"quit"]."""
import zmq
import zmq.auth.thread
from zmq.utils import z85

from common import env, fail, say

ALLOWED = env("CURVE_ALLOWED_CLIENT").encode()
USER_ID = env("CURVE_USER_ID")
DOMAIN = "capbus"


class Provider:
    def callback(self, domain, key):
        return domain == DOMAIN and key == ALLOWED


def curve_user_id(client_public_key):
    """The User-Id our ZAP handler chooses for a client key."""
    if z85.encode(client_public_key) == ALLOWED:
        return USER_ID
    return "nobody"


ctx = zmq.Context()
auth = zmq.auth.thread.ThreadAuthenticator(ctx)
auth.start()
auth.thread.authenticator.curve_user_id = curve_user_id
auth.configure_curve_callback(domain=DOMAIN, credentials_provider=Provider())

r = ctx.socket(zmq.ROUTER)
r.curve_server = True
r.curve_publickey = env("CURVE_SERVER_PUBLIC").encode()
r.curve_secretkey = env("CURVE_SERVER_SECRET").encode()
r.zap_domain = DOMAIN.encode()
r.linger = 1000
port = r.bind_to_random_port("tcp://127.0.0.1")
say("LISTENING tcp://127.0.0.1:%d" % port)

while True:
    if not r.poll(20000):
        fail("no message within 20 s")
    frames = r.recv_multipart(copy=False)
    rid, body = frames[0].bytes, [f.bytes for f in frames[1:]]
    if body == [b"quit"]:
        r.send_multipart([rid, b"bye"])
        break
    user = frames[-1].get("User-Id")
    say("FROM %s" % user)
    r.send_multipart([rid, b"user-id", user.encode()] + body)

r.close()
auth.stop()
ctx.term()
