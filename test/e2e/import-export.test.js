'use strict';

// Import/export jobs, driven through the unmodified `azure-iothub` Registry against a real roost,
// with roost's built-in blob store as the storage account. Request shapes the SDK sends (from
// node_modules/azure-iothub/dist/registry.js):
//   exportDevicesToBlob(uri, excludeKeys)   POST /jobs/create {type:"export", outputBlobContainerUri, excludeKeysInExport}
//   importDevicesFromBlob(inUri, outUri)    POST /jobs/create {type:"import", inputBlobContainerUri, outputBlobContainerUri}
//   getJob(id) GET /jobs/{id};  listJobs() GET /jobs;  cancelJob(id) DELETE /jobs/{id}
// getJob, cancelJob and the two create calls resolve to the parsed JobProperties; listJobs to
// {responseBody, httpResponse}. The container SAS URI comes from `roost files container-sas`;
// blobs are read and written with plain Azure Blob REST (Get Blob, Put Blob) over HTTPS, the CA
// from NODE_EXTRA_CA_CERTS (set by run.sh).

const { describe, it: nodeIt, after } = require('node:test');
const assert = require('node:assert/strict');
const https = require('node:https');
const { execFileSync } = require('node:child_process');

const { uniqueId, ownerRegistry, haveRoostBin, describeHttp, parseLegacyErrorBody, eventually, deleteQuietly } = require('./helpers');

const TIMEOUT = 60_000;
const it = (name, fn) => nodeIt(name, { timeout: TIMEOUT }, fn);
const needsBin = haveRoostBin ? {} : { skip: 'ROOST_BIN / ROOST_DATA_DIR not set' };

const registry = ownerRegistry();
const created = new Set();

after(async () => {
  await deleteQuietly(registry, created);
});

/** `roost files container-sas`: a SAS URI of the built-in blob container. */
function containerSas() {
  const out = execFileSync(
    process.env.ROOST_BIN,
    ['files', 'container-sas', '--data-dir', process.env.ROOST_DATA_DIR, '--permissions', 'rcw', '--expiry', '1h'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  ).trim();
  assert.match(out, /^https:\/\/[^/]+\/[^/?]+\?.*sr=c/, `not a container SAS URI: ${out}`);
  return out;
}

/** The URL of blob `name` in the container of a container SAS URI. */
function blobUrl(containerUri, name) {
  const u = new URL(containerUri);
  u.pathname = `${u.pathname.replace(/\/$/, '')}/${name}`;
  return u;
}

function blobRequest(method, url, body) {
  return new Promise((resolve, reject) => {
    const headers = { 'x-ms-version': '2020-10-02' };
    if (body !== undefined) {
      headers['x-ms-blob-type'] = 'BlockBlob';
      headers['Content-Length'] = Buffer.byteLength(body);
      headers['Content-Type'] = 'text/plain';
    }
    const req = https.request(url, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

async function getBlob(containerUri, name) {
  const res = await blobRequest('GET', blobUrl(containerUri, name));
  assert.equal(res.status, 200, `Get Blob ${name}: ${res.status} ${res.body}`);
  return res.body;
}

async function putBlob(containerUri, name, body) {
  const res = await blobRequest('PUT', blobUrl(containerUri, name), body);
  assert.equal(res.status, 201, `Put Blob ${name}: ${res.status} ${res.body}`);
}

function jsonLines(text) {
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
}

/** Polls getJob until the job ends and returns it. */
async function waitForJob(jobId) {
  let last;
  const ended = await eventually(async () => {
    last = await registry.getJob(jobId);
    return ['completed', 'failed', 'cancelled'].includes(last.status);
  }, { timeoutMs: 45_000, intervalMs: 250 });
  assert.ok(ended, `job ${jobId} did not end: ${JSON.stringify(last)}`);
  return last;
}

describe('import/export jobs with the built-in blob store', needsBin, () => {
  it('exports devices with keys and tags, then imports them back after deletion', async () => {
    const container = containerSas();
    const ids = [uniqueId('export'), uniqueId('export'), uniqueId('export')];
    const devices = {};
    for (const id of ids) {
      created.add(id);
      const res = await registry.create({ deviceId: id });
      devices[id] = res.responseBody;
    }
    await registry.updateTwin(ids[0], { tags: { plant: 'north' } }, '*');

    const job = await registry.exportDevicesToBlob(container, false);
    assert.ok(job.jobId, `no jobId in ${JSON.stringify(job)}`);
    assert.equal(job.type, 'export');
    assert.equal(job.status, 'enqueued');
    const done = await waitForJob(job.jobId);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.progress, 100);

    const exported = jsonLines(await getBlob(container, 'devices.txt'));
    const mine = exported.filter((l) => ids.includes(l.id));
    assert.equal(mine.length, 3, `devices.txt lacks this run's devices: ${JSON.stringify(mine)}`);
    for (const line of mine) {
      assert.equal(line.authentication.symmetricKey.primaryKey, devices[line.id].authentication.symmetricKey.primaryKey);
      assert.equal(line.status, 'enabled');
    }
    assert.deepEqual(mine.find((l) => l.id === ids[0]).tags, { plant: 'north' });

    // Only this run's devices are imported again: devices.txt is replaced by their lines, plus a
    // line that is not JSON, which ends up in importErrors.log.
    for (const id of ids) await registry.delete(id);
    const input = mine.map((l) => JSON.stringify({ ...l, importMode: 'createOrUpdate' })).join('\n') + '\nthis is not json\n';
    await putBlob(container, 'devices.txt', input);

    const imp = await registry.importDevicesFromBlob(container, container);
    assert.equal(imp.type, 'import');
    const impDone = await waitForJob(imp.jobId);
    assert.equal(impDone.status, 'completed', JSON.stringify(impDone));
    for (const id of ids) {
      const back = (await registry.get(id)).responseBody;
      assert.equal(back.authentication.symmetricKey.primaryKey, devices[id].authentication.symmetricKey.primaryKey,
        `${id} came back with other keys`);
    }
    const twin = (await registry.getTwin(ids[0])).responseBody;
    assert.deepEqual(twin.tags, { plant: 'north' });
    const errs = jsonLines(await getBlob(container, 'importErrors.log'));
    assert.equal(errs.length, 1, JSON.stringify(errs));
    assert.equal(errs[0].errorCode, 'ArgumentInvalid');
    assert.equal(errs[0].line, 4);

    // listJobs shows both; cancelling a job that ended returns it unchanged.
    const list = await registry.listJobs();
    const listed = list.responseBody.map((j) => j.jobId);
    assert.ok(listed.includes(job.jobId) && listed.includes(imp.jobId), JSON.stringify(listed));
    const cancelled = await registry.cancelJob(imp.jobId);
    assert.equal(cancelled.status, 'completed');
  });

  it('excludes keys when asked', async () => {
    const container = containerSas();
    const id = uniqueId('nokeys');
    created.add(id);
    const dev = (await registry.create({ deviceId: id })).responseBody;
    const job = await registry.exportDevicesToBlob(container, true);
    const done = await waitForJob(job.jobId);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const text = await getBlob(container, 'devices.txt');
    assert.ok(!text.includes(dev.authentication.symmetricKey.primaryKey), 'a key was exported with excludeKeysInExport');
    const line = jsonLines(text).find((l) => l.id === id);
    assert.ok(line, 'the device is missing from devices.txt');
    assert.equal(line.authentication.symmetricKey.primaryKey, null);
  });

  it('answers 404002 JobNotFound for an unknown job', async () => {
    let err;
    try {
      await registry.getJob('00000000-0000-4000-8000-000000000000');
    } catch (e) {
      err = e;
    }
    assert.ok(err, 'getJob of an unknown id succeeded');
    assert.equal(err.response && err.response.statusCode, 404, describeHttp(err));
    assert.equal(parseLegacyErrorBody(err).code, 'JobNotFound');
  });
});
