'use strict';

// Device and module twins, driven the way an IoT Hub user drives them: the service side through
// azure-iothub's Registry and Twin, the device side through azure-iot-device's Client and
// ModuleClient over Mqtt (TLS, 8883) and MqttWs (WebSockets, 443).
//
// What the SDKs send (read from node_modules, versions in package.json):
// - Registry.getTwin / getModuleTwin: GET /twins/{id}[/modules/{mid}]. The Twin they return
//   keeps the body's etag (or '*' when the body has none).
// - Twin.update(patch) / Registry.updateTwin(id, patch, etag): PATCH /twins/{id} with
//   If-Match: "<etag>"; a 412 becomes InvalidEtagError.
// - device Client.getTwin(): subscribes to $iothub/twin/res/#, then publishes
//   $iothub/twin/GET/?$rid=<uuid>; twin.properties.reported.update(patch, cb) publishes
//   $iothub/twin/PATCH/properties/reported/?$rid=<uuid>. The SDK ignores the status in the answer
//   topic: an answer is an error only when its body has an `errorCode`, and then the callback
//   gets a plain Error carrying the body's `message`.
// - twin.on('properties.desired', cb) subscribes to $iothub/twin/PATCH/properties/desired/# and
//   calls cb with each pushed patch (with its "$version").

const { describe, it: nodeIt, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { Registry } = require('azure-iothub');
const { Client, ModuleClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');

const {
  errors,
  uniqueId,
  ownerRegistry,
  haveRoostBin,
  policyConnectionString,
  expectHttpError,
  deleteQuietly,
} = require('./helpers');
const {
  deviceConnectionString,
  withTimeout,
  describeError,
  clientTracker,
  updateReported,
  watchDesired,
} = require('./device-helpers');

const TEST_TIMEOUT = 30_000; // per test
const OP_TIMEOUT = 10_000; // per SDK call

const it = (name, opts, fn) => (fn
  ? nodeIt(name, { timeout: TEST_TIMEOUT, ...opts }, fn)
  : nodeIt(name, { timeout: TEST_TIMEOUT }, opts));

const UNAUTHORIZED = ['IotHubUnauthorizedAccess', 'IotHubUnauthorized'];
const needsBin = haveRoostBin ? {} : { skip: 'ROOST_BIN / ROOST_DATA_DIR not set' };

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
  const { responseBody: dev } = await withTimeout(registry.create({ deviceId }), OP_TIMEOUT, 'registry.create');
  const key = dev.authentication.symmetricKey.primaryKey;
  return { deviceId, key, cs: deviceConnectionString(deviceId, key) };
}

async function serviceTwin(deviceId) {
  const { responseBody: twin } = await withTimeout(registry.getTwin(deviceId), OP_TIMEOUT, 'registry.getTwin');
  return twin;
}

/** Opens a device client over `Transport` and reads its twin; returns { client, twin }. */
async function openWithTwin(cs, Transport, ClientClass = Client) {
  const client = clients.track(ClientClass.fromConnectionString(cs, Transport));
  await withTimeout(client.open(), OP_TIMEOUT, 'open');
  const twin = await withTimeout(client.getTwin(), OP_TIMEOUT, 'device getTwin');
  return { client, twin };
}

/** The twin as stored, without $metadata (for comparisons). */
function withoutMetadata(section) {
  const out = JSON.parse(JSON.stringify(section || {}));
  delete out.$metadata;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Service side only.

describe('twins: service API', () => {
  let dev;
  let first; // the twin as read right after create

  before(async () => {
    dev = await createDevice('twin-svc');
  });

  it('a new device has a twin: desired $version 1, empty tags, an etag', async () => {
    const { responseBody: twin, httpResponse } = await withTimeout(registry.getTwin(dev.deviceId), OP_TIMEOUT, 'getTwin');
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(twin.deviceId, dev.deviceId);
    assert.equal(twin.properties.desired.$version, 1, JSON.stringify(twin.properties));
    assert.equal(twin.properties.reported.$version, 1, JSON.stringify(twin.properties));
    assert.deepEqual(twin.tags, {});
    assert.deepEqual(withoutMetadata(twin.properties.desired), { $version: 1 });
    assert.deepEqual(withoutMetadata(twin.properties.reported), { $version: 1 });
    assert.equal(typeof twin.etag, 'string');
    // The SDK's Twin falls back to '*' when the body carries no etag.
    assert.ok(twin.etag.length > 0 && twin.etag !== '*', `etag ${JSON.stringify(twin.etag)}`);
    assert.equal(httpResponse.headers.etag, `"${twin.etag}"`, 'ETag header is the quoted etag');
    first = twin;
  });

  it('twin.update sets tags and desired properties and gives a new etag', async () => {
    assert.ok(first, 'depends on the test above');
    const twin = await serviceTwin(dev.deviceId);
    const { result: updated, message: res } = await withTimeout(
      twin.update({ tags: { site: 'n' }, properties: { desired: { interval: 30 } } }), OP_TIMEOUT, 'twin.update');
    assert.equal(res.statusCode, 200);
    assert.equal(updated, twin, 'update resolves with the same Twin object, refreshed');
    assert.deepEqual(updated.tags, { site: 'n' });
    assert.equal(updated.properties.desired.interval, 30);
    assert.equal(updated.properties.desired.$version, 2, JSON.stringify(updated.properties.desired));
    assert.equal(typeof updated.etag, 'string');
    assert.notEqual(updated.etag, first.etag, 'the etag changes with the twin');

    const stored = await serviceTwin(dev.deviceId);
    assert.deepEqual(stored.tags, { site: 'n' });
    assert.equal(stored.properties.desired.interval, 30);
    assert.equal(stored.etag, updated.etag);
  });

  it('registry.updateTwin with a stale etag is InvalidEtagError and changes nothing', async () => {
    assert.ok(first, 'depends on the tests above');
    const before = await serviceTwin(dev.deviceId);
    assert.notEqual(before.etag, first.etag, 'the twin must have changed since the first read');
    await expectHttpError(
      registry.updateTwin(dev.deviceId, { tags: { site: 'stale' } }, first.etag),
      errors.InvalidEtagError, { status: 412, code: 'PreconditionFailed' });
    const afterIt = await serviceTwin(dev.deviceId);
    assert.deepEqual(afterIt.tags, { site: 'n' }, 'the rejected patch was applied');
    assert.equal(afterIt.etag, before.etag);
  });

  it('registry.delete removes the twin; a re-created device starts with a fresh one', async () => {
    const d = await createDevice('twin-del');
    await withTimeout(registry.updateTwin(d.deviceId, { tags: { gone: true }, properties: { desired: { x: 1 } } }, '*'),
      OP_TIMEOUT, 'updateTwin');
    await withTimeout(registry.delete(d.deviceId), OP_TIMEOUT, 'registry.delete');
    await expectHttpError(registry.getTwin(d.deviceId), errors.DeviceNotFoundError,
      { status: 404, code: 'DeviceNotFound' });

    await withTimeout(registry.create({ deviceId: d.deviceId }), OP_TIMEOUT, 'registry.create again');
    const fresh = await serviceTwin(d.deviceId);
    assert.deepEqual(fresh.tags, {}, 'tags survived the deletion');
    assert.deepEqual(withoutMetadata(fresh.properties.desired), { $version: 1 }, 'desired survived the deletion');
    assert.deepEqual(withoutMetadata(fresh.properties.reported), { $version: 1 });
  });

  it('registryRead cannot read or update twins (UnauthorizedError: twins need ServiceConnect)', needsBin, async () => {
    const reader = Registry.fromConnectionString(policyConnectionString('registryRead'));
    await expectHttpError(reader.getTwin(dev.deviceId), errors.UnauthorizedError, { status: 401, code: UNAUTHORIZED });
    await expectHttpError(reader.updateTwin(dev.deviceId, { tags: { site: 'ro' } }, '*'), errors.UnauthorizedError,
      { status: 401, code: UNAUTHORIZED });
    assert.deepEqual((await serviceTwin(dev.deviceId)).tags, { site: 'n' });
  });
});

// ---------------------------------------------------------------------------------------------
// Devices and modules over MQTT.

const TRANSPORTS = [
  { name: 'Mqtt', Transport: Mqtt },
  { name: 'MqttWs', Transport: MqttWs },
];

for (const { name, Transport } of TRANSPORTS) {
  describe(`twins over ${name}`, () => {
    it('device getTwin, a reported update, and the service sees reported.temp and $version 2', async () => {
      const dev = await createDevice(`twin-rep-${name.toLowerCase()}`);
      const { client, twin } = await openWithTwin(dev.cs, Transport);
      assert.equal(twin.properties.desired.$version, 1, JSON.stringify(twin.properties.desired));
      assert.equal(twin.properties.reported.$version, 1, JSON.stringify(twin.properties.reported));

      await updateReported(twin, { temp: 21 });
      const stored = await serviceTwin(dev.deviceId);
      assert.equal(stored.properties.reported.temp, 21, JSON.stringify(stored.properties.reported));
      assert.equal(stored.properties.reported.$version, 2, JSON.stringify(stored.properties.reported));

      // The device reads it back too.
      const again = await withTimeout(client.getTwin(), OP_TIMEOUT, 'second getTwin');
      assert.equal(again.properties.reported.temp, 21);
      assert.equal(again.properties.reported.$version, 2);
      await clients.close(client);
    });

    it('a desired change made by the service is pushed to the device', async () => {
      const dev = await createDevice(`twin-des-${name.toLowerCase()}`);
      const { client, twin } = await openWithTwin(dev.cs, Transport);
      const desired = watchDesired(twin);
      await desired.subscribed();

      const { responseBody: updated } = await withTimeout(
        registry.updateTwin(dev.deviceId, { properties: { desired: { interval: 60 } } }, '*'), OP_TIMEOUT, 'updateTwin');
      const n = updated.properties.desired.$version;
      assert.equal(n, 2, JSON.stringify(updated.properties.desired));
      const got = await desired.next((p) => p.interval === 60, 5_000);
      assert.deepEqual(got, { interval: 60, $version: n });

      // A tag change is not pushed; a second desired change is, with the next $version.
      await withTimeout(registry.updateTwin(dev.deviceId, { tags: { t: 1 } }, '*'), OP_TIMEOUT, 'updateTwin tags');
      await withTimeout(registry.updateTwin(dev.deviceId, { properties: { desired: { interval: 61 } } }, '*'),
        OP_TIMEOUT, 'updateTwin 2');
      const second = await desired.next((p) => p.interval === 61, 5_000);
      assert.deepEqual(second, { interval: 61, $version: n + 1 });
      assert.equal(twin.properties.desired.interval, 61, 'the SDK merged the patches into its twin');
      await clients.close(client);
    });

    it('a bad reported update fails that request only: the client stays connected', async () => {
      const dev = await createDevice(`twin-bad-${name.toLowerCase()}`);
      const { client, twin } = await openWithTwin(dev.cs, Transport);
      let dropped = null;
      client.on('disconnect', (r) => { dropped = r || 'disconnect'; });

      const huge = {};
      for (let i = 0; i < 9; i += 1) huge[`k${i}`] = 'x'.repeat(4000); // 9 x 4 KB strings: over 32 KB in all
      const cases = [
        ['a key with a dot', { 'a.b': 1 }],
        ['a patch over 32 KB', huge],
      ];
      for (const [what, patch] of cases) {
        let err;
        try {
          await updateReported(twin, patch);
        } catch (e) {
          err = e;
        }
        assert.ok(err instanceof Error, `${what}: the update should fail, but it succeeded`);
        assert.doesNotMatch(err.message, /no answer within/, `${what}: ${describeError(err)}`);
        assert.ok(err.message.length > 0, `${what}: the error should carry the hub's message`);
      }
      assert.equal(dropped, null, `the client was disconnected: ${describeError(dropped && dropped.transportObj)}`);

      const again = await withTimeout(client.getTwin(), OP_TIMEOUT, 'getTwin after the errors');
      assert.equal(again.properties.reported.$version, 1, 'no rejected patch may be stored');
      await updateReported(twin, { ok: true });
      const stored = await serviceTwin(dev.deviceId);
      assert.deepEqual(withoutMetadata(stored.properties.reported), { ok: true, $version: 2 });
      await clients.close(client);
    });

    it('ModuleClient: getTwin, reported update, getModuleTwin, updateModuleTwin pushes desired', async () => {
      const dev = await createDevice(`twin-mod-${name.toLowerCase()}`);
      const moduleId = 'e2e-twin-module';
      const { responseBody: mod } = await withTimeout(registry.addModule({ deviceId: dev.deviceId, moduleId }),
        OP_TIMEOUT, 'addModule');
      const cs = deviceConnectionString(dev.deviceId, mod.authentication.symmetricKey.primaryKey, moduleId);
      const { client, twin } = await openWithTwin(cs, Transport, ModuleClient);
      assert.equal(twin.properties.desired.$version, 1);

      await updateReported(twin, { fw: '1.0' });
      const { responseBody: mtwin } = await withTimeout(registry.getModuleTwin(dev.deviceId, moduleId), OP_TIMEOUT,
        'getModuleTwin');
      assert.equal(mtwin.deviceId, dev.deviceId);
      assert.equal(mtwin.moduleId, moduleId);
      assert.equal(mtwin.properties.reported.fw, '1.0', JSON.stringify(mtwin.properties.reported));
      assert.equal(mtwin.properties.reported.$version, 2);
      const deviceTwin = await serviceTwin(dev.deviceId);
      assert.equal(deviceTwin.properties.reported.fw, undefined, "the module's report landed on the device twin");

      const desired = watchDesired(twin);
      await desired.subscribed();
      const { responseBody: updated } = await withTimeout(
        registry.updateModuleTwin(dev.deviceId, moduleId, { properties: { desired: { mode: 'eco' } } }, mtwin.etag),
        OP_TIMEOUT, 'updateModuleTwin');
      assert.equal(updated.moduleId, moduleId);
      assert.equal(updated.properties.desired.mode, 'eco');
      const n = updated.properties.desired.$version;
      const got = await desired.next((p) => p.mode === 'eco', 5_000);
      assert.deepEqual(got, { mode: 'eco', $version: n });

      await expectHttpError(
        registry.updateModuleTwin(dev.deviceId, moduleId, { tags: { x: 1 } }, mtwin.etag),
        errors.InvalidEtagError, { status: 412, code: 'PreconditionFailed' });
      await clients.close(client);
    });
  });
}
