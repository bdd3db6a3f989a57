// Calls a running auditlog server from Node, as another team's service would.
//
//   AUDITLOG_TARGET=127.0.0.1:PORT node tests/polyglot/test_client.mjs
//
// The packages come from package.json; run.sh installs them outside the tree
// and points POLYGLOT_NODE_DIR at that directory (default: this directory).
// The proto is loaded at run time with @grpc/proto-loader: nothing generated.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const require = createRequire(path.join(process.env.POLYGLOT_NODE_DIR || here, 'package.json'));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const TARGET = process.env.AUDITLOG_TARGET || '127.0.0.1:50051';
const DEADLINE_MS = 10_000;

// --- google.protobuf.Struct <-> plain JSON -------------------------------------
// proto-loader keeps Struct as a message. Its bundled well-known types come
// from protobufjs with camelCase field names, so a Value is `{stringValue: ..}`
// even with keepCase (a snake_case key is silently dropped: the server would
// store null).

function toValue(v) {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  switch (typeof v) {
    case 'number': return { numberValue: v };
    case 'string': return { stringValue: v };
    case 'boolean': return { boolValue: v };
    case 'object': return { structValue: toStruct(v) };
    default: throw new TypeError(`not JSON: ${typeof v}`);
  }
}
function toStruct(obj) {
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, toValue(v)])) };
}
function fromValue(v) {
  switch (v.kind) {
    case 'nullValue': return null;
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'structValue': return fromStruct(v.structValue);
    case 'listValue': return (v.listValue.values || []).map(fromValue);
    default: throw new TypeError(`unknown Value kind ${v.kind}`);
  }
}
function fromStruct(s) {
  return Object.fromEntries(Object.entries((s && s.fields) || {}).map(([k, v]) => [k, fromValue(v)]));
}

// google.rpc.Status and BadRequest, to read the grpc-status-details-bin trailer.
const rpcTypes = protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message BadRequest {
    message FieldViolation { string field = 1; string description = 2; }
    repeated FieldViolation field_violations = 1;
  }
`, { keepCase: true }).root;
const RpcStatus = rpcTypes.lookupType('google.rpc.Status');
const BadRequest = rpcTypes.lookupType('google.rpc.BadRequest');

function fieldViolations(err) {
  const [bin] = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!bin) return null;
  const status = RpcStatus.decode(bin);
  return status.details
    .filter((d) => d.type_url === 'type.googleapis.com/google.rpc.BadRequest')
    .flatMap((d) => BadRequest.decode(d.value).field_violations);
}

// --- the client ---------------------------------------------------------------

const definition = protoLoader.loadSync('auditlog/v1/audit.proto', {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  // google/protobuf/{struct,timestamp}.proto come bundled with proto-loader.
  includeDirs: [path.join(repo, 'proto')],
});
const { AuditService } = grpc.loadPackageDefinition(definition).auditlog.v1;

let client;
const call = (method, request) =>
  new Promise((resolve, reject) =>
    client[method](request, { deadline: Date.now() + DEADLINE_MS }, (err, resp) => (err ? reject(err) : resolve(resp))));

before(async () => {
  client = new AuditService(TARGET, grpc.credentials.createInsecure());
  await new Promise((resolve, reject) =>
    client.waitForReady(Date.now() + DEADLINE_MS, (err) => (err ? reject(err) : resolve())));
});
after(() => client && client.close());

const RUN = randomUUID().slice(0, 8);
const LEAD = `LEAD-node-${RUN}`;
const WORKFLOW = `polyglot_node_${RUN}`;
const DETAILS = {
  source: 'api',
  contact: { name: 'Zoë 東京 🚀', emails: ['a@b.example', 'c@d.example'], address: { city: 'Köln', zip: '50667' } },
  score: 73.5,
  attempts: 3,
  negative: -2,
  verified: false,
  referrer: null,
  tags: [],
  nested_lists: [[1, 2], [{ deep: { deeper: true } }]],
};

test('Log an event with details, then Query it back by lead', async () => {
  const { receipt } = await call('Log', {
    event: { event_type: 'lead_ingested', actor: 'node-service', lead_id: LEAD, workflow: WORKFLOW, details: toStruct(DETAILS) },
  });
  assert.match(receipt.seq, /^[1-9][0-9]*$/, `seq is a decimal string (longs: String): ${receipt.seq}`);
  assert.match(receipt.signature, /^[0-9a-f]{64}$/, 'signature is 64 hex');
  assert.equal(receipt.duplicate, false);
  const when = Number(receipt.timestamp.seconds) * 1000;
  assert.ok(Math.abs(when - Date.now()) < 300_000, `receipt timestamp ${new Date(when).toISOString()} far from now`);

  const { events, next_page_token } = await call('Query', { filter: { lead_id: LEAD } });
  assert.equal(events.length, 1, `one event for ${LEAD}, got ${events.length}`);
  assert.equal(next_page_token, '');
  const [ev] = events;
  assert.equal(ev.seq, receipt.seq, 'seq');
  assert.equal(ev.id, receipt.id, 'id');
  assert.equal(ev.signature, receipt.signature, 'signature');
  assert.deepEqual(ev.timestamp, receipt.timestamp, 'timestamp');
  assert.equal(ev.event_type, 'lead_ingested');
  assert.equal(ev.actor, 'node-service');
  assert.equal(ev.lead_id, LEAD);
  assert.equal(ev.workflow, WORKFLOW);
  assert.equal(ev.idempotency_key, '');
  assert.match(ev.prev, /^[0-9a-f]{64}$/, 'prev is 64 hex');
  assert.deepEqual(fromStruct(ev.details), DETAILS, 'details round-trip');
});

test('details sent as JSON text (details_json) come back as the same details', async () => {
  // No Struct to build: the object's JSON.stringify text.
  const lead = `LEAD-node-json-${RUN}`;
  const { receipt } = await call('Log', {
    event: { event_type: 'crm_update', lead_id: lead, details_json: JSON.stringify(DETAILS) },
  });
  const { events } = await call('Query', { filter: { lead_id: lead } });
  assert.deepEqual(events.map((e) => e.seq), [receipt.seq]);
  assert.deepEqual(fromStruct(events[0].details), DETAILS, 'details round-trip');
  // Read back as JSON text too: one JSON.parse, no Struct to convert.
  const asJson = await call('Query', { filter: { lead_id: lead }, details_as_json: true });
  assert.equal(asJson.events[0].details, null, 'details_as_json answered a Struct too');
  assert.deepEqual(JSON.parse(asJson.events[0].details_json), DETAILS, 'details_json round-trip');
});

test('LogBatch, then StreamEvents without follow ends at the head', async () => {
  const { receipts } = await call('LogBatch', {
    events: ['lead_qualified', 'lead_routed'].map((event_type) => ({ event_type, lead_id: LEAD, workflow: WORKFLOW })),
  });
  assert.equal(receipts.length, 2);
  assert.equal(BigInt(receipts[1].seq), BigInt(receipts[0].seq) + 1n, 'batch seqs are consecutive');

  const seqs = await new Promise((resolve, reject) => {
    const got = [];
    const stream = client.StreamEvents({ filter: { lead_id: LEAD }, follow: false }, { deadline: Date.now() + DEADLINE_MS });
    stream.on('data', (msg) => got.push(msg.event.seq));
    stream.on('error', reject);
    stream.on('end', () => resolve(got));
  });
  assert.equal(seqs.length, 3, `3 events for ${LEAD}: ${seqs}`);
  assert.deepEqual(seqs.slice(1), receipts.map((r) => r.seq));
});

test('an invalid event_type is INVALID_ARGUMENT naming event.event_type', async () => {
  const err = await call('Log', { event: { event_type: 'Bad Type', lead_id: LEAD } }).then(
    () => assert.fail('Log with event_type "Bad Type" succeeded'),
    (e) => e,
  );
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `code ${err.code}: ${err.details}`);
  const violations = fieldViolations(err);
  assert.ok(violations, 'no grpc-status-details-bin trailer');
  assert.ok(violations.some((v) => v.field === 'event.event_type'),
    `field violations ${JSON.stringify(violations)} do not name event.event_type`);
});
