'use strict';

// Devices, driven through the unmodified device SDKs against a real roost:
// `azure-iot-device` with the `azure-iot-device-mqtt` (Mqtt: TLS on 8883, MqttWs: WebSockets on
// 443 at /$iothub/websocket) and `azure-iot-device-http` (Http: REST on 443) transports.
//
// What the SDKs do that these tests rely on (read from node_modules, versions in package.json):
// - Mqtt/MqttWs open() sends CONNECT; a refused first CONNECT is wrapped as
//   Error("Failure on first connection (Not authorized): <mqtt.js message>") and then translated,
//   so CONNACK 5 ("Connection refused: Not authorized") surfaces as UnauthorizedError, which the
//   default retry policy does not retry. CONNACK 3 would give ServiceUnavailableError (retried).
// - Http open() touches no network; the first request carries the SAS token and a 401 becomes
//   UnauthorizedError (azure-iot-device-http/dist/http_errors.js).
// - Mqtt has no sendEventBatch (NotImplementedError); Http posts a JSON batch.
// - A transport 'disconnect' with an error that the retry policy would retry is swallowed by the
//   client (it only re-enables features), so a client that must report being pushed out uses
//   NoRetry: then the client emits 'disconnect'.

const { describe, it: nodeIt, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { Client, ModuleClient, Message, SharedAccessSignature: DeviceSAS } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Http } = require('azure-iot-device-http');

const { uniqueId, ownerRegistry, randomKey, deleteQuietly, eventually, haveRoostBin } = require('./helpers');
const {
  deviceErrors,
  NoRetry,
  hostName,
  adminUrl,
  deviceConnectionString,
  withTimeout,
  closeQuietly,
  rejectionOf,
  describeError,
  scrapeMetrics,
  sample,
  sampleSum,
  metricsEventually,
  defaultPolicyGivesUp,
  CONNECTION_ERRORS,
  TELEMETRY_SUCCESS,
  TELEMETRY_ATTEMPTS,
} = require('./device-helpers');
const events = require('./events-reader');

const TEST_TIMEOUT = 30_000; // per test
const OP_TIMEOUT = 10_000; // per SDK call
const FAIL_FAST_MS = 5_000; // a refused open must come back within this

// Every test gets its own time limit, so a hang fails that test instead of blocking the run.
const it = (name, fn) => nodeIt(name, { timeout: TEST_TIMEOUT }, fn);

const registry = ownerRegistry();
const created = new Set();
const openClients = new Set();

after(async () => {
  await Promise.all([...openClients].map((c) => closeQuietly(c)));
  await deleteQuietly(registry, created);
});

async function createDevice(what) {
  const deviceId = uniqueId(what);
  created.add(deviceId);
  const { responseBody: dev } = await registry.create({ deviceId });
  const key = dev.authentication.symmetricKey.primaryKey;
  return { deviceId, key, cs: deviceConnectionString(deviceId, key) };
}

/**
 * Prepares a client: NoRetry, so that every failure (and a dropped connection) surfaces at once
 * instead of being retried for up to 4 minutes behind the test's back; and closed by the suite at
 * the end even when a test fails half-way.
 */
function track(client) {
  client.setRetryPolicy(new NoRetry());
  // An 'error' event without a listener would crash the test process.
  client.on('error', () => {});
  openClients.add(client);
  return client;
}

async function closeClient(client) {
  openClients.delete(client);
  await withTimeout(client.close(), OP_TIMEOUT, 'close');
}

/**
 * A JSON telemetry message with message id, correlation id, content type and encoding, and
 * application properties. Over MQTT one property needs escaping in the topic's property bag
 * (space, &, =, /); over HTTPS names and values must be HTTP header tokens (device-protocol.md
 * §11.1), so the Http messages carry the allowed punctuation instead.
 */
function telemetryMessage(deviceId, transportName, n, extra = {}) {
  const body = { deviceId, transport: transportName, n, temperature: 20 + n, ...extra };
  const msg = new Message(JSON.stringify(body));
  msg.messageId = `${deviceId}-msg-${n}`;
  msg.correlationId = `${deviceId}-corr-${n}`;
  msg.contentType = 'application/json';
  msg.contentEncoding = 'utf-8';
  const properties = { n: String(n), transport: transportName };
  // (lower case: HTTP header names are case-insensitive, so the hub cannot keep their case)
  if (transportName === 'Http') properties["x-odd_name.1~!#$%'*+^`|"] = "v.1~!#$%'*+^_`|";
  else properties['space and&amp'] = 'a b/c=d&e%20+';
  for (const [k, v] of Object.entries(properties)) msg.properties.add(k, v);
  return { msg, expected: {
    body,
    messageId: msg.messageId,
    correlationId: msg.correlationId,
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    properties,
  } };
}

/**
 * Reads `deviceId`'s stored telemetry through the hub's consumer API (events-reader.js) and
 * checks that exactly the `expected` messages are there, with body, system and application
 * properties and the iothub-connection-device-id (and -module-id) annotations. Skips the test as
 * pending when the hub has no consumer API.
 */
async function assertStored(t, deviceId, expected, { moduleId } = {}) {
  let got;
  try {
    got = await events.read({ deviceId, count: expected.length, timeoutMs: 15_000 });
  } catch (e) {
    if (e instanceof events.EventsUnavailable) {
      t.skip(`PENDING: no telemetry consumer API on this hub yet (${e.message.slice(0, 90)})`);
      return;
    }
    throw e;
  }
  // Match by the body's sequence number n: batch messages carry no message id.
  const nOf = (e) => { try { return JSON.parse(e.body).n; } catch (_) { return undefined; } };
  const byN = new Map(got.map((e) => [nOf(e), e]));
  for (const want of expected) {
    const e = byN.get(want.body.n);
    assert.ok(e, `message n=${want.body.n} not read back; got ${JSON.stringify(got.map((x) => x.raw))}`);
    const label = `message n=${want.body.n}`;
    assert.deepEqual(JSON.parse(e.body), want.body, `body of ${label}`);
    assert.equal(e.messageId, want.messageId, `messageId of ${label}`);
    assert.equal(e.raw.base64Encoded, undefined, `a UTF-8 JSON body is served as text (${label})`);
    assert.equal(e.correlationId, want.correlationId, `correlationId of ${label}`);
    assert.equal(e.contentType, want.contentType, `contentType of ${label}`);
    assert.equal(e.contentEncoding, want.contentEncoding, `contentEncoding of ${label}`);
    assert.deepEqual(e.properties, want.properties, `application properties of ${label}`);
    assert.equal(e.annotations['iothub-connection-device-id'], deviceId, `device annotation of ${label}`);
    assert.equal(e.annotations['iothub-connection-module-id'], moduleId, `module annotation of ${label}`);
  }
  assert.equal(got.length, expected.length,
    `expected ${expected.length} messages for ${deviceId}, read ${got.length}: ${JSON.stringify(got.map((e) => e.raw))}`);
}

async function connectionState(deviceId) {
  const { responseBody } = await registry.get(deviceId);
  return responseBody.connectionState;
}

const TRANSPORTS = [
  { name: 'Mqtt', Transport: Mqtt, mqtt: true },
  { name: 'MqttWs', Transport: MqttWs, mqtt: true },
  { name: 'Http', Transport: Http, mqtt: false },
];

for (const { name, Transport, mqtt } of TRANSPORTS) {
  describe(`telemetry over ${name}`, () => {
    let dev;
    let m0; // metrics before the first message
    const sent = [];

    before(async () => {
      dev = await createDevice(`tel-${name.toLowerCase()}`);
      m0 = adminUrl ? await scrapeMetrics() : null;
    });

    it('open, sendEvent with system and application properties, close', async () => {
      const client = track(Client.fromConnectionString(dev.cs, Transport));
      const opened = await withTimeout(client.open(), OP_TIMEOUT, 'open');
      assert.equal(opened.constructor.name, 'Connected');
      if (mqtt) {
        assert.equal(await eventually(async () => (await connectionState(dev.deviceId)) === 'Connected'), true,
          'registry connectionState should be Connected while the MQTT client is open');
      }

      const { msg, expected } = telemetryMessage(dev.deviceId, name, 1);
      const res = await withTimeout(client.sendEvent(msg), OP_TIMEOUT, 'sendEvent');
      assert.equal(res.constructor.name, 'MessageEnqueued');
      sent.push(expected);

      await closeClient(client);
      if (mqtt) {
        assert.equal(await eventually(async () => (await connectionState(dev.deviceId)) === 'Disconnected'), true,
          'registry connectionState should be Disconnected after close()');
        if (m0) {
          // A clean open/send/close writes only Information records: no connection error counted.
          const m = await scrapeMetrics();
          assert.equal(sampleSum(m, CONNECTION_ERRORS), sampleSum(m0, CONNECTION_ERRORS),
            'a clean session must not write a Connections Error record');
        }
      }
    });

    if (!mqtt) {
      it('sendEventBatch with properties', async () => {
        const client = track(Client.fromConnectionString(dev.cs, Transport));
        await withTimeout(client.open(), OP_TIMEOUT, 'open');
        const batch = [2, 3].map((n) => telemetryMessage(dev.deviceId, name, n));
        const res = await withTimeout(client.sendEventBatch(batch.map((b) => b.msg)), OP_TIMEOUT, 'sendEventBatch');
        assert.equal(res.constructor.name, 'MessageEnqueued');
        // The SDK's batch body carries only each message's body and application properties
        // ({"body":"<base64>","properties":{"iothub-app-<k>":"<v>"}}): no system properties.
        sent.push(...batch.map((b) => ({
          ...b.expected, messageId: undefined, correlationId: undefined, contentType: undefined, contentEncoding: undefined,
        })));
        await closeClient(client);
      });
    }

    it('every event is read back with its properties and the device annotation', async (t) => {
      assert.ok(sent.length > 0, 'nothing was sent (an earlier test failed)');
      await assertStored(t, dev.deviceId, sent);
    });

    if (name === 'Mqtt') {
      it('roost monitor-events prints the same events', async (t) => {
        if (!haveRoostBin) return t.skip('ROOST_BIN / ROOST_DATA_DIR not set (run through run.sh)');
        assert.ok(sent.length > 0, 'nothing was sent (an earlier test failed)');
        const got = await events.monitorEvents({ deviceId: dev.deviceId });
        assert.equal(got.length, sent.length, `monitor-events printed ${JSON.stringify(got)}`);
        for (const [i, want] of sent.entries()) {
          const ev = got[i];
          assert.equal(ev.origin, dev.deviceId);
          assert.deepEqual(ev.payload, want.body, 'a JSON body is printed as JSON');
          assert.equal(ev.properties.system.message_id, want.messageId);
          assert.equal(ev.properties.system.correlation_id, want.correlationId);
          assert.equal(ev.properties.system.content_type, want.contentType);
          assert.equal(ev.properties.system.content_encoding, want.contentEncoding);
          assert.deepEqual(ev.properties.application, want.properties);
          assert.equal(ev.annotations['iothub-connection-device-id'], dev.deviceId);
        }
      });
    }

    it('the hub counts the messages in its d2c.telemetry.ingress metrics', async (t) => {
      if (!m0) return t.skip('ROOST_ADMIN_URL not set (run through run.sh)');
      assert.ok(sent.length > 0, 'nothing was sent (an earlier test failed)');
      // The suite runs one test at a time, so nothing else sends meanwhile.
      const m = await metricsEventually((x) => sample(x, TELEMETRY_SUCCESS) >= sample(m0, TELEMETRY_SUCCESS) + sent.length);
      assert.equal(sample(m, TELEMETRY_ATTEMPTS) - sample(m0, TELEMETRY_ATTEMPTS), sent.length,
        `${TELEMETRY_ATTEMPTS} (d2c.telemetry.ingress.allProtocol) should count the ${name} messages`);
      assert.equal(sample(m, TELEMETRY_SUCCESS) - sample(m0, TELEMETRY_SUCCESS), sent.length,
        `${TELEMETRY_SUCCESS} (d2c.telemetry.ingress.success) should count the ${name} messages`);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Refused connections. IoT Hub answers CONNACK 5 (MQTT) / HTTP 401; the SDK gives
// UnauthorizedError, which its default retry policy does not retry. Each refusal writes one
// Connections deviceConnect record at level Error (docs/usage.md): 401002 for an expired token,
// an unknown or a disabled device, 401003 for a wrong key.

// REST error names of the codes (decisions.md: the names the SDKs parse).
const HTTP_ERROR_NAMES = { 401002: 'IotHubUnauthorizedAccess', 401003: 'IotHubUnauthorized' };

for (const { name, Transport, mqtt } of TRANSPORTS) {
  describe(`refused over ${name}`, () => {
    /**
     * Opens (and for Http, sends, since Http open() does not touch the network) and expects an
     * UnauthorizedError quickly, exactly one Connections error counted with `code` for MQTT.
     */
    async function expectRefused(client, code) {
      track(client);
      const m0 = adminUrl ? await scrapeMetrics() : null;
      const started = Date.now();
      let err;
      if (mqtt) {
        err = await rejectionOf(withTimeout(client.open(), OP_TIMEOUT, 'open'), 'open()');
      } else {
        await withTimeout(client.open(), OP_TIMEOUT, 'open');
        err = await rejectionOf(withTimeout(client.sendEvent(new Message('{}')), OP_TIMEOUT, 'sendEvent'), 'sendEvent()');
      }
      const elapsed = Date.now() - started;
      assert.ok(err instanceof deviceErrors.UnauthorizedError,
        `expected UnauthorizedError, got ${describeError(err)}`);
      if (mqtt) {
        assert.match(err.message, /Connection refused: Not authorized/,
          `expected CONNACK 5 (Not authorized): ${describeError(err)}`);
      } else {
        assert.equal(err.response && err.response.statusCode, 401, describeError(err));
        const name = HTTP_ERROR_NAMES[code];
        assert.equal(err.response.headers['iothub-errorcode'], name, describeError(err));
        assert.match(err.responseBody || '', new RegExp(`"Message":"ErrorCode:${name};`), describeError(err));
      }
      assert.ok(defaultPolicyGivesUp(err), `the SDK's default retry policy would retry ${err.name}`);
      assert.ok(elapsed < FAIL_FAST_MS, `refusal took ${elapsed} ms`);
      if (m0 && mqtt) {
        const want = sample(m0, CONNECTION_ERRORS, { code }) + 1;
        const m = await metricsEventually((x) => sample(x, CONNECTION_ERRORS, { code }) >= want);
        assert.equal(sample(m, CONNECTION_ERRORS, { code }), want,
          `exactly one Connections Error record with ${code} (seen through ${CONNECTION_ERRORS})`);
        assert.equal(sampleSum(m, CONNECTION_ERRORS), sampleSum(m0, CONNECTION_ERRORS) + 1,
          'no other connection error (the SDK must not have retried)');
      }
      await closeClient(client);
      return err;
    }

    it('expired SAS token', async () => {
      const dev = await createDevice(`exp-${name.toLowerCase()}`);
      const expiry = Math.floor(Date.now() / 1000) - 600; // ten minutes ago
      const token = DeviceSAS.create(hostName, dev.deviceId, dev.key, expiry).toString();
      assert.match(token, /^SharedAccessSignature /);
      await expectRefused(Client.fromSharedAccessSignature(token, Transport), '401002');
    });

    it('wrong key', async () => {
      const dev = await createDevice(`key-${name.toLowerCase()}`);
      const cs = deviceConnectionString(dev.deviceId, randomKey());
      await expectRefused(Client.fromConnectionString(cs, Transport), '401003');
    });

    it('disabled device', async () => {
      const dev = await createDevice(`dis-${name.toLowerCase()}`);
      const { responseBody } = await registry.update({ deviceId: dev.deviceId, status: 'disabled' });
      assert.equal(responseBody.status, 'disabled');
      await expectRefused(Client.fromConnectionString(dev.cs, Transport), '401002');
    });

    it('unknown device', async () => {
      const deviceId = uniqueId(`nodev-${name.toLowerCase()}`); // never created
      const cs = deviceConnectionString(deviceId, randomKey());
      await expectRefused(Client.fromConnectionString(cs, Transport), '401002');
    });
  });
}

// ---------------------------------------------------------------------------------------------
// One connection per device: a second client with the same id pushes the first one out. The
// pushed-out connection is logged as deviceDisconnect, Error, 409002 (docs/usage.md).

const PAIRS = [
  ['Mqtt', Mqtt, 'Mqtt', Mqtt],
  ['MqttWs', MqttWs, 'MqttWs', MqttWs],
  ['Mqtt', Mqtt, 'MqttWs', MqttWs],
];

describe('second client with the same device id', () => {
  for (const [nameA, TA, nameB, TB] of PAIRS) {
    const sent = [];
    let dev;

    it(`${nameA} then ${nameB}: the first is disconnected, the second keeps working`, async () => {
      dev = await createDevice(`dup-${nameA.toLowerCase()}-${nameB.toLowerCase()}`);
      const a = track(Client.fromConnectionString(dev.cs, TA));
      const aGone = new Promise((resolve) => {
        a.on('disconnect', (r) => resolve({ via: 'disconnect', detail: r }));
        a.on('error', (e) => resolve({ via: 'error', detail: e }));
      });
      await withTimeout(a.open(), OP_TIMEOUT, 'open A');
      const first = telemetryMessage(dev.deviceId, nameA, 1);
      await withTimeout(a.sendEvent(first.msg), OP_TIMEOUT, 'A sendEvent');
      sent.push(first.expected);

      const m0 = adminUrl ? await scrapeMetrics() : null;
      const b = track(Client.fromConnectionString(dev.cs, TB));
      await withTimeout(b.open(), OP_TIMEOUT, 'open B');
      const gone = await withTimeout(aGone, OP_TIMEOUT, "A's disconnect event");
      // With NoRetry the client reports the dropped connection as 'disconnect' carrying a
      // results.Disconnected whose transportObj is the transport's error.
      assert.equal(gone.via, 'disconnect', `A reported ${gone.via}: ${describeError(gone.detail)}`);
      assert.equal(gone.detail && gone.detail.constructor.name, 'Disconnected');

      const second = telemetryMessage(dev.deviceId, nameB, 2);
      const res = await withTimeout(b.sendEvent(second.msg), OP_TIMEOUT, 'B sendEvent');
      assert.equal(res.constructor.name, 'MessageEnqueued');
      sent.push(second.expected);
      assert.equal(await connectionState(dev.deviceId), 'Connected', 'B is still connected');

      if (m0) {
        const want = sample(m0, CONNECTION_ERRORS, { code: '409002' }) + 1;
        const m = await metricsEventually((x) => sample(x, CONNECTION_ERRORS, { code: '409002' }) >= want);
        assert.equal(sample(m, CONNECTION_ERRORS, { code: '409002' }), want,
          `one deviceDisconnect Error record with 409002 for A (seen through ${CONNECTION_ERRORS})`);
      }
      await closeClient(b);
      await closeQuietly(a);
      openClients.delete(a);
    });

    it(`${nameA} then ${nameB}: both clients' events are read back`, async (t) => {
      assert.equal(sent.length, 2, 'the events were not sent (the test above failed)');
      await assertStored(t, dev.deviceId, sent);
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('module client', () => {
  let deviceId;
  let moduleId;
  const sent = [];

  it('ModuleClient over Mqtt sends an event with a module connection string', async () => {
    deviceId = (await createDevice('mod')).deviceId;
    moduleId = 'e2e-module-1';
    const { responseBody: mod } = await registry.addModule({ deviceId, moduleId });
    const cs = deviceConnectionString(deviceId, mod.authentication.symmetricKey.primaryKey, moduleId);
    const client = track(ModuleClient.fromConnectionString(cs, Mqtt));
    await withTimeout(client.open(), OP_TIMEOUT, 'open');
    const { msg, expected } = telemetryMessage(deviceId, 'Mqtt', 1, { moduleId });
    const res = await withTimeout(client.sendEvent(msg), OP_TIMEOUT, 'sendEvent');
    assert.equal(res.constructor.name, 'MessageEnqueued');
    sent.push(expected);
    await closeClient(client);
  });

  it('the module event is read back with the module annotation', async (t) => {
    assert.equal(sent.length, 1, 'the event was not sent (the test above failed)');
    await assertStored(t, deviceId, sent, { moduleId });
  });
});

// ---------------------------------------------------------------------------------------------
// A live connection that loses its right to be connected is closed by the hub (docs/usage.md):
// an expiring SAS token gives deviceDisconnect, Error, 401003; disabling the device gives
// deviceDisconnect, Error, 401002.

describe('a connected device is closed by the hub', () => {
  /**
   * Opens `client` (NoRetry, so it reports the drop) and returns { gone }: a promise of how it
   * was told (wrapped, so that awaiting this function does not wait for the drop).
   */
  async function openWatching(client) {
    track(client);
    const gone = new Promise((resolve) => {
      client.on('disconnect', (r) => resolve({ via: 'disconnect', detail: r }));
    });
    await withTimeout(client.open(), OP_TIMEOUT, 'open');
    return { gone };
  }

  async function expectClosed(gone, code, m0, ms) {
    const how = await withTimeout(gone, ms, 'disconnect event');
    assert.equal(how.via, 'disconnect');
    if (m0) {
      const want = sample(m0, CONNECTION_ERRORS, { code }) + 1;
      const m = await metricsEventually((x) => sample(x, CONNECTION_ERRORS, { code }) >= want);
      assert.equal(sample(m, CONNECTION_ERRORS, { code }), want,
        `one deviceDisconnect Error record with ${code} (seen through ${CONNECTION_ERRORS})`);
    }
  }

  it('Mqtt: when its SAS token expires', async () => {
    const dev = await createDevice('ttl-mqtt');
    const expiry = Math.floor(Date.now() / 1000) + 3;
    const token = DeviceSAS.create(hostName, dev.deviceId, dev.key, expiry).toString();
    const client = Client.fromSharedAccessSignature(token, Mqtt);
    const m0 = adminUrl ? await scrapeMetrics() : null;
    const { gone } = await openWatching(client);
    await expectClosed(gone, '401003', m0, 10_000);
    assert.ok(Date.now() >= (expiry - 1) * 1000, 'closed before the token expired');
    await closeQuietly(client);
    openClients.delete(client);
  });

  it('Mqtt: when the device is disabled', async () => {
    const dev = await createDevice('off-mqtt');
    const client = Client.fromConnectionString(dev.cs, Mqtt);
    const { gone } = await openWatching(client);
    const m0 = adminUrl ? await scrapeMetrics() : null;
    await withTimeout(registry.update({ deviceId: dev.deviceId, status: 'disabled' }), OP_TIMEOUT, 'disable the device');
    await expectClosed(gone, '401002', m0, 5_000);
    await closeQuietly(client);
    openClients.delete(client);
  });
});
