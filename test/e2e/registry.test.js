'use strict';

// Identity registry, driven through the unmodified `azure-iothub` Registry against a real roost.
// Request shapes the SDK sends (from node_modules/azure-iothub/dist/registry.js):
//   create  PUT    /devices/{id}                 (no If-Match)
//   update  PUT    /devices/{id}                 If-Match: "*"
//   delete  DELETE /devices/{id}                 If-Match: "*"
//   bulk    POST   /devices                      [{id, importMode: create|Update|Delete, ...}]
//   modules PUT/GET/DELETE /devices/{id}/modules/{mid}; updateModule/removeModule send If-Match "<etag>"

const { describe, it: nodeIt, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const { Registry, SharedAccessSignature } = require('azure-iothub');
const {
  errors,
  hub,
  uniqueId,
  ownerRegistry,
  haveRoostBin,
  policyConnectionString,
  randomKey,
  randomThumbprint,
  assertGeneratedKey,
  describeHttp,
  parseLegacyErrorBody,
  expectHttpError,
  eventually,
  deleteQuietly,
} = require('./helpers');

const TIMEOUT = 30_000;

// A rejected credential or a policy without the needed right is a 401. The fact sheet names
// 401002 IotHubUnauthorizedAccess for it; the IoT Hub troubleshooting guide uses 401003
// IotHubUnauthorized for a bad signature. The Node SDK maps any 401 to UnauthorizedError, so
// accept either name (but still require header and body to agree).
const UNAUTHORIZED = ['IotHubUnauthorizedAccess', 'IotHubUnauthorized'];
const needsBin = haveRoostBin ? {} : { skip: 'ROOST_BIN / ROOST_DATA_DIR not set' };

// Every test gets its own time limit (a suite-level timeout would cap the whole suite).
const it = (name, fn) => nodeIt(name, { timeout: TIMEOUT }, fn);

const registry = ownerRegistry();
const created = new Set(); // device ids to remove at the end

async function createDevice(description) {
  created.add(description.deviceId);
  return registry.create(description);
}

after(async () => {
  await deleteQuietly(registry, created);
});

// removeModule(moduleObject) has no working promise form in azure-iothub 1.16.6: the promise
// wrapper passes the callback in the third argument while the module-object overload reads it
// from the second, so it throws "Argument 'done' cannot be falsy". Use the callback form.
function removeModuleObject(reg, mod) {
  return new Promise((resolve, reject) => {
    reg.removeModule(mod, (err, responseBody, httpResponse) => {
      if (err) reject(err);
      else resolve({ responseBody, httpResponse });
    });
  });
}

describe('device CRUD', () => {
  const plainId = uniqueId('plain');
  let plain; // the Device returned by create

  it('create with only a deviceId generates two 44-char SAS keys', async () => {
    const { responseBody: dev, httpResponse } = await createDevice({ deviceId: plainId });
    assert.equal(httpResponse.statusCode, 200);
    assert.match(httpResponse.headers['content-type'] || '', /application\/json/);
    assert.equal(dev.deviceId, plainId);
    assert.equal(dev.status, 'enabled');
    assert.equal(dev.connectionState, 'Disconnected');
    assert.equal(typeof dev.etag, 'string');
    assert.ok(dev.etag.length > 0, 'etag must not be empty');
    assert.equal(typeof dev.generationId, 'string');
    assert.ok(dev.generationId.length > 0, 'generationId must not be empty');
    assert.equal(Number(dev.cloudToDeviceMessageCount), 0);
    assert.equal(dev.authentication.type, 'sas');
    assertGeneratedKey(dev.authentication.symmetricKey.primaryKey, 'primaryKey');
    assertGeneratedKey(dev.authentication.symmetricKey.secondaryKey, 'secondaryKey');
    assert.notEqual(dev.authentication.symmetricKey.primaryKey, dev.authentication.symmetricKey.secondaryKey);
    plain = dev;
  });

  it('get returns the stored identity', async () => {
    assert.ok(plain, 'depends on the create test');
    const { responseBody: dev, httpResponse } = await registry.get(plainId);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(dev.deviceId, plainId);
    assert.equal(dev.etag, plain.etag);
    assert.equal(dev.generationId, plain.generationId);
    assert.equal(dev.status, 'enabled');
    assert.deepEqual(dev.authentication.symmetricKey, plain.authentication.symmetricKey);
  });

  it('create with custom keys (32, 16 and 36 byte) keeps them', async () => {
    const cases = [
      [randomKey(32), randomKey(32)],
      [randomKey(16), Buffer.from(crypto.randomUUID()).toString('base64')],
    ];
    for (const [primaryKey, secondaryKey] of cases) {
      const deviceId = uniqueId('keys');
      const { responseBody: dev } = await createDevice({
        deviceId,
        authentication: { symmetricKey: { primaryKey, secondaryKey } },
      });
      assert.equal(dev.authentication.type, 'sas');
      assert.equal(dev.authentication.symmetricKey.primaryKey, primaryKey);
      assert.equal(dev.authentication.symmetricKey.secondaryKey, secondaryKey);
      const { responseBody: got } = await registry.get(deviceId);
      assert.equal(got.authentication.symmetricKey.primaryKey, primaryKey);
      assert.equal(got.authentication.symmetricKey.secondaryKey, secondaryKey);
    }
  });

  it('create selfSigned with SHA-1 thumbprints', async () => {
    const deviceId = uniqueId('x509');
    const primaryThumbprint = randomThumbprint();
    const secondaryThumbprint = randomThumbprint();
    // The SDK fills in type "selfSigned" because a thumbprint is present.
    const { responseBody: dev } = await createDevice({
      deviceId,
      authentication: { x509Thumbprint: { primaryThumbprint, secondaryThumbprint } },
    });
    for (const d of [dev, (await registry.get(deviceId)).responseBody]) {
      assert.equal(d.authentication.type, 'selfSigned');
      assert.equal(String(d.authentication.x509Thumbprint.primaryThumbprint).toUpperCase(), primaryThumbprint);
      assert.equal(String(d.authentication.x509Thumbprint.secondaryThumbprint).toUpperCase(), secondaryThumbprint);
      const sk = d.authentication.symmetricKey || {};
      assert.ok(!sk.primaryKey && !sk.secondaryKey, `selfSigned device must not get SAS keys: ${JSON.stringify(sk)}`);
    }
  });

  it('create disabled with a statusReason', async () => {
    const deviceId = uniqueId('disabled');
    const { responseBody: dev } = await createDevice({ deviceId, status: 'disabled', statusReason: 'parked' });
    assert.equal(dev.status, 'disabled');
    assert.equal(dev.statusReason, 'parked');
    const { responseBody: got } = await registry.get(deviceId);
    assert.equal(got.status, 'disabled');
    assert.equal(got.statusReason, 'parked');
  });

  it('list includes the created ids', async () => {
    const { responseBody: devices, httpResponse } = await registry.list();
    assert.equal(httpResponse.statusCode, 200);
    assert.ok(Array.isArray(devices));
    const ids = new Set(devices.map((d) => d.deviceId));
    for (const id of created) {
      assert.ok(ids.has(id), `list() lacks ${id}`);
    }
  });

  it('update sets status disabled and statusReason, keeps keys and generationId', async () => {
    const { responseBody: before } = await registry.get(plainId);
    const desc = JSON.parse(JSON.stringify(before));
    desc.status = 'disabled';
    desc.statusReason = 'maintenance';
    const { responseBody: dev, httpResponse } = await registry.update(desc);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(dev.deviceId, plainId);
    assert.equal(dev.status, 'disabled');
    assert.equal(dev.statusReason, 'maintenance');
    assert.equal(dev.generationId, before.generationId);
    assert.deepEqual(dev.authentication.symmetricKey, before.authentication.symmetricKey);
    assert.notEqual(dev.etag, before.etag, 'etag should change on update');

    const { responseBody: got } = await registry.get(plainId);
    assert.equal(got.status, 'disabled');
    assert.equal(got.statusReason, 'maintenance');
    assert.equal(got.etag, dev.etag);
  });

  it('update can rotate a key and re-enable', async () => {
    const { responseBody: before } = await registry.get(plainId);
    const desc = JSON.parse(JSON.stringify(before));
    const newSecondary = randomKey(32);
    desc.authentication.symmetricKey.secondaryKey = newSecondary;
    desc.status = 'enabled';
    const { responseBody: dev } = await registry.update(desc);
    assert.equal(dev.status, 'enabled');
    assert.equal(dev.authentication.symmetricKey.primaryKey, before.authentication.symmetricKey.primaryKey);
    assert.equal(dev.authentication.symmetricKey.secondaryKey, newSecondary);
    const { responseBody: got } = await registry.get(plainId);
    assert.equal(got.authentication.symmetricKey.secondaryKey, newSecondary);
  });

  it('create twice fails with DeviceAlreadyExistsError (409)', async () => {
    await expectHttpError(registry.create({ deviceId: plainId }), errors.DeviceAlreadyExistsError,
      { status: 409, code: 'DeviceAlreadyExists' });
  });

  it('update of a missing device fails with DeviceNotFoundError (404)', async () => {
    const deviceId = uniqueId('missing');
    created.add(deviceId); // in case the server wrongly upserts
    await expectHttpError(registry.update({ deviceId, status: 'disabled' }), errors.DeviceNotFoundError,
      { status: 404, code: 'DeviceNotFound' });
    await expectHttpError(registry.get(deviceId), errors.DeviceNotFoundError, { status: 404 });
  });

  it('delete returns 204, then get and delete fail with DeviceNotFoundError', async () => {
    const { httpResponse } = await registry.delete(plainId);
    assert.equal(httpResponse.statusCode, 204);
    created.delete(plainId);
    await expectHttpError(registry.get(plainId), errors.DeviceNotFoundError, { status: 404, code: 'DeviceNotFound' });
    await expectHttpError(registry.delete(plainId), errors.DeviceNotFoundError, { status: 404, code: 'DeviceNotFound' });
    const { responseBody: devices } = await registry.list();
    assert.ok(!devices.some((d) => d.deviceId === plainId), 'deleted device still listed');
  });

  it('re-creating a deleted id gives a new generationId', async () => {
    assert.ok(plain, 'depends on the create test');
    const { responseBody: dev } = await createDevice({ deviceId: plainId });
    assert.notEqual(dev.generationId, plain.generationId);
  });

  it('get/delete of an id that never existed fail with DeviceNotFoundError', async () => {
    const deviceId = uniqueId('never');
    await expectHttpError(registry.get(deviceId), errors.DeviceNotFoundError, { status: 404, code: 'DeviceNotFound' });
    await expectHttpError(registry.delete(deviceId), errors.DeviceNotFoundError, { status: 404, code: 'DeviceNotFound' });
  });

  it('error responses use the legacy body and the iothub-errorcode header', async () => {
    const deviceId = uniqueId('never');
    const err = await expectHttpError(registry.get(deviceId), errors.DeviceNotFoundError, { status: 404 });
    assert.match(err.response.headers['content-type'] || '', /application\/json/, describeHttp(err));
    const { code, text, body } = parseLegacyErrorBody(err);
    assert.equal(code, 'DeviceNotFound');
    assert.ok(text.trim().length > 0);
    assert.equal(typeof body.ExceptionMessage, 'string', describeHttp(err));
    assert.match(body.ExceptionMessage, /^Tracking ID:/, describeHttp(err));
    assert.equal(err.response.headers['iothub-errorcode'], 'DeviceNotFound');
  });
});

describe('device ids', () => {
  it('a 128-char id is accepted', async () => {
    const prefix = uniqueId('long') + '-';
    const deviceId = prefix + 'x'.repeat(128 - prefix.length);
    assert.equal(deviceId.length, 128);
    const { responseBody: dev } = await createDevice({ deviceId });
    assert.equal(dev.deviceId, deviceId);
    assert.equal((await registry.get(deviceId)).responseBody.deviceId, deviceId);
  });

  it('an id with every allowed special character round-trips', async () => {
    // Allowed: alphanumerics and - . + % _ # * ? ! ( ) , = @ $ '  (sent percent-encoded by the SDK)
    const deviceId = uniqueId('sp') + "-.+%_#*?!(),=@$'";
    const { responseBody: dev } = await createDevice({ deviceId });
    assert.equal(dev.deviceId, deviceId);
    assert.equal((await registry.get(deviceId)).responseBody.deviceId, deviceId);
    const { responseBody: devices } = await registry.list();
    assert.ok(devices.some((d) => d.deviceId === deviceId), 'special-character id missing from list');
    await registry.delete(deviceId);
    created.delete(deviceId);
    await expectHttpError(registry.get(deviceId), errors.DeviceNotFoundError, { status: 404 });
  });

  const illegal = [
    ['129 characters', () => { const p = uniqueId('long') + '-'; return p + 'y'.repeat(129 - p.length); }],
    ['a space', () => uniqueId('bad') + ' x'],
    ['a slash', () => uniqueId('bad') + '/x'],
    ['a non-ASCII character', () => uniqueId('bad') + '\u00e9'],
  ];
  for (const [what, makeId] of illegal) {
    it(`an id containing ${what} is rejected with ArgumentError (400)`, async () => {
      const deviceId = makeId();
      created.add(deviceId);
      const err = await expectHttpError(registry.create({ deviceId }), errors.ArgumentError, { status: 400 });
      parseLegacyErrorBody(err);
    });
  }
});

describe('bulk operations', () => {
  const ids = [uniqueId('bulk'), uniqueId('bulk'), uniqueId('bulk')];
  const customPrimary = randomKey(32);
  const customSecondary = randomKey(32);

  it('addDevices creates all devices', async () => {
    ids.forEach((id) => created.add(id));
    const { responseBody: result, httpResponse } = await registry.addDevices([
      { deviceId: ids[0] },
      { deviceId: ids[1], authentication: { symmetricKey: { primaryKey: customPrimary, secondaryKey: customSecondary } } },
      { deviceId: ids[2], status: 'disabled' },
    ]);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(result.isSuccessful, true, JSON.stringify(result));
    assert.deepEqual(result.errors, []);

    const d0 = (await registry.get(ids[0])).responseBody;
    assertGeneratedKey(d0.authentication.symmetricKey.primaryKey, 'bulk primaryKey');
    assertGeneratedKey(d0.authentication.symmetricKey.secondaryKey, 'bulk secondaryKey');
    assert.equal(d0.status, 'enabled');
    const d1 = (await registry.get(ids[1])).responseBody;
    assert.equal(d1.authentication.symmetricKey.primaryKey, customPrimary);
    assert.equal(d1.authentication.symmetricKey.secondaryKey, customSecondary);
    const d2 = (await registry.get(ids[2])).responseBody;
    assert.equal(d2.status, 'disabled');
  });

  it('updateDevices (forced) updates all devices', async () => {
    const current = [];
    for (const id of ids) current.push((await registry.get(id)).responseBody);
    const changed = current.map((d) => {
      const desc = JSON.parse(JSON.stringify(d));
      desc.status = 'disabled';
      desc.statusReason = 'bulk-update';
      return desc;
    });
    const { responseBody: result, httpResponse } = await registry.updateDevices(changed, true);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(result.isSuccessful, true, JSON.stringify(result));
    assert.deepEqual(result.errors, []);
    for (const before of current) {
      const { responseBody: got } = await registry.get(before.deviceId);
      assert.equal(got.status, 'disabled');
      assert.equal(got.statusReason, 'bulk-update');
      assert.deepEqual(got.authentication.symmetricKey, before.authentication.symmetricKey);
    }
  });

  it('removeDevices (forced) deletes all devices', async () => {
    const { responseBody: result, httpResponse } = await registry.removeDevices(ids.map((deviceId) => ({ deviceId })), true);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(result.isSuccessful, true, JSON.stringify(result));
    assert.deepEqual(result.errors, []);
    for (const id of ids) {
      await expectHttpError(registry.get(id), errors.DeviceNotFoundError, { status: 404 });
      created.delete(id);
    }
  });

  it('a duplicate id in one bulk request fails with ArgumentError (400) and creates nothing', async (t) => {
    const dup = uniqueId('dup');
    created.add(dup);
    const err = await expectHttpError(registry.addDevices([{ deviceId: dup }, { deviceId: dup }]),
      errors.ArgumentError, { status: 400 });
    t.diagnostic(`duplicate-id response: ${describeHttp(err)}`);
    await expectHttpError(registry.get(dup), errors.DeviceNotFoundError, { status: 404 });
  });

  it('adding an existing id reports DeviceAlreadyExists in the bulk result (400)', async () => {
    const existing = uniqueId('exists');
    const fresh = uniqueId('fresh');
    await createDevice({ deviceId: existing });
    created.add(fresh);
    const err = await expectHttpError(registry.addDevices([{ deviceId: existing }, { deviceId: fresh }]),
      errors.ArgumentError, { status: 400 });
    let body;
    try {
      body = JSON.parse(err.responseBody);
    } catch (_) {
      assert.fail(`bulk failure body is not JSON: ${describeHttp(err)}`);
    }
    assert.equal(body.isSuccessful, false, describeHttp(err));
    assert.ok(Array.isArray(body.errors), describeHttp(err));
    const e = body.errors.find((x) => x.deviceId === existing);
    assert.ok(e, `no error entry for ${existing}: ${describeHttp(err)}`);
    assert.equal(e.errorCode, 'DeviceAlreadyExists', describeHttp(err));
  });
});

describe('modules', () => {
  const deviceId = uniqueId('moddev');
  const m1 = uniqueId('mod');
  const m2 = uniqueId('mod');
  let m1Initial;

  before(async () => {
    await createDevice({ deviceId });
  });

  it('addModule creates a module with generated keys', async () => {
    const { responseBody: mod, httpResponse } = await registry.addModule({ deviceId, moduleId: m1 });
    assert.ok([200, 201].includes(httpResponse.statusCode), `status ${httpResponse.statusCode}`);
    assert.equal(mod.deviceId, deviceId);
    assert.equal(mod.moduleId, m1);
    assert.equal(typeof mod.etag, 'string');
    assert.ok(mod.etag.length > 0);
    assert.equal(mod.authentication.type, 'sas');
    assertGeneratedKey(mod.authentication.symmetricKey.primaryKey, 'module primaryKey');
    assertGeneratedKey(mod.authentication.symmetricKey.secondaryKey, 'module secondaryKey');
    m1Initial = mod;
  });

  it('addModule with custom keys keeps them', async () => {
    const primaryKey = randomKey(32);
    const secondaryKey = randomKey(32);
    const { responseBody: mod } = await registry.addModule({
      deviceId, moduleId: m2, authentication: { symmetricKey: { primaryKey, secondaryKey } },
    });
    assert.equal(mod.authentication.symmetricKey.primaryKey, primaryKey);
    assert.equal(mod.authentication.symmetricKey.secondaryKey, secondaryKey);
  });

  it('addModule twice fails with 409', async () => {
    await expectHttpError(registry.addModule({ deviceId, moduleId: m1 }), errors.DeviceAlreadyExistsError,
      { status: 409, code: 'ModuleAlreadyExistsOnDevice' });
  });

  it('getModule returns the module', async () => {
    assert.ok(m1Initial, 'depends on addModule');
    const { responseBody: mod, httpResponse } = await registry.getModule(deviceId, m1);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(mod.deviceId, deviceId);
    assert.equal(mod.moduleId, m1);
    assert.equal(mod.etag, m1Initial.etag);
    assert.deepEqual(mod.authentication.symmetricKey, m1Initial.authentication.symmetricKey);
  });

  it('getModulesOnDevice lists both modules', async () => {
    const { responseBody: mods, httpResponse } = await registry.getModulesOnDevice(deviceId);
    assert.equal(httpResponse.statusCode, 200);
    assert.ok(Array.isArray(mods), JSON.stringify(mods));
    const ids = mods.map((m) => m.moduleId).sort();
    assert.deepEqual(ids, [m1, m2].sort());
    for (const m of mods) assert.equal(m.deviceId, deviceId);
  });

  it('updateModule with the current etag swaps the keys', async () => {
    const { responseBody: mod } = await registry.getModule(deviceId, m1);
    const desc = JSON.parse(JSON.stringify(mod));
    desc.authentication.symmetricKey = {
      primaryKey: mod.authentication.symmetricKey.secondaryKey,
      secondaryKey: mod.authentication.symmetricKey.primaryKey,
    };
    const { responseBody: updated, httpResponse } = await registry.updateModule(desc);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(updated.moduleId, m1);
    assert.notEqual(updated.etag, mod.etag, 'etag should change on update');
    const { responseBody: got } = await registry.getModule(deviceId, m1);
    assert.deepEqual(got.authentication.symmetricKey, desc.authentication.symmetricKey);
  });

  it('updateModule with forceUpdate ignores the etag', async () => {
    const { responseBody: mod } = await registry.getModule(deviceId, m1);
    const desc = JSON.parse(JSON.stringify(mod));
    delete desc.etag;
    const primaryKey = randomKey(32);
    desc.authentication.symmetricKey.primaryKey = primaryKey;
    await registry.updateModule(desc, true);
    const { responseBody: got } = await registry.getModule(deviceId, m1);
    assert.equal(got.authentication.symmetricKey.primaryKey, primaryKey);
  });

  it('updateModule with a stale etag fails with InvalidEtagError (412)', async () => {
    assert.ok(m1Initial, 'depends on addModule');
    const { responseBody: mod } = await registry.getModule(deviceId, m1);
    assert.notEqual(mod.etag, m1Initial.etag);
    const desc = JSON.parse(JSON.stringify(mod));
    desc.etag = m1Initial.etag; // a real etag, but out of date
    desc.authentication.symmetricKey.primaryKey = randomKey(32);
    await expectHttpError(registry.updateModule(desc), errors.InvalidEtagError,
      { status: 412, code: 'PreconditionFailed' });
    desc.etag = 'stale';
    await expectHttpError(registry.updateModule(desc), errors.InvalidEtagError, { status: 412 });
    const { responseBody: got } = await registry.getModule(deviceId, m1);
    assert.deepEqual(got.authentication.symmetricKey, mod.authentication.symmetricKey, 'rejected update was applied');
  });

  it('removeModule with a stale etag fails with InvalidEtagError (412)', async () => {
    assert.ok(m1Initial, 'depends on addModule');
    await expectHttpError(removeModuleObject(registry, { deviceId, moduleId: m1, etag: m1Initial.etag }),
      errors.InvalidEtagError, { status: 412, code: 'PreconditionFailed' });
    await registry.getModule(deviceId, m1); // still there
  });

  it('removeModule with the current etag deletes it', async () => {
    const { responseBody: mod } = await registry.getModule(deviceId, m1);
    const { httpResponse } = await removeModuleObject(registry, mod);
    assert.equal(httpResponse.statusCode, 204);
    const err = await expectHttpError(registry.getModule(deviceId, m1), Error, { status: 404 });
    assert.equal(err.response.headers['iothub-errorcode'], 'ModuleNotFound', describeHttp(err));
  });

  it('removeModule(deviceId, moduleId) deletes it', async () => {
    const { httpResponse } = await registry.removeModule(deviceId, m2);
    assert.equal(httpResponse.statusCode, 204);
    await expectHttpError(registry.getModule(deviceId, m2), Error, { status: 404 });
    const { responseBody: mods } = await registry.getModulesOnDevice(deviceId);
    assert.deepEqual(mods, []);
  });

  it('deleting a device deletes its modules', async () => {
    const moduleId = uniqueId('mod');
    await registry.addModule({ deviceId, moduleId });
    await registry.delete(deviceId);
    await createDevice({ deviceId });
    const { responseBody: mods } = await registry.getModulesOnDevice(deviceId);
    assert.deepEqual(mods, [], 'modules survived the deletion of their device');
  });
});

describe('registry statistics', () => {
  async function stats() {
    const { responseBody: s, httpResponse } = await registry.getRegistryStatistics();
    assert.equal(httpResponse.statusCode, 200);
    for (const k of ['totalDeviceCount', 'enabledDeviceCount', 'disabledDeviceCount']) {
      assert.equal(typeof s[k], 'number', `${k} in ${JSON.stringify(s)}`);
    }
    assert.equal(s.totalDeviceCount, s.enabledDeviceCount + s.disabledDeviceCount, JSON.stringify(s));
    return s;
  }

  it('counts follow creates and deletes', async () => {
    const s0 = await stats();
    const on = uniqueId('stat');
    const off = uniqueId('stat');
    await createDevice({ deviceId: on });
    await createDevice({ deviceId: off, status: 'disabled' });
    const want1 = { total: s0.totalDeviceCount + 2, enabled: s0.enabledDeviceCount + 1, disabled: s0.disabledDeviceCount + 1 };
    let s1 = await eventually(async () => {
      const s = await stats();
      return s.totalDeviceCount === want1.total && s.enabledDeviceCount === want1.enabled &&
        s.disabledDeviceCount === want1.disabled ? s : null;
    });
    if (!s1) s1 = await stats();
    assert.deepEqual(
      { total: s1.totalDeviceCount, enabled: s1.enabledDeviceCount, disabled: s1.disabledDeviceCount }, want1,
      `before: ${JSON.stringify(s0)}`);

    await registry.delete(on);
    await registry.delete(off);
    created.delete(on);
    created.delete(off);
    const s2 = await eventually(async () => {
      const s = await stats();
      return s.totalDeviceCount === s0.totalDeviceCount ? s : null;
    }) || await stats();
    assert.equal(s2.totalDeviceCount, s0.totalDeviceCount);
    assert.equal(s2.enabledDeviceCount, s0.enabledDeviceCount);
    assert.equal(s2.disabledDeviceCount, s0.disabledDeviceCount);
  });
});

describe('authorization', () => {
  it('a connection string with a wrong key gets UnauthorizedError (401)', async () => {
    const bad = Registry.fromConnectionString(
      `HostName=${hub.HostName};SharedAccessKeyName=${hub.SharedAccessKeyName};SharedAccessKey=${randomKey(32)}`);
    await expectHttpError(bad.list(), errors.UnauthorizedError, { status: 401, code: UNAUTHORIZED });
    await expectHttpError(bad.create({ deviceId: uniqueId('unauth') }), errors.UnauthorizedError, { status: 401, code: UNAUTHORIZED });
  });

  it('an unknown policy name gets UnauthorizedError (401)', async () => {
    const bad = Registry.fromConnectionString(
      `HostName=${hub.HostName};SharedAccessKeyName=nosuchpolicy;SharedAccessKey=${hub.SharedAccessKey}`);
    await expectHttpError(bad.list(), errors.UnauthorizedError, { status: 401, code: UNAUTHORIZED });
  });

  it('a valid SAS token works through fromSharedAccessSignature', async () => {
    const se = Math.floor(Date.now() / 1000) + 600;
    const sas = SharedAccessSignature.create(hub.HostName, hub.SharedAccessKeyName, hub.SharedAccessKey, se).toString();
    const r = Registry.fromSharedAccessSignature(sas);
    const { responseBody: devices } = await r.list();
    assert.ok(Array.isArray(devices));
  });

  it('an expired SAS token gets UnauthorizedError (401)', async () => {
    const se = Math.floor(Date.now() / 1000) - 600;
    const sas = SharedAccessSignature.create(hub.HostName, hub.SharedAccessKeyName, hub.SharedAccessKey, se).toString();
    const r = Registry.fromSharedAccessSignature(sas);
    await expectHttpError(r.list(), errors.UnauthorizedError, { status: 401, code: UNAUTHORIZED });
  });

  describe('shared access policies', needsBin, () => {
    const existing = uniqueId('policy');

    before(async () => {
      await createDevice({ deviceId: existing });
    });

    it('registryRead can get and list', async () => {
      const r = Registry.fromConnectionString(policyConnectionString('registryRead'));
      assert.equal((await r.get(existing)).responseBody.deviceId, existing);
      const { responseBody: devices } = await r.list();
      assert.ok(devices.some((d) => d.deviceId === existing));
      await r.getRegistryStatistics();
    });

    it('registryRead cannot create, update or delete (401)', async () => {
      const r = Registry.fromConnectionString(policyConnectionString('registryRead'));
      const deviceId = uniqueId('ro');
      created.add(deviceId);
      await expectHttpError(r.create({ deviceId }), errors.UnauthorizedError,
        { status: 401, code: UNAUTHORIZED });
      await expectHttpError(registry.get(deviceId), errors.DeviceNotFoundError, { status: 404 });
      const { responseBody: dev } = await registry.get(existing);
      const desc = JSON.parse(JSON.stringify(dev));
      desc.status = 'disabled';
      await expectHttpError(r.update(desc), errors.UnauthorizedError, { status: 401, code: UNAUTHORIZED });
      await expectHttpError(r.delete(existing), errors.UnauthorizedError, { status: 401, code: UNAUTHORIZED });
      await expectHttpError(r.addDevices([{ deviceId }]), errors.UnauthorizedError, { status: 401, code: UNAUTHORIZED });
      assert.equal((await registry.get(existing)).responseBody.status, 'enabled');
    });

    it('registryReadWrite can create and delete', async () => {
      const r = Registry.fromConnectionString(policyConnectionString('registryReadWrite'));
      const deviceId = uniqueId('rw');
      created.add(deviceId);
      const { responseBody: dev } = await r.create({ deviceId });
      assert.equal(dev.deviceId, deviceId);
      await r.delete(deviceId);
      created.delete(deviceId);
    });

    for (const policy of ['service', 'device']) {
      it(`${policy} policy (no registry permission) cannot create or list devices (401)`, async () => {
        const r = Registry.fromConnectionString(policyConnectionString(policy));
        const deviceId = uniqueId(policy);
        created.add(deviceId);
        await expectHttpError(r.create({ deviceId }), errors.UnauthorizedError, { status: 401, code: UNAUTHORIZED });
        await expectHttpError(r.list(), errors.UnauthorizedError, { status: 401, code: UNAUTHORIZED });
      });
    }

    it('iothubowner from `roost connection-string` matches the exported one', () => {
      const owner = policyConnectionString('iothubowner');
      assert.match(owner, /^HostName=[^;]+;SharedAccessKeyName=iothubowner;SharedAccessKey=[A-Za-z0-9+/=]+$/);
      assert.ok(owner.includes(`HostName=${hub.HostName};`));
    });
  });
});
