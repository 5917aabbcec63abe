'use strict';

// Twin queries through azure-iothub's Registry.createQuery, as an IoT Hub user runs them.
//
// What the SDK does (read from node_modules, versions in package.json):
// - createQuery(sql, pageSize) returns a Query; each next()/nextAsTwin() POSTs /devices/query
//   with {"query": sql}, x-ms-max-item-count: pageSize and, after the first page,
//   x-ms-continuation: <token>. hasMoreResults is true until an answer comes without an
//   x-ms-continuation header. next() resolves with { result: the parsed JSON array, message };
//   nextAsTwin() wraps each result in a Twin.
// - A 400 becomes ArgumentError, a 401 UnauthorizedError (RestApiClient.translateError).

const { describe, it: nodeIt, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { Registry } = require('azure-iothub');
const { Client, ModuleClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const {
  errors,
  uniqueId,
  ownerRegistry,
  haveRoostBin,
  policyConnectionString,
  expectHttpError,
  eventually,
  deleteQuietly,
} = require('./helpers');
const {
  deviceConnectionString,
  withTimeout,
  clientTracker,
  updateReported,
} = require('./device-helpers');

const TEST_TIMEOUT = 30_000; // per test
const OP_TIMEOUT = 10_000; // per SDK call
const MAX_PAGES = 20; // a query loop that runs longer than this is a bug, not a slow hub

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

/**
 * Runs `query` page by page with `method` ('next' or 'nextAsTwin') until hasMoreResults is false.
 * Returns { rows, pages } (pages: the number of results on each page).
 */
async function drain(query, method = 'next') {
  const rows = [];
  const pages = [];
  while (query.hasMoreResults) {
    assert.ok(pages.length < MAX_PAGES, `still hasMoreResults after ${MAX_PAGES} pages (${rows.length} rows)`);
    const { result } = await withTimeout(query[method](), OP_TIMEOUT, `query.${method}`);
    assert.ok(Array.isArray(result), `a page is an array: ${JSON.stringify(result)}`);
    rows.push(...result);
    pages.push(result.length);
  }
  return { rows, pages };
}

function q(sql, pageSize, reg = registry) {
  return reg.createQuery(sql, pageSize);
}

describe('queries', () => {
  // Site names unique to this run, so other tests' and earlier runs' twins never match.
  const siteA = uniqueId('site-a');
  const siteB = uniqueId('site-b');
  const inA = [];
  const inB = [];

  before(async () => {
    for (let i = 0; i < 5; i += 1) {
      const { deviceId } = await createDevice('q');
      const site = i < 3 ? siteA : siteB;
      await withTimeout(registry.updateTwin(deviceId, { tags: { site } }, '*'), OP_TIMEOUT, 'updateTwin');
      (i < 3 ? inA : inB).push(deviceId);
    }
  });

  it("WHERE tags.site = 'A' with page size 2: every match once, then hasMoreResults false", async () => {
    const query = q(`SELECT * FROM devices WHERE tags.site = '${siteA}'`, 2);
    const { rows, pages } = await drain(query, 'nextAsTwin');
    const ids = rows.map((t) => t.deviceId);
    assert.deepEqual([...ids].sort(), [...inA].sort(), `pages ${JSON.stringify(pages)}`);
    assert.deepEqual(pages, [2, 1], 'two results on the first page, one on the last');
    assert.equal(query.hasMoreResults, false);
    for (const twin of rows) {
      assert.equal(twin.constructor.name, 'Twin');
      assert.deepEqual(twin.tags, { site: siteA });
      assert.equal(twin.properties.desired.$version, 1, JSON.stringify(twin.properties));
      assert.equal(typeof twin.etag, 'string');
      assert.notEqual(twin.etag, '*', 'the query result carries the etag');
    }
  });

  it('SELECT COUNT() AS n FROM devices gives one row [{n}]', async () => {
    // Compare with the registry statistics; nothing else creates devices meanwhile (one test at a
    // time), but allow the two a moment to agree after the creates above.
    let all;
    let stats;
    await eventually(async () => {
      all = await drain(q('SELECT COUNT() AS n FROM devices'));
      ({ responseBody: stats } = await withTimeout(registry.getRegistryStatistics(), OP_TIMEOUT, 'statistics'));
      return all.rows.length === 1 && all.rows[0].n === stats.totalDeviceCount;
    }, { timeoutMs: 3_000, intervalMs: 200 });
    assert.equal(all.rows.length, 1, JSON.stringify(all.rows));
    assert.deepEqual(Object.keys(all.rows[0]), ['n']);
    assert.equal(typeof all.rows[0].n, 'number');
    assert.equal(all.rows[0].n, stats.totalDeviceCount, `COUNT() against statistics ${JSON.stringify(stats)}`);

    const some = await drain(q(`SELECT COUNT() AS n FROM devices WHERE tags.site = '${siteA}'`));
    assert.deepEqual(some.rows, [{ n: 3 }]);
  });

  it("SELECT deviceId, tags.site FROM devices WHERE deviceId = '<id>' projects two fields", async () => {
    const id = inB[0];
    const { rows } = await drain(q(`SELECT deviceId, tags.site FROM devices WHERE deviceId = '${id}'`));
    assert.deepEqual(rows, [{ deviceId: id, site: siteB }]);
  });

  it('GROUP BY tags.site counts each site', async () => {
    const { rows } = await drain(q(
      `SELECT tags.site AS site, COUNT() AS n FROM devices WHERE tags.site IN ['${siteA}', '${siteB}'] GROUP BY tags.site`));
    const bySite = [...rows].sort((a, b) => (a.site < b.site ? -1 : 1));
    assert.deepEqual(bySite, [{ site: siteA, n: 3 }, { site: siteB, n: 2 }].sort((a, b) => (a.site < b.site ? -1 : 1)));
  });

  it('a module reported property shows in SELECT * FROM devices.modules as a Twin with moduleId', async () => {
    const dev = await createDevice('q-mod');
    const moduleId = 'e2e-query-module';
    const { responseBody: mod } = await withTimeout(registry.addModule({ deviceId: dev.deviceId, moduleId }),
      OP_TIMEOUT, 'addModule');
    const cs = deviceConnectionString(dev.deviceId, mod.authentication.symmetricKey.primaryKey, moduleId);
    const client = clients.track(ModuleClient.fromConnectionString(cs, Mqtt));
    await withTimeout(client.open(), OP_TIMEOUT, 'open');
    const twin = await withTimeout(client.getTwin(), OP_TIMEOUT, 'getTwin');
    await updateReported(twin, { fw: '2.1' });
    await clients.close(client);

    const { rows } = await drain(q(`SELECT * FROM devices.modules WHERE deviceId = '${dev.deviceId}'`), 'nextAsTwin');
    assert.equal(rows.length, 1, JSON.stringify(rows));
    const [t] = rows;
    assert.equal(t.constructor.name, 'Twin');
    assert.equal(t.deviceId, dev.deviceId);
    assert.equal(t.moduleId, moduleId);
    assert.equal(t.properties.reported.fw, '2.1', JSON.stringify(t.properties));
  });

  it('a property a device reported over MQTT is found by WHERE properties.reported.x = 1', async () => {
    const dev = await createDevice('q-rep');
    const client = clients.track(Client.fromConnectionString(dev.cs, Mqtt));
    await withTimeout(client.open(), OP_TIMEOUT, 'open');
    const twin = await withTimeout(client.getTwin(), OP_TIMEOUT, 'getTwin');
    await updateReported(twin, { x: 1 });
    await clients.close(client);

    const { rows } = await drain(q('SELECT * FROM devices WHERE properties.reported.x = 1'), 'nextAsTwin');
    const mine = rows.filter((t) => t.deviceId === dev.deviceId);
    assert.equal(mine.length, 1, `found ${JSON.stringify(rows.map((t) => t.deviceId))}`);
    assert.equal(mine[0].properties.reported.x, 1);
    for (const t of rows) assert.equal(t.properties.reported.x, 1, `${t.deviceId} does not match`);
  });

  it("a query that does not parse is ArgumentError (400) with ErrorCode:ArgumentInvalid", async () => {
    const query = q('SELECT * FROM devices WHERE');
    await expectHttpError(withTimeout(query.next(), OP_TIMEOUT, 'query.next'), errors.ArgumentError,
      { status: 400, code: 'ArgumentInvalid' });
  });

  it('registryRead may query; the device policy gets UnauthorizedError', needsBin, async () => {
    const reader = Registry.fromConnectionString(policyConnectionString('registryRead'));
    const { rows } = await drain(q(`SELECT * FROM devices WHERE tags.site = '${siteB}'`, 10, reader), 'nextAsTwin');
    assert.deepEqual(rows.map((t) => t.deviceId).sort(), [...inB].sort());

    const devicePolicy = Registry.fromConnectionString(policyConnectionString('device'));
    await expectHttpError(withTimeout(q('SELECT * FROM devices', 10, devicePolicy).next(), OP_TIMEOUT, 'query.next'),
      errors.UnauthorizedError, { status: 401, code: UNAUTHORIZED });
  });
});
