'use strict';

// Jobs v2 (scheduled twin updates and device methods), driven the way an IoT Hub user drives
// them: azure-iothub's JobClient against devices that listen with azure-iot-device over Mqtt.
//
// What the SDK does (read from node_modules/azure-iothub/dist/job_client.js, query.js):
// - scheduleTwinUpdate(jobId, queryCondition, patch, startTime, maxExecutionTimeInSeconds) PUTs
//   /jobs/v2/{encodeURIComponent(jobId)} with {jobId, type:'scheduleUpdateTwin', updateTwin:
//   patch, startTime: ISO string, maxExecutionTimeInSeconds, queryCondition}.
// - scheduleDeviceMethod(...) sends type 'scheduleDeviceMethod' and cloudToDeviceMethod
//   {methodName, payload (|| null), responseTimeoutInSeconds (|| 30)}: no connectTimeoutInSeconds,
//   so a device must be listening when its turn comes.
// - getJob(jobId) GETs /jobs/v2/{jobId}; cancelJob(jobId) POSTs /jobs/v2/{jobId}/cancel. The
//   promise forms resolve with { jobStatus: <parsed body>, response }.
// - createQuery(jobType, jobStatus, pageSize) GETs /jobs/v2/query?api-version&jobStatus&jobType
//   with x-ms-max-item-count (page size) and x-ms-continuation headers; Query.next() resolves
//   with { result, message } and hasMoreResults is "the answer had x-ms-continuation"; its
//   promise form forgets the stored token, so pass query.continuationToken to next().
// - Errors: 409 DeviceAlreadyExistsError, 404 (not DeviceNotFound) plain Error('Not found'),
//   400 ArgumentError.

const { describe, it: nodeIt, after } = require('node:test');
const assert = require('node:assert/strict');

const { JobClient, Client: ServiceClient } = require('azure-iothub');
const { NoRetry: ServiceNoRetry } = require('azure-iothub/dist/common-core/retry_policy');
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const {
  errors,
  connectionString,
  uniqueId,
  ownerRegistry,
  describeHttp,
  expectHttpError,
  deleteQuietly,
} = require('./helpers');
const {
  deviceConnectionString,
  withTimeout,
  clientTracker,
  watchDesired,
} = require('./device-helpers');

const TEST_TIMEOUT = 60_000;
const OP_TIMEOUT = 10_000;

const it = (name, fn) => nodeIt(name, { timeout: TEST_TIMEOUT }, fn);

const registry = ownerRegistry();
const jobClient = JobClient.fromConnectionString(connectionString);
const service = ServiceClient.fromConnectionString(connectionString);
service.setRetryPolicy(new ServiceNoRetry());
const created = new Set();
const clients = clientTracker();

after(async () => {
  await clients.closeAll();
  await deleteQuietly(registry, created);
});

async function createDevice(what, tags) {
  const deviceId = uniqueId(what);
  created.add(deviceId);
  const { responseBody: dev } = await withTimeout(registry.create({ deviceId }), OP_TIMEOUT, 'registry.create');
  if (tags) {
    await withTimeout(registry.updateTwin(deviceId, { tags }, '*'), OP_TIMEOUT, 'registry.updateTwin');
  }
  const key = dev.authentication.symmetricKey.primaryKey;
  return { deviceId, key, cs: deviceConnectionString(deviceId, key) };
}

async function openClient(cs) {
  const client = clients.track(Client.fromConnectionString(cs, Mqtt));
  await withTimeout(client.open(), OP_TIMEOUT, 'open');
  return client;
}

/** Polls getJob every 200 ms until the job has the status (failed or cancelled end the wait). */
async function waitForJob(jobId, want, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const { jobStatus: job } = await withTimeout(jobClient.getJob(jobId), OP_TIMEOUT, 'getJob');
    if (job.status === want) return job;
    if (job.status === 'failed' || (job.status === 'cancelled' && want !== 'cancelled')) {
      assert.fail(`job ${jobId} is ${job.status}: ${JSON.stringify(job)}`);
    }
    if (Date.now() > deadline) assert.fail(`job ${jobId} is still ${job.status}: ${JSON.stringify(job)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** SELECT * FROM devices.jobs for one job, every page, as rows by device id. */
async function deviceJobRows(jobId) {
  const query = registry.createQuery(`SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${jobId}'`, 100);
  const rows = {};
  while (query.hasMoreResults) {
    const { result, message } = await withTimeout(query.next(query.continuationToken), OP_TIMEOUT, 'query.next');
    assert.equal(message.headers['x-ms-item-type'], 'deviceJob');
    for (const row of result) rows[row.deviceId] = row;
  }
  return rows;
}

describe('jobs v2 with JobClient', () => {
  it('scheduleTwinUpdate over a tag condition updates every matching twin and pushes desired properties', async () => {
    const fleet = uniqueId('fleet');
    const a = await createDevice('job-twin-a', { fleet });
    const b = await createDevice('job-twin-b', { fleet });
    const other = await createDevice('job-twin-other', { fleet: `${fleet}-not` });

    const client = await openClient(a.cs);
    const twin = await withTimeout(client.getTwin(), OP_TIMEOUT, 'getTwin');
    const desired = watchDesired(twin);
    await desired.subscribed();

    const jobId = uniqueId('job-twin');
    const patch = { etag: '*', tags: { fw: '2.0' }, properties: { desired: { interval: 30 }, reported: {} } };
    const { jobStatus: scheduled } = await withTimeout(
      jobClient.scheduleTwinUpdate(jobId, `tags.fleet = '${fleet}'`, patch, new Date(), 120), OP_TIMEOUT, 'scheduleTwinUpdate');
    assert.equal(scheduled.jobId, jobId);
    assert.equal(scheduled.status, 'queued');

    const job = await waitForJob(jobId, 'completed');
    assert.equal(job.type, 'scheduleUpdateTwin');
    assert.equal(job.deviceJobStatistics.deviceCount, 2, JSON.stringify(job));
    assert.equal(job.deviceJobStatistics.succeededCount, 2, JSON.stringify(job));

    await desired.next((p) => p.interval === 30, 10_000);
    for (const d of [a, b]) {
      const { responseBody: t } = await withTimeout(registry.getTwin(d.deviceId), OP_TIMEOUT, 'getTwin');
      assert.equal(t.tags.fw, '2.0');
      assert.equal(t.properties.desired.interval, 30);
    }
    const { responseBody: untouched } = await withTimeout(registry.getTwin(other.deviceId), OP_TIMEOUT, 'getTwin');
    assert.equal(untouched.tags.fw, undefined);

    const rows = await deviceJobRows(jobId);
    assert.deepEqual(Object.keys(rows).sort(), [a.deviceId, b.deviceId].sort());
    for (const row of Object.values(rows)) {
      assert.equal(row.jobId, jobId);
      assert.equal(row.jobType, 'scheduleUpdateTwin');
      assert.equal(row.status, 'completed');
    }
  });

  it('scheduleDeviceMethod calls the device that listens and fails the one that is offline', async () => {
    const online = await createDevice('job-m-on');
    const offline = await createDevice('job-m-off');
    const client = await openClient(online.cs);
    const received = [];
    client.onDeviceMethod('reboot', (request, response) => {
      received.push(request.payload);
      response.send(200, { rebooted: true }, () => {});
    });
    // The job does not wait for a device to subscribe (the SDK sends no connect timeout): make
    // sure the handler's subscription is in place with one direct call that may wait for it.
    await withTimeout(service.invokeDeviceMethod(online.deviceId,
      { methodName: 'reboot', payload: null, connectTimeoutInSeconds: 5 }), 40_000, 'invokeDeviceMethod');
    received.length = 0;

    const jobId = uniqueId('job-method');
    const { jobStatus: scheduled } = await withTimeout(jobClient.scheduleDeviceMethod(jobId,
      `deviceId IN ['${online.deviceId}', '${offline.deviceId}']`,
      { methodName: 'reboot', payload: { delay: 1 }, responseTimeoutInSeconds: 30 }), OP_TIMEOUT, 'scheduleDeviceMethod');
    assert.equal(scheduled.status, 'queued');
    const job = await waitForJob(jobId, 'completed');
    assert.equal(job.deviceJobStatistics.succeededCount, 1, JSON.stringify(job));
    assert.equal(job.deviceJobStatistics.failedCount, 1, JSON.stringify(job));
    assert.deepEqual(received, [{ delay: 1 }]);

    const rows = await deviceJobRows(jobId);
    assert.equal(rows[online.deviceId].status, 'completed');
    assert.deepEqual(rows[online.deviceId].outcome.deviceMethodResponse, { status: 200, payload: { rebooted: true } });
    assert.equal(rows[offline.deviceId].status, 'failed');
    assert.equal(rows[offline.deviceId].error.code, 'DeviceNotOnline');
  });

  it('a job scheduled for later answers queued, and cancelJob cancels it', async () => {
    const dev = await createDevice('job-later');
    const jobId = uniqueId('job-later');
    const patch = { etag: '*', tags: {}, properties: { desired: {}, reported: {} } };
    const { jobStatus: scheduled } = await withTimeout(jobClient.scheduleTwinUpdate(jobId, `deviceId = '${dev.deviceId}'`,
      patch, new Date(Date.now() + 3600_000), 120), OP_TIMEOUT, 'scheduleTwinUpdate');
    assert.equal(scheduled.jobId, jobId);
    assert.equal(scheduled.status, 'queued');
    const { jobStatus: pending } = await withTimeout(jobClient.getJob(jobId), OP_TIMEOUT, 'getJob');
    assert.equal(pending.status, 'scheduled');

    const { jobStatus: cancelled } = await withTimeout(jobClient.cancelJob(jobId), OP_TIMEOUT, 'cancelJob');
    assert.equal(cancelled.status, 'cancelled');
    await waitForJob(jobId, 'cancelled');
  });

  it('createQuery lists jobs by type and status, page by page', async () => {
    const dev = await createDevice('job-list');
    const ids = [];
    for (let i = 0; i < 3; i += 1) {
      const jobId = uniqueId('job-list');
      ids.push(jobId);
      await withTimeout(jobClient.scheduleDeviceMethod(jobId, `deviceId = '${dev.deviceId}'`,
        { methodName: 'noop' }, new Date(Date.now() + 3600_000), 60), OP_TIMEOUT, 'scheduleDeviceMethod');
    }
    const query = jobClient.createQuery('scheduleDeviceMethod', 'scheduled', 1);
    const seen = [];
    let pages = 0;
    while (query.hasMoreResults) {
      // The SDK's promise form of next() drops the stored token (only its callback form uses
      // it), so pass it explicitly, as an application paging with promises must.
      const { result, message } = await withTimeout(query.next(query.continuationToken), OP_TIMEOUT, 'query.next');
      pages += 1;
      assert.equal(message.headers['x-ms-item-type'], 'jobResponse');
      assert.ok(result.length <= 1, `page size 1, got ${result.length}`);
      for (const job of result) {
        assert.equal(job.type, 'scheduleDeviceMethod');
        assert.equal(job.status, 'scheduled');
        seen.push(job.jobId);
      }
      assert.ok(pages < 1000, 'the last page must come without x-ms-continuation');
    }
    for (const id of ids) assert.ok(seen.includes(id), `${id} not listed in ${JSON.stringify(seen)}`);
    for (const id of ids) await withTimeout(jobClient.cancelJob(id), OP_TIMEOUT, 'cancelJob');
  });

  it('a duplicate jobId is 409 JobAlreadyExists, an unknown one 404 JobNotFound', async () => {
    const dev = await createDevice('job-err');
    const jobId = uniqueId('job-dup');
    const later = new Date(Date.now() + 3600_000);
    await withTimeout(jobClient.scheduleTwinUpdate(jobId, `deviceId = '${dev.deviceId}'`, { etag: '*', tags: {} }, later, 60),
      OP_TIMEOUT, 'scheduleTwinUpdate');
    const err = await expectHttpError(
      jobClient.scheduleTwinUpdate(jobId, `deviceId = '${dev.deviceId}'`, { etag: '*', tags: {} }, later, 60),
      errors.DeviceAlreadyExistsError, { status: 409, code: 'JobAlreadyExists' });
    assert.ok(err);

    let notFound;
    try {
      await jobClient.getJob(uniqueId('job-missing'));
    } catch (e) {
      notFound = e;
    }
    assert.ok(notFound, 'getJob of an unknown job must fail');
    assert.equal(notFound.response.statusCode, 404, describeHttp(notFound));
    assert.equal(notFound.response.headers['iothub-errorcode'], 'JobNotFound', describeHttp(notFound));

    const bad = await expectHttpError(
      jobClient.scheduleTwinUpdate(uniqueId('job-bad'), 'tags.x = ', { etag: '*', tags: {} }, later, 60),
      errors.ArgumentError, { status: 400, code: 'ArgumentInvalid' });
    assert.ok(bad);
    await withTimeout(jobClient.cancelJob(jobId), OP_TIMEOUT, 'cancelJob');
  });
});
