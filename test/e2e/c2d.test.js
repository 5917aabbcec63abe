'use strict';

// Cloud-to-device messages: devices receive through the unmodified azure-iot-device SDK over Mqtt
// (TLS, 8883), MqttWs (WebSockets, 443) and Http (polling, 443); the service side sends, purges
// and reads feedback over the hub's REST API (service-rest.js), because the Node service SDK's
// Client.send uses AMQP, which Roost does not serve yet.
//
// What the SDKs do (read from node_modules, versions in package.json):
// - Adding a 'message' listener makes the device client enable C2D: over MQTT it subscribes to
//   devices/{id}/messages/devicebound/# at QoS 1 (connecting first if needed) and tells nobody
//   when the SUBACK comes; over Http it starts polling GET /devices/{id}/messages/deviceBound once
//   a second, draining the queue (another GET right after each 200).
// - Mqtt parses the property bag after devices/{id}/messages/devicebound/: $.mid, $.to, $.exp,
//   $.cid, $.uid, $.ct, $.ce become messageId, to, expiryTimeUtc, correlationId, userId,
//   contentType, contentEncoding; every other key (iothub-ack included) becomes an application
//   property. mqtt.js sends the PUBACK itself as soon as the message was emitted, and
//   client.complete() over Mqtt is a no-op (reject and abandon throw NotImplementedError).
// - Http turns the 200's headers into the Message: iothub-messageid, iothub-to, iothub-expiry,
//   iothub-correlationid, and every iothub-app-<name> header as an application property named
//   with the full header name; the ETag without its quotes is the lockToken. It reads the body as
//   a string. complete / reject / abandon are DELETE .../deviceBound/{lockToken},
//   DELETE ...?reject and POST .../{lockToken}/abandon.

const { describe, it: nodeIt, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { execFile } = require('node:child_process');

const { Client } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Http } = require('azure-iot-device-http');

const { uniqueId, ownerRegistry, haveRoostBin, deleteQuietly } = require('./helpers');
const { deviceConnectionString, withTimeout, clientTracker } = require('./device-helpers');
const rest = require('./service-rest');

const TEST_TIMEOUT = 30_000; // per test
const OP_TIMEOUT = 10_000; // per SDK call
const RECEIVE_TIMEOUT = 10_000; // for a message to reach the device
const FEEDBACK_TIMEOUT = 10_000; // for feedback to reach the service side

const it = (name, opts, fn) => (fn
  ? nodeIt(name, { timeout: TEST_TIMEOUT, ...opts }, fn)
  : nodeIt(name, { timeout: TEST_TIMEOUT }, opts));

const needsBin = haveRoostBin ? {} : { skip: 'ROOST_BIN / ROOST_DATA_DIR not set' };
const QUEUE_LIMIT = 50;
const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/; // IoT Hub's (and Roost's) maximum of messages waiting per device

const registry = ownerRegistry();
const created = new Set();
const clients = clientTracker();

after(async () => {
  await clients.closeAll();
  await deleteQuietly(registry, created);
});

async function createDevice(what, extra = {}) {
  const deviceId = uniqueId(what);
  created.add(deviceId);
  const { responseBody: dev } = await withTimeout(registry.create({ deviceId, ...extra }), OP_TIMEOUT, 'registry.create');
  const key = dev.authentication.symmetricKey.primaryKey;
  return { deviceId, key, generationId: dev.generationId, cs: deviceConnectionString(deviceId, key) };
}

async function queueDepth(deviceId) {
  const { responseBody } = await withTimeout(registry.get(deviceId), OP_TIMEOUT, 'registry.get');
  return responseBody.cloudToDeviceMessageCount;
}

/** Polls the registry until the device's queue depth is `want`; fails with the last value. */
async function expectDepth(deviceId, want, what, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  let got;
  for (;;) {
    got = await queueDepth(deviceId);
    if (got === want || Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(got, want, `cloudToDeviceMessageCount ${what}`);
}

/** Sends a message over REST and asserts the 204 (and the message id the hub echoes). */
async function send(deviceId, body, headers = {}) {
  const res = await rest.sendC2D(deviceId, body, headers);
  assert.equal(res.status, 204, `send to ${deviceId}: ${rest.describeAnswer(res)}`);
  if (headers['iothub-messageid']) {
    assert.equal(res.headers['iothub-messageid'], headers['iothub-messageid'], 'the 204 names the message id');
  }
  return res;
}

/**
 * Collects the messages a device client emits. Adding the listener is what makes the SDK enable
 * C2D. `take(n)` resolves with the first n messages once they came.
 */
function inbox(client) {
  const got = [];
  client.on('message', (msg) => got.push(msg));
  return {
    got,
    async take(n, ms = RECEIVE_TIMEOUT) {
      const deadline = Date.now() + ms;
      while (got.length < n) {
        if (Date.now() >= deadline) {
          throw new Error(`expected ${n} message(s) within ${ms} ms, got ${got.length}: ${JSON.stringify(got.map((m) => m.messageId))}`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
      return got.slice(0, n);
    },
  };
}

/** A message's application properties as a plain object. */
function propertiesOf(msg) {
  const out = {};
  for (let i = 0; i < msg.properties.count(); i++) {
    const { key, value } = msg.properties.getItem(i);
    out[key] = value;
  }
  return out;
}

const bodyText = (msg) => (Buffer.isBuffer(msg.data) ? msg.data.toString('utf8') : String(msg.data));

// Feedback is one queue for the whole hub, handed out in batches. Every record read is kept here
// by original message id, so that a batch holding several tests' records serves them all.
const feedbackSeen = new Map();

function remember(res) {
  const records = res.json();
  assert.ok(Array.isArray(records), `feedback should be a JSON array: ${rest.describeAnswer(res)}`);
  for (const r of records) feedbackSeen.set(r.originalMessageId, r);
  return records;
}

/** Completes a feedback batch, asserting the 204. */
async function completeBatch(res) {
  const token = rest.lockTokenOf(res);
  const del = await rest.completeFeedback(token);
  assert.equal(del.status, 204, `DELETE feedback/${token}: ${rest.describeAnswer(del)}`);
}

/** The feedback record of `messageId`, reading (and completing) batches until it shows up. */
async function feedbackFor(messageId) {
  if (!feedbackSeen.has(messageId)) {
    const res = await rest.pollQueue(rest.receiveFeedback, {
      accept: (r) => remember(r).some((f) => f.originalMessageId === messageId),
      onOther: completeBatch,
      timeoutMs: FEEDBACK_TIMEOUT,
      what: `feedback for ${messageId}`,
    });
    await completeBatch(res);
  }
  const rec = feedbackSeen.get(messageId);
  feedbackSeen.delete(messageId);
  return rec;
}

function assertFeedback(rec, dev, messageId, status) {
  const label = `feedback ${JSON.stringify(rec)}`;
  assert.equal(rec.originalMessageId, messageId, label);
  assert.equal(rec.deviceId, dev.deviceId, label);
  assert.equal(rec.statusCode, status, label);
  assert.equal(rec.description, status, label);
  assert.equal(rec.deviceGenerationId, dev.generationId, `deviceGenerationId is the registry's generationId; ${label}`);
  const t = Date.parse(rec.enqueuedTimeUtc);
  assert.ok(Number.isFinite(t) && Math.abs(Date.now() - t) < 60_000, `enqueuedTimeUtc is recent; ${label}`);
}

/** The REST headers of a message with every system property, an application property and full ack. */
function richHeaders(messageId, expiry) {
  return {
    'iothub-messageid': messageId,
    'iothub-correlationid': `${messageId}-corr`,
    'iothub-userid': 'e2e-sender',
    'iothub-expiry': expiry.toISOString(),
    'iothub-ack': 'full',
    'Content-Type': 'application/json',
    'Content-Encoding': 'utf-8',
    'iothub-app-color': 'red',
    // a value that needs escaping in an MQTT property bag
    'iothub-app-route': 'a b/c&d=e%f+g?h#i',
  };
}

// ---------------------------------------------------------------------------------------------
// MQTT and MQTT over WebSockets.

for (const { name, Transport } of [{ name: 'Mqtt', Transport: Mqtt }, { name: 'MqttWs', Transport: MqttWs }]) {
  describe(`cloud-to-device over ${name}`, () => {
    it('a REST-sent message reaches on(\'message\') with its properties; completing it gives Success feedback', async () => {
      const dev = await createDevice(`c2d-${name.toLowerCase()}`);
      const client = clients.track(Client.fromConnectionString(dev.cs, Transport));
      await withTimeout(client.open(), OP_TIMEOUT, 'open');
      const box = inbox(client);

      const messageId = `${dev.deviceId}-m1`;
      const expiry = new Date(Date.now() + 10 * 60_000);
      const body = JSON.stringify({ text: 'héllo wörld ✓', n: 1, nested: { a: [1, 2, 3] } });
      await send(dev.deviceId, body, richHeaders(messageId, expiry));

      const [msg] = await box.take(1);
      assert.equal(msg.messageId, messageId);
      assert.equal(msg.correlationId, `${messageId}-corr`);
      assert.equal(msg.userId, 'e2e-sender');
      assert.equal(msg.contentType, 'application/json');
      assert.equal(msg.contentEncoding, 'utf-8');
      assert.equal(msg.to, `/devices/${dev.deviceId}/messages/deviceBound`);
      assert.equal(typeof msg.expiryTimeUtc, 'string', `expiryTimeUtc ${msg.expiryTimeUtc}`);
      assert.equal(Date.parse(msg.expiryTimeUtc), expiry.getTime(), `expiryTimeUtc ${msg.expiryTimeUtc}`);
      assert.deepEqual(propertiesOf(msg), { color: 'red', route: 'a b/c&d=e%f+g?h#i', 'iothub-ack': 'full' });
      assert.ok(Buffer.isBuffer(msg.data), 'an MQTT message body is a Buffer');
      assert.deepEqual(msg.data, Buffer.from(body, 'utf8'), 'body intact');

      const done = await withTimeout(client.complete(msg), OP_TIMEOUT, 'complete');
      assert.equal(done.constructor.name, 'MessageCompleted');

      // The first batch holding this message's feedback; any older batch is completed on the way.
      const res = await rest.pollQueue(rest.receiveFeedback, {
        accept: (r) => remember(r).some((f) => f.originalMessageId === messageId),
        onOther: completeBatch,
        timeoutMs: FEEDBACK_TIMEOUT,
        what: `feedback for ${messageId}`,
      });
      // IoT Hub's feedback content type (its AMQP feedback messages carry the same).
      assert.match(res.headers['content-type'] || '', /^application\/vnd\.microsoft\.iothub\.feedback\.json\b/,
        'feedback content type');
      assertFeedback(feedbackSeen.get(messageId), dev, messageId, 'Success');
      feedbackSeen.delete(messageId);
      const token = rest.lockTokenOf(res);
      const del = await rest.completeFeedback(token);
      assert.equal(del.status, 204, `DELETE feedback/${token}: ${rest.describeAnswer(del)}`);
      const again = await rest.receiveFeedback();
      assert.equal(again.status, 204, `nothing is left once the batch is completed: ${rest.describeAnswer(again)}`);

      await expectDepth(dev.deviceId, 0, 'after the message was completed');

      // The subscription is certainly in place now: a second message is delivered live. It has
      // no properties, so the hub assigns the id and sends no $.exp, $.cid... and no iothub-ack;
      // its body is bytes that are not UTF-8.
      const bytes = Buffer.concat([Buffer.from([0x00, 0xff, 0xfe, 0x80]), crypto.randomBytes(2000)]);
      const sent = await send(dev.deviceId, bytes, { 'Content-Type': 'application/octet-stream' });
      const assigned = sent.headers['iothub-messageid'];
      assert.match(assigned || '', GUID, 'the 204 names the id the hub assigned');
      const [second] = (await box.take(2)).slice(1);
      assert.equal(second.messageId, assigned);
      assert.equal(second.contentType, 'application/octet-stream');
      // (the SDK's Message starts with '' for these two and undefined for the others)
      assert.equal(second.correlationId, '', 'no $.cid');
      assert.equal(second.userId, '', 'no $.uid');
      assert.equal(second.contentEncoding, undefined, 'no $.ce');
      assert.equal(second.expiryTimeUtc, undefined, 'no $.exp for a message sent without an expiry');
      assert.deepEqual(propertiesOf(second), {}, 'no application properties, no iothub-ack for ack none');
      assert.deepEqual(second.data, bytes, 'a binary body arrives byte for byte');
      await expectDepth(dev.deviceId, 0, 'after the second message');
      await clients.close(client);
    });

    it('three messages sent while the device is offline arrive in order after open()', async () => {
      const dev = await createDevice(`c2d-offline-${name.toLowerCase()}`);
      const ids = [1, 2, 3].map((n) => `${dev.deviceId}-o${n}`);
      for (const [i, id] of ids.entries()) {
        await send(dev.deviceId, `offline message ${i + 1}`, { 'iothub-messageid': id });
      }
      assert.equal(await queueDepth(dev.deviceId), 3, 'cloudToDeviceMessageCount while the device is away');

      const client = clients.track(Client.fromConnectionString(dev.cs, Transport));
      await withTimeout(client.open(), OP_TIMEOUT, 'open');
      const box = inbox(client);
      const msgs = await box.take(3);
      assert.deepEqual(msgs.map((m) => m.messageId), ids, 'in the order they were sent');
      assert.deepEqual(msgs.map(bodyText), ['offline message 1', 'offline message 2', 'offline message 3']);
      for (const m of msgs) await withTimeout(client.complete(m), OP_TIMEOUT, 'complete');

      await expectDepth(dev.deviceId, 0, 'after the device took all three');
      // Nothing more comes (no redelivery of what was acknowledged).
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(box.got.length, 3, `extra deliveries: ${JSON.stringify(box.got.map((m) => m.messageId))}`);
      await clients.close(client);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// HTTPS polling: complete, reject, abandon.

describe('cloud-to-device over Http', () => {
  let dev;
  let client;
  let box;

  before(async () => {
    dev = await createDevice('c2d-http');
    client = clients.track(Client.fromConnectionString(dev.cs, Http));
    await withTimeout(client.open(), OP_TIMEOUT, 'open');
    box = inbox(client); // starts polling, once a second
  });

  after(async () => {
    if (!client) return;
    client.removeAllListeners('message'); // stops the polling
    await clients.close(client).catch(() => {});
  });

  /** Sends one message with full ack and returns it as the device received it. */
  async function roundTrip(suffix) {
    const messageId = `${dev.deviceId}-${suffix}`;
    const expiry = new Date(Date.now() + 10 * 60_000);
    const body = `http body ${suffix} ✓`;
    const before = box.got.length;
    await send(dev.deviceId, body, richHeaders(messageId, expiry));
    const msg = (await box.take(before + 1))[before];
    assert.equal(msg.messageId, messageId);
    assert.equal(msg.correlationId, `${messageId}-corr`);
    assert.equal(Date.parse(msg.expiryTimeUtc), expiry.getTime(), `expiryTimeUtc ${msg.expiryTimeUtc}`);
    assert.equal(msg.to, `/devices/${dev.deviceId}/messages/deviceBound`);
    // The Http transport names application properties by their header.
    assert.equal(msg.properties.getValue('iothub-app-color'), 'red', JSON.stringify(propertiesOf(msg)));
    assert.equal(msg.properties.getValue('iothub-app-route'), 'a b/c&d=e%f+g?h#i', JSON.stringify(propertiesOf(msg)));
    assert.equal(bodyText(msg), body, 'body intact');
    assert.match(msg.lockToken || '', /^[0-9a-fA-F-]{36}$/, `lockToken ${msg.lockToken}`);
    return msg;
  }

  it('complete: Success feedback', async () => {
    const msg = await roundTrip('complete');
    const res = await withTimeout(client.complete(msg), OP_TIMEOUT, 'complete');
    assert.equal(res.constructor.name, 'MessageCompleted');
    assertFeedback(await feedbackFor(msg.messageId), dev, msg.messageId, 'Success');
    await expectDepth(dev.deviceId, 0, 'after complete');
  });

  it('reject: Rejected feedback', async () => {
    const msg = await roundTrip('reject');
    const res = await withTimeout(client.reject(msg), OP_TIMEOUT, 'reject');
    assert.equal(res.constructor.name, 'MessageRejected');
    assertFeedback(await feedbackFor(msg.messageId), dev, msg.messageId, 'Rejected');
    await expectDepth(dev.deviceId, 0, 'after reject (dead-lettered)');
  });

  it('abandon: the same message comes back and is then completed', async () => {
    const first = await roundTrip('abandon');
    const n = box.got.length;
    const res = await withTimeout(client.abandon(first), OP_TIMEOUT, 'abandon');
    assert.equal(res.constructor.name, 'MessageAbandoned');
    const again = (await box.take(n + 1))[n];
    assert.equal(again.messageId, first.messageId, 'the abandoned message is delivered again');
    assert.equal(bodyText(again), bodyText(first));
    assert.notEqual(again.lockToken, first.lockToken, 'a new delivery has a new lock token');
    await withTimeout(client.complete(again), OP_TIMEOUT, 'complete');
    assertFeedback(await feedbackFor(first.messageId), dev, first.messageId, 'Success');
    await expectDepth(dev.deviceId, 0, 'after the second delivery was completed');
  });
});

// ---------------------------------------------------------------------------------------------
// Service-side errors and limits.

describe('cloud-to-device: limits and errors', () => {
  it(`the queue holds ${QUEUE_LIMIT} messages; the next send is 403 DeviceMaximumQueueDepthExceeded; purge empties it`, async () => {
    const dev = await createDevice('c2d-full');
    // Ten at a time: every one of the first 50 must be accepted.
    for (let i = 0; i < QUEUE_LIMIT; i += 10) {
      await Promise.all(Array.from({ length: 10 }, (_, j) => send(dev.deviceId, `m${i + j}`)));
    }
    assert.equal(await queueDepth(dev.deviceId), QUEUE_LIMIT, 'cloudToDeviceMessageCount of a full queue');

    const over = await rest.sendC2D(dev.deviceId, 'one too many', { 'iothub-messageid': `${dev.deviceId}-over` });
    rest.assertHubError(over, 403, 'DeviceMaximumQueueDepthExceeded');
    assert.equal(await queueDepth(dev.deviceId), QUEUE_LIMIT, 'a refused send changes nothing');

    const purge = await rest.purgeC2D(dev.deviceId);
    assert.equal(purge.status, 200, rest.describeAnswer(purge));
    assert.deepEqual(purge.json(), { totalMessagesPurged: QUEUE_LIMIT, deviceId: dev.deviceId, moduleId: null });
    assert.equal(await queueDepth(dev.deviceId), 0, 'cloudToDeviceMessageCount after purge');

    await send(dev.deviceId, 'room again'); // the queue takes messages again
    assert.equal(await queueDepth(dev.deviceId), 1);
  });

  it('malformed sends are refused and queue nothing: 413 MessageTooLarge, 403 InvalidMessageExpiryTime, 400 ArgumentInvalid', async () => {
    const dev = await createDevice('c2d-bad');
    rest.assertHubError(await rest.sendC2D(dev.deviceId, Buffer.alloc(70 * 1024, 0x61)), 413, 'MessageTooLarge');
    rest.assertHubError(await rest.sendC2D(dev.deviceId, 'late',
      { 'iothub-expiry': new Date(Date.now() - 60_000).toISOString() }), 403, 'InvalidMessageExpiryTime');
    rest.assertHubError(await rest.sendC2D(dev.deviceId, 'bad ack', { 'iothub-ack': 'sometimes' }), 400, 'ArgumentInvalid');
    assert.equal(await queueDepth(dev.deviceId), 0, 'nothing was queued');
  });

  it('a send to an unknown device is 404 DeviceNotFound, as is one to a disabled device', async () => {
    const unknown = await rest.sendC2D(uniqueId('c2d-nosuch'), 'to nobody');
    rest.assertHubError(unknown, 404, 'DeviceNotFound');

    const disabled = await createDevice('c2d-disabled', { status: 'disabled' });
    const res = await rest.sendC2D(disabled.deviceId, 'to a disabled device');
    rest.assertHubError(res, 404, 'DeviceNotFound');
    assert.equal(await queueDepth(disabled.deviceId), 0);
  });
});

// ---------------------------------------------------------------------------------------------
// The CLI.

function roost(args, timeoutMs = 15_000) {
  const all = [...args, '--data-dir', process.env.ROOST_DATA_DIR];
  return new Promise((resolve, reject) => {
    execFile(process.env.ROOST_BIN, all, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`roost ${all.join(' ')}: ${err.message}\nstderr: ${stderr}\nstdout: ${stdout}`));
      else resolve(stdout);
    });
  });
}

describe('cloud-to-device: roost c2d', () => {
  it('roost c2d send reaches a device over Mqtt; roost c2d purge empties the queue', needsBin, async () => {
    const dev = await createDevice('c2d-cli');
    const client = clients.track(Client.fromConnectionString(dev.cs, Mqtt));
    await withTimeout(client.open(), OP_TIMEOUT, 'open');
    const box = inbox(client);

    const messageId = `${dev.deviceId}-cli`;
    const out = await roost(['c2d', 'send', dev.deviceId, '--data', 'from the cli', '--id', messageId,
      '--property', 'color=blue', '--content-type', 'text/plain', '--correlation-id', 'cli-corr']);
    assert.equal(out.trim(), messageId, 'roost c2d send prints the message id');
    const [msg] = await box.take(1);
    assert.equal(msg.messageId, messageId);
    assert.equal(msg.correlationId, 'cli-corr');
    assert.equal(msg.contentType, 'text/plain');
    assert.deepEqual(propertiesOf(msg), { color: 'blue' });
    assert.equal(bodyText(msg), 'from the cli');
    await clients.close(client);
    await expectDepth(dev.deviceId, 0, 'after the device took the CLI message');

    // With the device away, two more wait until purged.
    for (let i = 0; i < 2; i++) {
      const id = (await roost(['c2d', 'send', dev.deviceId, '--data', `waiting ${i}`])).trim();
      assert.match(id, GUID, 'without --id the hub assigns a GUID');
    }
    await expectDepth(dev.deviceId, 2, 'with two messages waiting');
    const purged = await roost(['c2d', 'purge', dev.deviceId]);
    assert.equal(purged.trim(), `purged 2 message(s) for ${dev.deviceId}`);
    assert.equal(await queueDepth(dev.deviceId), 0, 'after roost c2d purge');
  });
});
