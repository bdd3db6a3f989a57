#!/usr/bin/env python3
"""Calls a running auditlog server from Python, as another team's service would.

Usage:
    test_client.py --target 127.0.0.1:PORT                 run the tests
    test_client.py --target 127.0.0.1:PORT --wait-healthy 60 [--pid PID]
        wait until grpc.health.v1 answers SERVING (exit 1 on timeout, or
        once process PID is gone)

The stubs are generated from proto/ at test time with grpc_tools.protoc into
a temporary directory; nothing generated is written into the tree.

Needs the packages in requirements.txt (run.sh installs them in a venv).
"""

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
import unittest
import uuid

import grpc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(REPO, "proto")
TIMEOUT = 10  # seconds per call

TARGET = None  # set from the command line
pb = None  # auditlog.v1.audit_pb2, once generated
pb_grpc = None  # auditlog.v1.audit_pb2_grpc


def generate_stubs(out_dir):
    """Compiles proto/auditlog/v1/audit.proto into out_dir and imports it."""
    global pb, pb_grpc
    import grpc_tools
    from grpc_tools import protoc

    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{wkt}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        "auditlog/v1/audit.proto",
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}: {' '.join(args)}")
    sys.path.insert(0, out_dir)
    from auditlog.v1 import audit_pb2, audit_pb2_grpc

    pb, pb_grpc = audit_pb2, audit_pb2_grpc


def alive(pid):
    """Whether process pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_healthy(target, seconds, pid=None):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + seconds
    last = None
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if pid is not None and not alive(pid):
                print(f"server process {pid} exited before it was healthy", file=sys.stderr)
                return False
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError as e:
                last = f"{e.code().name}: {e.details()}"
            time.sleep(0.1)
    print(f"server at {target} not SERVING after {seconds}s (last: {last})", file=sys.stderr)
    return False


def struct(d):
    from google.protobuf import struct_pb2

    s = struct_pb2.Struct()
    s.update(d)
    return s


def to_dict(s):
    from google.protobuf import json_format

    return json_format.MessageToDict(s)


RUN = uuid.uuid4().hex[:10]
LEAD = f"LEAD-py-{RUN}"
WORKFLOW = f"polyglot_py_{RUN}"
ACTOR = "python-service"

# Nested details: objects in objects, lists (of mixed things), unicode,
# escapes, numbers (integers up to 2^53 exactly, fractions, negatives,
# exponents), booleans, null, empty containers.
DETAILS = {
    "source": "webform",
    "utm": {"campaign": "spring", "nested": {"deeper": {"deepest": [1, 2, {"x": "y"}]}}},
    "tags": ["hot", "b2b", "ünïcödé"],
    "mixed": [1, "two", 3.5, True, None, {"k": []}, [[], [{}]]],
    "name": "Zoë Ångström — 東京 🚀",
    "ключ": "значение",
    "escapes": "quote \" backslash \\ newline \n tab \t control \u0001 slash /",
    "score": 87,
    "ratio": 0.125,
    "negative": -17,
    "tiny": 1e-9,
    "huge": 1.5e300,
    "max_exact": 9007199254740992,
    "zero": 0,
    "ok": True,
    "off": False,
    "nothing": None,
    "empty_obj": {},
    "empty_list": [],
}
ERROR_DETAILS = {
    "error_type": "ValueError",
    "error_message": "bad phone number: '+1 (555) 0100'",
    "traceback": 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError',
}
BATCH = [
    ("lead_qualified", {"score": 92, "reasons": ["budget", "timeline"]}),
    ("crm_create", {"crm": "hubspot", "record": {"id": "c-1", "fields": {"email": "a@b.example"}}}),
    ("email_sent", {"template": "welcome", "to": ["a@b.example"], "attempt": 1}),
]


class AuditLogFromPython(unittest.TestCase):
    """Everything is logged once in setUpClass; each test checks one RPC."""

    @classmethod
    def setUpClass(cls):
        cls.channel = grpc.insecure_channel(TARGET)
        cls.stub = pb_grpc.AuditServiceStub(cls.channel)
        cls.started = dt.datetime.now(dt.timezone.utc)

        # 1. Log, one event at a time.
        cls.inputs = []
        cls.receipts = []
        first = pb.EventInput(
            event_type="lead_ingested",
            actor=ACTOR,
            lead_id=LEAD,
            workflow=WORKFLOW,
            details=struct(DETAILS),
            idempotency_key=f"ingest-{RUN}",
        )
        err = pb.EventInput(
            event_type="error",
            actor=ACTOR,
            lead_id=LEAD,
            workflow=WORKFLOW,
            details=struct(ERROR_DETAILS),
        )
        for ev in (first, err):
            resp = cls.stub.Log(pb.LogRequest(event=ev), timeout=TIMEOUT)
            cls.inputs.append(ev)
            cls.receipts.append(resp.receipt)

        # 2. LogBatch.
        batch = [
            pb.EventInput(event_type=t, actor=ACTOR, lead_id=LEAD, workflow=WORKFLOW, details=struct(d))
            for t, d in BATCH
        ]
        resp = cls.stub.LogBatch(pb.LogBatchRequest(events=batch), timeout=TIMEOUT)
        cls.batch_receipts = list(resp.receipts)
        cls.inputs.extend(batch)
        cls.receipts.extend(resp.receipts)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()

    # -- writes ---------------------------------------------------------------

    def test_log_receipts(self):
        now = dt.datetime.now(dt.timezone.utc)
        for r in self.receipts:
            self.assertGreater(r.seq, 0, f"receipt without seq: {r}")
            self.assertTrue(r.id, f"receipt without id: {r}")
            self.assertRegex(r.signature, r"^[0-9a-f]{64}$", f"signature is not 64 hex: {r}")
            self.assertFalse(r.duplicate, f"fresh event marked duplicate: {r}")
            ts = r.timestamp.ToDatetime(tzinfo=dt.timezone.utc)
            self.assertLess(abs((ts - now).total_seconds()), 300, f"receipt time {ts} far from now {now}")
        seqs = [r.seq for r in self.receipts]
        self.assertEqual(seqs, sorted(seqs), f"receipt seqs not increasing: {seqs}")
        self.assertEqual(len({r.id for r in self.receipts}), len(self.receipts), "receipt ids not unique")

    def test_log_batch_consecutive(self):
        seqs = [r.seq for r in self.batch_receipts]
        self.assertEqual(len(seqs), len(BATCH), f"one receipt per batch event expected, got {seqs}")
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))), f"batch seqs not consecutive: {seqs}")

    def test_idempotency_key_repeat(self):
        resp = self.stub.Log(pb.LogRequest(event=self.inputs[0]), timeout=TIMEOUT)
        r = resp.receipt
        self.assertTrue(r.duplicate, f"repeated idempotency_key not marked duplicate: {r}")
        self.assertEqual((r.seq, r.id, r.signature), (self.receipts[0].seq, self.receipts[0].id, self.receipts[0].signature),
                         "repeated idempotency_key returned a different receipt")

    def test_details_as_json_text(self):
        # What a Python service has at hand: a dict, sent as json.dumps text
        # (no Struct built), read back as the same details a Struct gives.
        lead = f"LEAD-py-json-{RUN}"
        ev = pb.EventInput(event_type="crm_update", actor=ACTOR, lead_id=lead, details_json=json.dumps(DETAILS))
        receipt = self.stub.Log(pb.LogRequest(event=ev), timeout=TIMEOUT).receipt
        resp = self.stub.Query(
            pb.QueryRequest(filter=pb.EventFilter(lead_id=lead), limit=10, min_seq=receipt.seq), timeout=TIMEOUT
        )
        self.assertEqual([e.seq for e in resp.events], [receipt.seq])
        self.assertEqual(to_dict(resp.events[0].details), to_dict(struct(DETAILS)))
        # Read back as JSON text too: one json.loads, no Struct to convert.
        resp = self.stub.Query(
            pb.QueryRequest(filter=pb.EventFilter(lead_id=lead), limit=10, details_as_json=True), timeout=TIMEOUT
        )
        self.assertFalse(resp.events[0].HasField("details"), "details_as_json answered a Struct too")
        self.assertEqual(json.loads(resp.events[0].details_json), DETAILS)
        # Not both at once: INVALID_ARGUMENT naming details_json.
        both = pb.EventInput(event_type="crm_update", details=struct({"a": 1}), details_json='{"a": 1}')
        with self.assertRaises(grpc.RpcError) as caught:
            self.stub.Log(pb.LogRequest(event=both), timeout=TIMEOUT)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("details_json", caught.exception.details())

    # -- reads ----------------------------------------------------------------

    def assert_event_matches(self, ev, inp, receipt):
        where = f"event seq {ev.seq} ({inp.event_type})"
        self.assertEqual(ev.seq, receipt.seq, f"{where}: seq differs from receipt")
        self.assertEqual(ev.id, receipt.id, f"{where}: id differs from receipt")
        self.assertEqual(ev.signature, receipt.signature, f"{where}: signature differs from receipt")
        self.assertEqual(ev.timestamp, receipt.timestamp, f"{where}: timestamp differs from receipt")
        self.assertEqual(ev.event_type, inp.event_type, f"{where}: event_type")
        self.assertEqual(ev.actor, inp.actor, f"{where}: actor")
        self.assertEqual(ev.lead_id, inp.lead_id, f"{where}: lead_id")
        self.assertEqual(ev.workflow, inp.workflow, f"{where}: workflow")
        self.assertEqual(ev.idempotency_key, inp.idempotency_key, f"{where}: idempotency_key")
        self.assertTrue(ev.key_id, f"{where}: no key_id")
        self.assertRegex(ev.prev, r"^[0-9a-f]{64}$", f"{where}: prev is not 64 hex")
        got, want = to_dict(ev.details), to_dict(inp.details)
        self.assertEqual(got, want, f"{where}: details did not round-trip:\n got {json.dumps(got, ensure_ascii=False)}\nwant {json.dumps(want, ensure_ascii=False)}")

    def test_query_by_lead(self):
        resp = self.stub.Query(
            pb.QueryRequest(filter=pb.EventFilter(lead_id=LEAD), oldest_first=True), timeout=TIMEOUT
        )
        self.assertEqual([e.seq for e in resp.events], [r.seq for r in self.receipts],
                         "query by lead (oldest first) did not return exactly this lead's events")
        self.assertEqual(resp.next_page_token, "", "single page expected")
        for ev, inp, r in zip(resp.events, self.inputs, self.receipts):
            self.assert_event_matches(ev, inp, r)
        # Exactly as given, also the deep details (checked above); spot-check
        # a few values through the Struct API too.
        d = resp.events[0].details
        self.assertEqual(d["name"], DETAILS["name"])
        self.assertEqual(d["utm"]["nested"]["deeper"]["deepest"][2]["x"], "y")
        self.assertEqual(d["max_exact"], float(2**53))

    def test_query_newest_first_and_pages(self):
        seqs = []
        token = ""
        pages = 0
        while True:
            resp = self.stub.Query(
                pb.QueryRequest(filter=pb.EventFilter(lead_id=LEAD), limit=2, page_token=token), timeout=TIMEOUT
            )
            pages += 1
            self.assertLessEqual(len(resp.events), 2, "page larger than limit")
            seqs.extend(e.seq for e in resp.events)
            token = resp.next_page_token
            if not token:
                break
            self.assertLess(pages, 10, "pagination does not end")
        want = sorted((r.seq for r in self.receipts), reverse=True)
        self.assertEqual(seqs, want, "paged newest-first query differs")
        self.assertEqual(pages, 3, f"5 events in pages of 2 should be 3 pages, got {pages}")

    def test_query_by_type(self):
        resp = self.stub.Query(
            pb.QueryRequest(filter=pb.EventFilter(event_types=["crm_create", "email_sent"]), limit=1000),
            timeout=TIMEOUT,
        )
        self.assertTrue(resp.events, "query by type returned nothing")
        for ev in resp.events:
            self.assertIn(ev.event_type, ("crm_create", "email_sent"), f"query by type returned {ev.event_type}")
        ours = sorted((e for e in resp.events if e.lead_id == LEAD), key=lambda e: e.seq)
        self.assertEqual([e.seq for e in ours], [r.seq for r in self.batch_receipts[1:]],
                         "query by type misses this run's crm_create/email_sent")
        for ev, inp, r in zip(ours, self.inputs[3:], self.batch_receipts[1:]):
            self.assert_event_matches(ev, inp, r)
        # type + workflow together
        resp = self.stub.Query(
            pb.QueryRequest(filter=pb.EventFilter(event_types=["error"], workflow=WORKFLOW)), timeout=TIMEOUT
        )
        self.assertEqual([e.seq for e in resp.events], [self.receipts[1].seq], "query by type and workflow")
        self.assertEqual(to_dict(resp.events[0].details), ERROR_DETAILS)

    def test_stream_events_history(self):
        events = list(self.stub.StreamEvents(pb.StreamEventsRequest(from_seq=0, follow=False), timeout=TIMEOUT))
        seqs = [e.event.seq for e in events]
        self.assertTrue(seqs, "stream returned nothing")
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), f"stream seqs not consecutive from 1: {seqs}")
        self.assertEqual(events[0].event.prev, "0" * 64, "seq 1 must chain to 64 zeros")
        for a, b in zip(events, events[1:]):
            self.assertEqual(b.event.prev, a.event.signature, f"chain broken between seq {a.event.seq} and {b.event.seq}")
        by_seq = {e.event.seq: e.event for e in events}
        for inp, r in zip(self.inputs, self.receipts):
            self.assertIn(r.seq, by_seq, f"seq {r.seq} missing from stream")
            self.assert_event_matches(by_seq[r.seq], inp, r)
        # from_seq in the middle, with a filter
        mid = self.receipts[2].seq
        events = list(self.stub.StreamEvents(
            pb.StreamEventsRequest(from_seq=mid, filter=pb.EventFilter(lead_id=LEAD)), timeout=TIMEOUT))
        self.assertEqual([e.event.seq for e in events], [r.seq for r in self.receipts[2:]],
                         "stream from the middle with a lead filter")

    def test_verify_integrity(self):
        resp = self.stub.VerifyIntegrity(
            pb.VerifyIntegrityRequest(
                checkpoints=[pb.Checkpoint(seq=r.seq, signature=r.signature) for r in self.receipts]
            ),
            timeout=TIMEOUT,
        )
        self.assertTrue(resp.ok, f"VerifyIntegrity not ok: {list(resp.problems)}")
        self.assertEqual(list(resp.problems), [], "problems reported")
        self.assertGreaterEqual(resp.head_seq, self.receipts[-1].seq, "head_seq behind our last receipt")
        self.assertGreaterEqual(resp.events_checked, resp.head_seq, "fewer events checked than the head")
        # A wrong checkpoint is reported as data, not as an RPC error.
        bad = self.stub.VerifyIntegrity(
            pb.VerifyIntegrityRequest(checkpoints=[pb.Checkpoint(seq=self.receipts[0].seq, signature="0" * 64)]),
            timeout=TIMEOUT,
        )
        self.assertFalse(bad.ok, "a wrong checkpoint should make verification fail")
        self.assertIn(pb.PROBLEM_KIND_CHECKPOINT_MISMATCH, [p.kind for p in bad.problems])

    def test_get_stats(self):
        resp = self.stub.GetStats(pb.GetStatsRequest(workflow=WORKFLOW), timeout=TIMEOUT)
        self.assertEqual(resp.total_events, len(self.receipts), f"workflow total: {resp}")
        want = {"lead_ingested": 1, "error": 1, "lead_qualified": 1, "crm_create": 1, "email_sent": 1}
        self.assertEqual(dict(resp.by_type), want, "by_type for the workflow")
        self.assertEqual(dict(resp.by_workflow), {WORKFLOW: len(self.receipts)}, "by_workflow")
        self.assertEqual(resp.leads_processed, 1, "leads_processed for the workflow")
        self.assertEqual(resp.error_count, 1, "error_count for the workflow")
        self.assertEqual(resp.first_event, self.receipts[0].timestamp, "first_event")
        self.assertEqual(resp.last_event, self.receipts[-1].timestamp, "last_event")
        whole = self.stub.GetStats(pb.GetStatsRequest(), timeout=TIMEOUT)
        self.assertGreaterEqual(whole.total_events, len(self.receipts), "whole-log total")
        self.assertGreaterEqual(whole.head_seq, self.receipts[-1].seq, "head_seq")

    def test_track_performance_and_percentiles(self):
        durations = [12.5, 3.0, 7.25, 40.0, 9.0]
        for ms in durations:
            resp = self.stub.TrackPerformance(
                pb.TrackPerformanceRequest(operation="py.enrich_lead", duration_ms=ms, workflow="perf-py"),
                timeout=TIMEOUT)
            self.assertGreater(resp.receipt.seq, 0, f"no receipt: {resp}")
        stats = self.stub.GetPerformanceStats(pb.GetPerformanceStatsRequest(operation="py.enrich_lead"), timeout=TIMEOUT)
        tracked = [o for o in stats.operations if o.source == pb.PERFORMANCE_SOURCE_TRACKED]
        self.assertEqual(len(tracked), 1, f"one tracked operation expected: {stats}")
        o = tracked[0]
        # Nearest rank over [3, 7.25, 9, 12.5, 40]: p50 is the 3rd, p95 and p99 the 5th.
        self.assertEqual((o.count, o.min_ms, o.max_ms, o.p50_ms, o.p95_ms, o.p99_ms),
                         (5, 3.0, 40.0, 9.0, 40.0, 40.0), f"figures: {o}")
        self.assertAlmostEqual(o.avg_ms, sum(durations) / 5)
        with self.assertRaises(grpc.RpcError) as ctx:
            self.stub.TrackPerformance(pb.TrackPerformanceRequest(operation="bad name", duration_ms=1), timeout=TIMEOUT)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_export_subject(self):
        items = list(self.stub.ExportSubject(pb.ExportSubjectRequest(identifier=LEAD), timeout=TIMEOUT))
        self.assertGreaterEqual(len(items), len(self.receipts), "every event of the lead")
        for item in items:
            self.assertEqual(item.event.lead_id, LEAD, f"an event of another subject: {item}")
            self.assertIn("lead_id", list(item.matched_fields))
        seqs = [i.event.seq for i in items]
        self.assertEqual(seqs, sorted(seqs), "in seq order")

    # -- errors ---------------------------------------------------------------

    def test_invalid_event_type_field_violation(self):
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status

        with self.assertRaises(grpc.RpcError) as ctx:
            self.stub.Log(pb.LogRequest(event=pb.EventInput(event_type="Bad Type", lead_id=LEAD)), timeout=TIMEOUT)
        call = ctx.exception
        self.assertEqual(call.code(), grpc.StatusCode.INVALID_ARGUMENT, f"code: {call.code()} {call.details()}")
        status = rpc_status.from_call(call)
        self.assertIsNotNone(status, "no grpc-status-details-bin trailer (google.rpc.Status) on INVALID_ARGUMENT")
        fields = []
        for any_msg in status.details:
            if any_msg.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                br = error_details_pb2.BadRequest()
                any_msg.Unpack(br)
                fields.extend((v.field, v.description) for v in br.field_violations)
        self.assertIn("event.event_type", [f for f, _ in fields],
                      f"BadRequest field violations {fields} do not name event.event_type")
        self.assertTrue(all(d for _, d in fields), f"field violation without a description: {fields}")

    def test_invalid_batch_names_index(self):
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status

        events = [pb.EventInput(event_type="crm_update"), pb.EventInput(event_type="crm_update"),
                  pb.EventInput(event_type="")]
        with self.assertRaises(grpc.RpcError) as ctx:
            self.stub.LogBatch(pb.LogBatchRequest(events=events), timeout=TIMEOUT)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        status = rpc_status.from_call(ctx.exception)
        self.assertIsNotNone(status, "no status details on an invalid batch")
        br = error_details_pb2.BadRequest()
        self.assertTrue(any(d.Unpack(br) for d in status.details), "no BadRequest detail")
        self.assertIn("events[2].event_type", [v.field for v in br.field_violations])

    # -- standard services ----------------------------------------------------

    def test_health_serving(self):
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        for service in ("", "auditlog.v1.AuditService"):
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
            self.assertEqual(resp.status, health_pb2.HealthCheckResponse.SERVING,
                             f"health of {service!r}: {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}")
        with self.assertRaises(grpc.RpcError) as ctx:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=TIMEOUT)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.NOT_FOUND, "unknown service in health check")

    def test_reflection_v1alpha(self):
        from google.protobuf.descriptor_pool import DescriptorPool
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

        db = ProtoReflectionDescriptorDatabase(self.channel)
        services = list(db.get_services())
        for name in ("auditlog.v1.AuditService", "grpc.health.v1.Health"):
            self.assertIn(name, services, f"reflection lists {services}")
        pool = DescriptorPool(db)
        svc = pool.FindServiceByName("auditlog.v1.AuditService")
        methods = sorted(m.name for m in svc.methods)
        self.assertEqual(methods, sorted(["Log", "LogBatch", "Query", "StreamEvents", "VerifyIntegrity", "GetStats",
                                          "TrackPerformance", "GetPerformanceStats", "ExportSubject",
                                          "GetCheckpoint", "GetInclusionProof", "GetConsistencyProof"]),
                         "AuditService methods through reflection")
        self.assertTrue(svc.methods_by_name["StreamEvents"].server_streaming, "StreamEvents is server streaming")
        log_in = svc.methods_by_name["Log"].input_type
        self.assertEqual(log_in.full_name, "auditlog.v1.LogRequest")
        details = log_in.fields_by_name["event"].message_type.fields_by_name["details"]
        self.assertEqual(details.message_type.full_name, "google.protobuf.Struct",
                         "the well-known types resolve through reflection too")

    def test_reflection_v1(self):
        # grpcio-reflection ships only the v1alpha client; v1 has the same
        # messages on the wire, so call the v1 method with them.
        from grpc_reflection.v1alpha import reflection_pb2 as refl

        call = self.channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=refl.ServerReflectionRequest.SerializeToString,
            response_deserializer=refl.ServerReflectionResponse.FromString,
        )
        responses = list(call(iter([refl.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT))
        self.assertEqual(len(responses), 1)
        names = [s.name for s in responses[0].list_services_response.service]
        self.assertIn("auditlog.v1.AuditService", names, f"v1 reflection lists {names}")


def main():
    global TARGET
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default=os.environ.get("AUDITLOG_TARGET", "127.0.0.1:50051"))
    p.add_argument("--wait-healthy", type=float, metavar="SECONDS",
                   help="only wait until the server's health check answers SERVING")
    p.add_argument("--pid", type=int, help="with --wait-healthy: give up as soon as this process is gone")
    args, rest = p.parse_known_args()
    TARGET = args.target
    if args.wait_healthy is not None:
        sys.exit(0 if wait_healthy(TARGET, args.wait_healthy, args.pid) else 1)
    with tempfile.TemporaryDirectory(prefix="auditlog-pystubs-") as out:
        generate_stubs(out)
        prog = unittest.main(argv=[sys.argv[0], "-v", *rest], exit=False)
    sys.exit(0 if prog.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
