'use strict';

// The troubleshooting guide (shared/spec/troubleshooting-guide.md, docs/troubleshooting.md), end
// to end: each test causes one of the guide's errors with a real client (the unmodified device and
// service SDKs, the REST API, or a raw MQTT-over-TLS client for a socket that dies without
// DISCONNECT), then finds its diagnostic record the way an operator would, with the guide's own
// query (`roost logs query`, and once `POST /diagnostics/query` on the admin listener), narrowed
// to this run's device id, and checks OperationName, ResultType, ResultDescription and that
// `roost errors explain <ResultType>` gives a cause and a resolution.
//
// Records are written asynchronously, so every query is polled until a deadline.

const { describe, it: nodeIt, after } = require('node:test');
const assert = require('node:assert/strict');
const tls = require('node:tls');
const http = require('node:http');
const { execFile } = require('node:child_process');

const { Client: DeviceClient, SharedAccessSignature: DeviceSas } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Client: ServiceClient } = require('azure-iothub');
const { ExponentialBackOffWithJitter } = require('azure-iot-common');
// The service Client retries 504 GatewayTimeout for minutes behind the test's back unless told not to.
const { NoRetry: ServiceNoRetry } = require('azure-iothub/dist/common-core/retry_policy');

const {
  uniqueId, ownerRegistry, haveRoostBin, deleteQuietly, connectionString, errors, randomKey,
} = require('./helpers');
const {
  hostName, adminUrl, deviceConnectionString, withTimeout, closeQuietly, rejectionOf, clientTracker,
} = require('./device-helpers');
const rest = require('./service-rest');

const TEST_TIMEOUT = 45_000;
const OP_TIMEOUT = 10_000;
const RECORD_DEADLINE = 10_000; // how long a diagnostic record may take to become queryable

const it = (name, opts, fn) => (fn
  ? nodeIt(name, { timeout: TEST_TIMEOUT, ...opts }, fn)
  : nodeIt(name, { timeout: TEST_TIMEOUT }, opts));

// The guide's query, verbatim, and the same search for any category.
const GUIDE_QUERY = 'search *\n' +
  '| where ( Type == "AzureDiagnostics" and ResourceType == "IOTHUBS")\n' +
  '| where ( Category == "Connections" and Level == "Error")';
const categoryQuery = (category) => 'search *\n' +
  '| where ( Type == "AzureDiagnostics" and ResourceType == "IOTHUBS")\n' +
  `| where ( Category == "${category}" and Level == "Error")`;
// This run's ids are unique; a quoted id inside properties_s matches only this device.
const forDevice = (kql, deviceId) => `${kql}\n| where properties_s contains ${JSON.stringify(`"${deviceId}"`)}`;

const registry = ownerRegistry();
const created = new Set();
const clients = clientTracker();

after(async () => {
  await clients.closeAll();
  await deleteQuietly(registry, created);
});

async function createDevice(what) {
  const deviceId = uniqueId(what);
  created.add(deviceId);
  const res = await registry.create({ deviceId });
  return { deviceId, key: res.responseBody.authentication.symmetricKey.primaryKey };
}

function runRoost(args, ms = OP_TIMEOUT) {
  return new Promise((resolve, reject) => {
    execFile(process.env.ROOST_BIN, args, { timeout: ms, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`roost ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** `roost logs query --explain --output json <kql>`: the rows as objects. */
async function cliQuery(kql) {
  const out = await runRoost(['logs', 'query', '--data-dir', process.env.ROOST_DATA_DIR,
    '--explain', '--output', 'json', kql]);
  const rows = JSON.parse(out);
  assert.ok(Array.isArray(rows), `roost logs query --output json should print an array: ${out.slice(0, 300)}`);
  return rows;
}

/** POST /diagnostics/query on the admin listener; the PrimaryResult rows as objects. */
function adminQuery(kql) {
  const body = Buffer.from(JSON.stringify({ query: kql, timespan: 'PT1H', explain: true }));
  return new Promise((resolve, reject) => {
    const req = http.request(`${adminUrl}/diagnostics/query`, {
      method: 'POST',
      headers: {
        Authorization: rest.serviceToken(),
        'Content-Type': 'application/json',
        'Content-Length': String(body.length),
      },
      timeout: OP_TIMEOUT,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        try {
          assert.equal(res.statusCode, 200, `POST /diagnostics/query: HTTP ${res.statusCode}: ${text}`);
          const doc = JSON.parse(text);
          assert.ok(Array.isArray(doc.tables), `no "tables": ${text.slice(0, 300)}`);
          const t = doc.tables.find((x) => x.name === 'PrimaryResult');
          assert.ok(t, `no PrimaryResult table: ${text.slice(0, 300)}`);
          const names = t.columns.map((c) => c.name);
          resolve(t.rows.map((r) => Object.fromEntries(names.map((n, i) => [n, r[i]]))));
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('POST /diagnostics/query: timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Polls `query(kql)` until a row matches `pred` or the deadline passes; fails naming what was
 * seen. Returns the matching row.
 */
async function findRecord(kql, pred, { query = cliQuery, what } = {}) {
  const deadline = Date.now() + RECORD_DEADLINE;
  let rows = [];
  for (;;) {
    rows = await query(kql);
    const hit = rows.find(pred);
    if (hit) return hit;
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const seen = rows.map((r) => `${r.Category}/${r.OperationName} ${r.ResultType} ${r.ResultDescription}`);
  assert.fail(`${what}: no record within ${RECORD_DEADLINE} ms for\n${kql}\nrows seen: ${JSON.stringify(seen)}`);
}

const byCode = (code) => (r) => String(r.ResultType) === String(code);

/** Checks a record's fields, its explanation columns and `roost errors explain`. */
async function checkRecord(row, { category, operation, code, description }) {
  const ctx = JSON.stringify(row);
  assert.equal(row.Type, 'AzureDiagnostics', ctx);
  assert.equal(row.ResourceType, 'IOTHUBS', ctx);
  assert.equal(row.Category, category, ctx);
  assert.equal(row.Level, 'Error', ctx);
  assert.equal(row.OperationName, operation, ctx);
  assert.equal(String(row.ResultType), String(code), ctx);
  assert.equal(row.ResultDescription, description, ctx);
  assert.ok(typeof row.Cause === 'string' && row.Cause.trim(), `--explain should add a Cause: ${ctx}`);
  assert.ok(typeof row.Resolution === 'string' && row.Resolution.trim(), `--explain should add a Resolution: ${ctx}`);
  const ex = JSON.parse(await runRoost(['errors', 'explain', String(row.ResultType), '--output', 'json']));
  assert.equal(String(ex.code), String(code), JSON.stringify(ex));
  assert.ok(typeof ex.cause === 'string' && ex.cause.trim(), `roost errors explain ${code}: no cause`);
  assert.ok(typeof ex.resolution === 'string' && ex.resolution.trim(), `roost errors explain ${code}: no resolution`);
  const text = await runRoost(['errors', 'explain', String(row.ResultType)]);
  assert.match(text, /Cause\s*\n\s*\S/, `roost errors explain ${code} (table) should print a cause:\n${text}`);
  assert.match(text, /Resolution\s*\n\s*\S/, `roost errors explain ${code} (table) should print a resolution:\n${text}`);
  return JSON.parse(row.properties_s || '{}');
}

function mqttClient(connStr) {
  return clients.track(DeviceClient.fromConnectionString(connStr, Mqtt));
}

/** A device SAS token for `deviceId`, expiring at `expiry` (seconds since the epoch). */
function deviceToken(deviceId, key, expiry) {
  return DeviceSas.create(hostName, deviceId, key, expiry).toString();
}

// ---- a raw MQTT 3.1.1 client over TLS: CONNECT, wait for CONNACK, then just drop the socket ----

function mqttString(s) {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

function remainingLength(n) {
  const out = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

function connectPacket(clientId, username, password) {
  const variable = Buffer.concat([mqttString('MQTT'), Buffer.from([4, 0xc2, 0, 60])]);
  const payload = Buffer.concat([mqttString(clientId), mqttString(username), mqttString(password)]);
  const rest = Buffer.concat([variable, payload]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(rest.length), rest]);
}

/** Connects over MQTT/TLS as `deviceId`; resolves with the socket once CONNACK 0 arrived. */
function rawMqttConnect(deviceId, token) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: hostName, port: 8883, servername: hostName });
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('raw MQTT: no CONNACK within 10 s')); }, OP_TIMEOUT);
    let buf = Buffer.alloc(0);
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
    sock.once('secureConnect', () => {
      sock.write(connectPacket(deviceId, `${hostName}/${deviceId}/?api-version=2021-04-12`, token));
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 4) {
        clearTimeout(timer);
        if (buf[0] !== 0x20 || buf[3] !== 0) {
          sock.destroy();
          reject(new Error(`raw MQTT: expected CONNACK 0, got ${buf.toString('hex')}`));
        } else {
          resolve(sock);
        }
      }
    });
  });
}

describe('troubleshooting guide: errors found with the guide\'s query', { skip: !haveRoostBin && 'needs ROOST_BIN' }, () => {
  it('401003 IoTHubUnauthorized: open() with a wrong key', async () => {
    const dev = await createDevice('ts-wrongkey');
    const client = mqttClient(deviceConnectionString(dev.deviceId, randomKey()));
    await rejectionOf(withTimeout(client.open(), OP_TIMEOUT, 'open'), 'open() with a wrong key');
    const row = await findRecord(forDevice(GUIDE_QUERY, dev.deviceId), byCode(401003), { what: '401003' });
    const props = await checkRecord(row, {
      category: 'Connections', operation: 'deviceConnect', code: 401003, description: 'IoTHubUnauthorized',
    });
    assert.equal(props.deviceId, dev.deviceId, row.properties_s);
    assert.match(String(props.sdkVersion), /^azure-iot-device\//, `sdkVersion: ${row.properties_s}`);
  });

  it('401002 AuthenticationFailed: open() as a device that is not registered', async () => {
    const deviceId = uniqueId('ts-unknown');
    const client = mqttClient(deviceConnectionString(deviceId, randomKey()));
    await rejectionOf(withTimeout(client.open(), OP_TIMEOUT, 'open'), 'open() of an unknown device');
    const row = await findRecord(forDevice(GUIDE_QUERY, deviceId), byCode(401002), { what: '401002 unknown' });
    await checkRecord(row, {
      category: 'Connections', operation: 'deviceConnect', code: 401002, description: 'AuthenticationFailed',
    });
  });

  it('401002 AuthenticationFailed: open() with an expired SAS token', async () => {
    const dev = await createDevice('ts-expired');
    const token = deviceToken(dev.deviceId, dev.key, Math.floor(Date.now() / 1000) - 3600);
    const client = mqttClient(`HostName=${hostName};DeviceId=${dev.deviceId};SharedAccessSignature=${token}`);
    await rejectionOf(withTimeout(client.open(), OP_TIMEOUT, 'open'), 'open() with an expired token');
    const row = await findRecord(forDevice(GUIDE_QUERY, dev.deviceId), byCode(401002), { what: '401002 expired' });
    await checkRecord(row, {
      category: 'Connections', operation: 'deviceConnect', code: 401002, description: 'AuthenticationFailed',
    });
  });

  it('404104 DeviceConnectionClosedRemotely: the TCP socket dies without DISCONNECT', async () => {
    const dev = await createDevice('ts-dropped');
    const token = deviceToken(dev.deviceId, dev.key, Math.floor(Date.now() / 1000) + 3600);
    const sock = await rawMqttConnect(dev.deviceId, token);
    sock.destroy(); // no DISCONNECT packet: the TLS session just goes away
    const row = await findRecord(forDevice(GUIDE_QUERY, dev.deviceId), byCode(404104), { what: '404104' });
    await checkRecord(row, {
      category: 'Connections', operation: 'deviceDisconnect', code: 404104, description: 'DeviceConnectionClosedRemotely',
    });
  });

  it('409002 LinkCreationConflict: a second connection with the same id drops the first', async () => {
    const dev = await createDevice('ts-conflict');
    const cs = deviceConnectionString(dev.deviceId, dev.key);
    const first = mqttClient(cs);
    const dropped = new Promise((resolve) => first.once('disconnect', resolve));
    await withTimeout(first.open(), OP_TIMEOUT, 'first open');
    const second = mqttClient(cs);
    await withTimeout(second.open(), OP_TIMEOUT, 'second open');
    await withTimeout(dropped, OP_TIMEOUT, 'the first client\'s disconnect event');
    const row = await findRecord(forDevice(GUIDE_QUERY, dev.deviceId), byCode(409002), { what: '409002' });
    await checkRecord(row, {
      category: 'Connections', operation: 'deviceDisconnect', code: 409002, description: 'LinkCreationConflict',
    });
    await clients.close(second);
  });

  it('409001 DeviceAlreadyExists and 404001 DeviceNotFound: Registry.create twice, Registry.get of a missing device', async () => {
    const dev = await createDevice('ts-twice');
    await rejectionOf(registry.create({ deviceId: dev.deviceId }), 'the second Registry.create');
    const missing = uniqueId('ts-missing');
    const err = await rejectionOf(registry.get(missing), 'Registry.get of a missing device');
    assert.ok(err instanceof errors.DeviceNotFoundError, `${err.name}: ${err.message}`);

    const q = categoryQuery('DeviceIdentityOperations');
    const dup = await findRecord(forDevice(q, dev.deviceId), byCode(409001), { what: '409001' });
    await checkRecord(dup, {
      category: 'DeviceIdentityOperations', operation: 'create', code: 409001, description: 'DeviceAlreadyExists',
    });
    const nf = await findRecord(forDevice(q, missing), byCode(404001), { what: '404001' });
    await checkRecord(nf, {
      category: 'DeviceIdentityOperations', operation: 'get', code: 404001, description: 'DeviceNotFound',
    });
  });

  it('404103 DeviceNotOnline and 504101 GatewayTimeout: direct methods (queried over POST /diagnostics/query)', async () => {
    const service = ServiceClient.fromConnectionString(connectionString);
    service.setRetryPolicy(new ServiceNoRetry());
    try {
      const offline = await createDevice('ts-offline');
      await rejectionOf(withTimeout(service.invokeDeviceMethod(offline.deviceId,
        { methodName: 'm', payload: {}, responseTimeoutInSeconds: 5 }), 15_000, 'invoke offline'), 'invoke on an offline device');

      const silent = await createDevice('ts-silent');
      const client = mqttClient(deviceConnectionString(silent.deviceId, silent.key));
      await withTimeout(client.open(), OP_TIMEOUT, 'open');
      client.onDeviceMethod('never', () => {}); // never answers
      // The SDK subscribes to methods in the background; wait until the hub sees the device listen.
      let err;
      const deadline = Date.now() + 5_000;
      for (;;) {
        err = await rejectionOf(withTimeout(service.invokeDeviceMethod(silent.deviceId,
          { methodName: 'never', payload: {}, responseTimeoutInSeconds: 5 }), 15_000, 'invoke silent'), 'invoke of a silent handler');
        const code = err.response && err.response.headers['iothub-errorcode'];
        if (code !== 'DeviceNotOnline' || Date.now() >= deadline) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal(err.response && err.response.statusCode, 504, `${err.name}: ${err.message} ${err.responseBody}`);

      const q = categoryQuery('DirectMethods');
      const off = await findRecord(forDevice(q, offline.deviceId), byCode(404103), { query: adminQuery, what: '404103' });
      await checkRecord(off, {
        category: 'DirectMethods', operation: 'send', code: 404103, description: 'DeviceNotOnline',
      });
      const to = await findRecord(forDevice(q, silent.deviceId), byCode(504101), { query: adminQuery, what: '504101' });
      await checkRecord(to, {
        category: 'DirectMethods', operation: 'send', code: 504101, description: 'GatewayTimeout',
      });
    } finally {
      await service.close().catch(() => {});
    }
  });

  it('403004 DeviceMaximumQueueDepthExceeded: the 51st cloud-to-device message', async () => {
    const dev = await createDevice('ts-c2dfull');
    for (let i = 0; i < 50; i += 10) {
      const sent = await Promise.all(Array.from({ length: 10 }, (_, j) => rest.sendC2D(dev.deviceId, `m${i + j}`)));
      for (const res of sent) assert.equal(res.status, 204, rest.describeAnswer(res));
    }
    rest.assertHubError(await rest.sendC2D(dev.deviceId, 'one too many'), 403, 'DeviceMaximumQueueDepthExceeded');
    const row = await findRecord(forDevice(categoryQuery('C2DCommands'), dev.deviceId), byCode(403004), { what: '403004' });
    await checkRecord(row, {
      category: 'C2DCommands', operation: 'send', code: 403004, description: 'DeviceMaximumQueueDepthExceeded',
    });
    await rest.purgeC2D(dev.deviceId);
  });

  it('403006 DeviceMaximumActiveFileUploadLimitExceeded: the 11th concurrent upload initiation', async () => {
    const dev = await createDevice('ts-uploads');
    const client = mqttClient(deviceConnectionString(dev.deviceId, dev.key));
    await withTimeout(client.open(), OP_TIMEOUT, 'open');
    const results = await withTimeout(Promise.allSettled(Array.from({ length: 11 },
      (_, i) => client.getBlobSharedAccessSignature(`ts-${i}.txt`))), OP_TIMEOUT, 'getBlobSharedAccessSignature x11');
    // Leave nothing in progress: report every granted upload as given up.
    for (const r of results.filter((x) => x.status === 'fulfilled')) {
      await withTimeout(client.notifyBlobUploadStatus(r.value.correlationId, false, 500, 'given up by the test'),
        OP_TIMEOUT, 'notifyBlobUploadStatus').catch(() => {});
    }
    assert.equal(results.filter((r) => r.status === 'rejected').length, 1,
      JSON.stringify(results.map((r) => r.status)));
    const row = await findRecord(forDevice(categoryQuery('FileUploadOperations'), dev.deviceId), byCode(403006), { what: '403006' });
    await checkRecord(row, {
      category: 'FileUploadOperations', operation: 'initiate', code: 403006,
      description: 'DeviceMaximumActiveFileUploadLimitExceeded',
    });
  });

  it('500001 ServerError by fault injection: the SDK retries and open() succeeds; the record says faultInjected', async () => {
    const dev = await createDevice('ts-fault');
    const ruleId = `ts-${dev.deviceId}`;
    await runRoost(['faults', 'add', '--data-dir', process.env.ROOST_DATA_DIR, '--operation', 'connect',
      '--device', dev.deviceId, '--error', '500001', '--count', '1', '--id', ruleId]);
    const client = clients.track(DeviceClient.fromConnectionString(deviceConnectionString(dev.deviceId, dev.key), Mqtt));
    client.setRetryPolicy(new ExponentialBackOffWithJitter()); // the SDK's default: it retries 500001
    try {
      await withTimeout(client.open(), 30_000, 'open() through one injected 500001');
      const row = await findRecord(forDevice(GUIDE_QUERY, dev.deviceId), byCode(500001), { what: '500001' });
      const props = await checkRecord(row, {
        category: 'Connections', operation: 'deviceConnect', code: 500001, description: 'ServerError',
      });
      assert.equal(String(props.faultInjected), 'true', row.properties_s);
      assert.ok(props.faultRule, `faultRule: ${row.properties_s}`);
    } finally {
      await runRoost(['faults', 'remove', '--data-dir', process.env.ROOST_DATA_DIR, ruleId]).catch(() => {});
      await closeQuietly(client);
    }
  });
});
