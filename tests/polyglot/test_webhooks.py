#!/usr/bin/env python3
"""Receives the server's outgoing webhooks in Python and verifies every one
with the `standardwebhooks` package, as a receiving team would.

Usage:
    test_webhooks.py --target 127.0.0.1:PORT --hook-port PORT --secret whsec_...

The server must be configured with a webhook to http://127.0.0.1:HOOK_PORT/hook
with that secret and `start = "beginning"` (run.sh does this). The receiver
starts after the server, so the first deliveries fail and are retried: that
is part of what is tested. It then logs a few events of its own and waits
until every event up to the head has arrived: signed, in seq order, chained.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_client  # noqa: E402  (stub generation is shared)

received = []  # (seq, prev, signature) in arrival order
rejected = []  # why a delivery failed verification
lock = threading.Lock()


def receiver(port, secret):
    wh = Webhook(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                payload = wh.verify(body, headers)
            except Exception as e:  # the library raises its own error types
                with lock:
                    rejected.append(f"{type(e).__name__}: {e}")
                self.send_response(400)
                self.end_headers()
                return
            data = payload["data"]
            with lock:
                received.append((data["seq"], data["prev"], data["signature"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True)
    p.add_argument("--hook-port", type=int, required=True)
    p.add_argument("--secret", required=True)
    args = p.parse_args()

    server = receiver(args.hook_port, args.secret)
    import grpc

    with tempfile.TemporaryDirectory(prefix="auditlog-pystubs-") as out:
        test_client.generate_stubs(out)
        pb, pb_grpc = test_client.pb, test_client.pb_grpc
        stub = pb_grpc.AuditServiceStub(grpc.insecure_channel(args.target))
        for i in range(3):
            stub.Log(pb.LogRequest(event=pb.EventInput(event_type="webhook_probe", lead_id=f"W-{i}")), timeout=10)
        head = stub.GetStats(pb.GetStatsRequest(), timeout=10).head_seq

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            seen = {seq for seq, _, _ in received}
        if seen >= set(range(1, head + 1)):
            break
        time.sleep(0.1)
    server.shutdown()

    failures = []
    with lock:
        if rejected:
            failures.append(f"{len(rejected)} deliveries failed standardwebhooks verification: {rejected[:3]}")
        seen = {seq for seq, _, _ in received}
        missing = sorted(set(range(1, head + 1)) - seen)
        if missing:
            failures.append(f"never delivered: seqs {missing[:10]} (head {head})")
        # At least once: repeats are allowed, but first arrivals are in order
        # and chain.
        firsts, signatures = [], {}
        for seq, prev, sig in received:
            if seq not in signatures:
                firsts.append(seq)
                signatures[seq] = (prev, sig)
        if firsts != sorted(firsts):
            failures.append(f"first arrivals out of seq order: {firsts[:20]}")
        for seq in range(2, head + 1):
            if seq in signatures and seq - 1 in signatures and signatures[seq][0] != signatures[seq - 1][1]:
                failures.append(f"seq {seq} does not chain to seq {seq - 1}")
                break
    if failures:
        for f in failures:
            print(f"FAIL: {f}", file=sys.stderr)
        sys.exit(1)
    print(f"webhooks: {head} events received in order, every signature verified by standardwebhooks")


if __name__ == "__main__":
    main()
