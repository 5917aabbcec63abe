'use strict';

// File uploads through the unmodified azure-iot-device SDK (a client over Mqtt; file upload
// itself is HTTPS whatever the transport), against the hub's built-in blob store; the service
// side reads file upload notifications over REST (service-rest.js), because the Node service
// SDK's getFileNotificationReceiver uses AMQP, which Roost does not serve yet.
//
// What the SDK does (read from node_modules, versions in package.json):
// - uploadToBlob(name, stream, length): POST /devices/{id}/files {"blobName"} for a SAS URI
//   ({correlationId, hostName, containerName, blobName, sasToken}); then @azure/storage-blob's
//   BlockBlobClient.uploadStream to https://{hostName}/{containerName}/{blobName}{sasToken} in
//   4 MiB blocks (Put Block, then Put Block List; it trusts the hub's CA through
//   NODE_EXTRA_CA_CERTS); then POST /devices/{id}/files/notifications/{correlationId} with
//   {isSuccess, statusCode, statusDescription}.
// - getBlobSharedAccessSignature(name) is the first step alone; a failure rejects with a plain
//   Error carrying err.response (the IncomingMessage) and err.responseBody.
// - notifyBlobUploadStatus(correlationId, isSuccess, statusCode, statusDescription) is the last;
//   a failure rejects with Error(<HTTP status text>) and nothing else: the status and the
//   iothub-errorcode header are read here from node's 'http.client.response.finish' diagnostics
//   channel, which sees every response the SDK's https requests get.

const { describe, it: nodeIt, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const diagnosticsChannel = require('node:diagnostics_channel');
const { execFile } = require('node:child_process');

const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const { uniqueId, ownerRegistry, haveRoostBin, deleteQuietly } = require('./helpers');
const { deviceConnectionString, withTimeout, clientTracker, NoRetry } = require('./device-helpers');
const rest = require('./service-rest');

const TEST_TIMEOUT = 30_000; // per test
const OP_TIMEOUT = 10_000; // per SDK call
const UPLOAD_TIMEOUT = 20_000; // for uploadToBlob of the test file
const UPLOAD_LIMIT = 10; // uploads a device may have in progress

const it = (name, opts, fn) => (fn
  ? nodeIt(name, { timeout: TEST_TIMEOUT, ...opts }, fn)
  : nodeIt(name, { timeout: TEST_TIMEOUT }, opts));

const registry = ownerRegistry();
const created = new Set();
const clients = clientTracker();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-e2e-upload-'));

after(async () => {
  await clients.closeAll();
  await deleteQuietly(registry, created);
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function createDevice(what) {
  const deviceId = uniqueId(what);
  created.add(deviceId);
  const { responseBody: dev } = await withTimeout(registry.create({ deviceId }), OP_TIMEOUT, 'registry.create');
  const key = dev.authentication.symmetricKey.primaryKey;
  return { deviceId, key, cs: deviceConnectionString(deviceId, key) };
}

/** A device client over Mqtt with the NoRetry policy (clientTracker), opened. */
async function openDevice(what) {
  const dev = await createDevice(what);
  const client = clients.track(Client.fromConnectionString(dev.cs, Mqtt));
  client.setRetryPolicy(new NoRetry());
  await withTimeout(client.open(), OP_TIMEOUT, 'open');
  return { dev, client };
}

/**
 * Records the responses node's https client receives while `fn` runs (every request of this
 * process, the SDK's included): [{ method, path, status, headers }].
 */
async function watchResponses(fn) {
  const seen = [];
  const onResponse = ({ request, response }) => {
    seen.push({ method: request.method, path: request.path, status: response.statusCode, headers: response.headers });
  };
  diagnosticsChannel.subscribe('http.client.response.finish', onResponse);
  try {
    return { result: await fn(), seen };
  } catch (e) {
    e.seen = seen;
    throw e;
  } finally {
    diagnosticsChannel.unsubscribe('http.client.response.finish', onResponse);
  }
}

function roost(args, timeoutMs = 15_000) {
  const all = [...args, '--data-dir', process.env.ROOST_DATA_DIR];
  return new Promise((resolve, reject) => {
    execFile(process.env.ROOST_BIN, all, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`roost ${all.join(' ')}: ${err.message}\nstderr: ${stderr}\nstdout: ${stdout}`));
      else resolve(stdout);
    });
  });
}

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

describe('file upload', () => {
  it('uploadToBlob of a 6 MB file; a notification names it; roost files get returns the same bytes', async () => {
    const { dev, client } = await openDevice('upload');
    // Not a multiple of the SDK's 4 MiB block size: two blocks, the second partial.
    const size = 6 * 1024 * 1024 + 12_345;
    const content = crypto.randomBytes(size);
    const file = path.join(tmp, 'upload-src.bin');
    fs.writeFileSync(file, content);
    const name = `e2e-${crypto.randomBytes(3).toString('hex')}.bin`;

    await withTimeout(client.uploadToBlob(name, fs.createReadStream(file), size), UPLOAD_TIMEOUT, 'uploadToBlob');

    const blobName = `${dev.deviceId}/${name}`;
    const res = await rest.pollQueue(rest.receiveFileNotification, {
      accept: (r) => r.json().blobName === blobName,
      // Only an earlier e2e run's leftovers may be in the way; complete those.
      onOther: async (r) => {
        assert.ok(String(r.json().deviceId).startsWith('e2e-'), `unexpected notification ${r.text}`);
        await rest.completeFileNotification(rest.lockTokenOf(r));
      },
      timeoutMs: 10_000,
      what: `file upload notification for ${blobName}`,
    });
    const n = res.json();
    const label = `notification ${res.text}`;
    assert.equal(n.deviceId, dev.deviceId, label);
    assert.equal(n.blobName, blobName, label);
    assert.equal(n.blobSizeInBytes, size, label);
    assert.ok(typeof n.blobUri === 'string' && n.blobUri.startsWith('https://') && n.blobUri.endsWith(`/${blobName}`),
      `blobUri ends with the blob name; ${label}`);
    for (const k of ['lastUpdatedTime', 'enqueuedTimeUtc']) {
      const t = Date.parse(n[k]);
      assert.ok(Number.isFinite(t) && Math.abs(Date.now() - t) < 60_000, `${k} is recent; ${label}`);
    }
    const token = rest.lockTokenOf(res); // a quoted ETag
    const del = await rest.completeFileNotification(token);
    assert.equal(del.status, 204, `DELETE filenotifications/${token}: ${rest.describeAnswer(del)}`);
    const next = await rest.receiveFileNotification();
    assert.equal(next.status, 204, `no notification left: ${rest.describeAnswer(next)}`);

    if (haveRoostBin) {
      const out = path.join(tmp, 'upload-out.bin');
      await roost(['files', 'get', blobName, '--out', out]);
      const got = fs.readFileSync(out);
      assert.equal(got.length, size, 'roost files get: size');
      assert.equal(sha256(got), sha256(content), 'roost files get: identical bytes');
    }
    await clients.close(client);
  });

  it(`${UPLOAD_LIMIT + 1} concurrent SAS requests: ${UPLOAD_LIMIT} granted, 1 refused 403 DeviceMaximumActiveFileUploadLimitExceeded; a notification frees a slot`, async () => {
    const { dev, client } = await openDevice('upload-limit');
    const names = Array.from({ length: UPLOAD_LIMIT + 1 }, (_, i) => `slot-${i}.txt`);
    const results = await withTimeout(
      Promise.allSettled(names.map((nm) => client.getBlobSharedAccessSignature(nm))),
      OP_TIMEOUT, 'getBlobSharedAccessSignature x11');
    const granted = results.filter((r) => r.status === 'fulfilled').map((r) => r.value);
    const refused = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
    const summary = results.map((r) => (r.status === 'fulfilled' ? 'granted'
      : `${r.reason.message} ${r.reason.response && r.reason.response.statusCode} ${r.reason.responseBody}`));
    assert.equal(granted.length, UPLOAD_LIMIT, `granted: ${JSON.stringify(summary)}`);
    assert.equal(refused.length, 1, `refused: ${JSON.stringify(summary)}`);

    for (const g of granted) {
      assert.equal(typeof g.correlationId, 'string', JSON.stringify(g));
      assert.ok(g.correlationId.length > 0, JSON.stringify(g));
      assert.ok(names.map((nm) => `${dev.deviceId}/${nm}`).includes(g.blobName), JSON.stringify(g));
      assert.equal(typeof g.hostName, 'string', JSON.stringify(g));
      assert.equal(typeof g.containerName, 'string', JSON.stringify(g));
      assert.match(g.sasToken, /^\?.*sig=/, JSON.stringify(g));
    }
    assert.equal(new Set(granted.map((g) => g.correlationId)).size, UPLOAD_LIMIT, 'correlation ids are distinct');

    const err = refused[0];
    assert.ok(err.response, `the refusal carries the HTTP response: ${err.message}`);
    assert.equal(err.response.statusCode, 403, `body ${err.responseBody}`);
    assert.equal(err.response.headers['iothub-errorcode'], 'DeviceMaximumActiveFileUploadLimitExceeded', `body ${err.responseBody}`);
    const body = JSON.parse(err.responseBody);
    assert.ok(body.Message.startsWith('ErrorCode:DeviceMaximumActiveFileUploadLimitExceeded;'), err.responseBody);

    // Reporting one upload as failed frees its slot: one more is granted, and the next refused.
    await withTimeout(client.notifyBlobUploadStatus(granted[0].correlationId, false, 500, 'given up by the test'),
      OP_TIMEOUT, 'notifyBlobUploadStatus');
    const again = await withTimeout(client.getBlobSharedAccessSignature('slot-again.txt'), OP_TIMEOUT,
      'getBlobSharedAccessSignature after a slot was freed');
    assert.equal(again.blobName, `${dev.deviceId}/slot-again.txt`);
    const full = await withTimeout(client.getBlobSharedAccessSignature('slot-over.txt').then(
      () => null, (e) => e), OP_TIMEOUT, 'getBlobSharedAccessSignature with every slot taken');
    assert.ok(full, 'with all slots taken again, the next request is refused');
    assert.equal(full.response && full.response.statusCode, 403, `${full.message} ${full.responseBody}`);

    // Leave nothing in progress.
    for (const g of [...granted.slice(1), again]) {
      await withTimeout(client.notifyBlobUploadStatus(g.correlationId, false, 500, 'cleanup'), OP_TIMEOUT, 'cleanup notify');
    }
    await clients.close(client);
  });

  it('notifyBlobUploadStatus with a made-up correlation id is 400 InvalidFileUploadCorrelationId', async () => {
    const { dev, client } = await openDevice('upload-badcid');
    const { seen, result: err } = await watchResponses(() => withTimeout(
      client.notifyBlobUploadStatus('made-up', true, 201, '').then(() => null, (e) => e),
      OP_TIMEOUT, 'notifyBlobUploadStatus'));
    assert.ok(err, 'notifyBlobUploadStatus with a made-up correlation id should reject');
    assert.equal(err.message, 'Bad Request', 'the SDK rejects with the HTTP status text');
    const answer = seen.find((s) => s.path.startsWith(`/devices/${encodeURIComponent(dev.deviceId)}/files/notifications/made-up?`));
    assert.ok(answer, `the SDK's request was not seen: ${JSON.stringify(seen.map((s) => `${s.method} ${s.path} ${s.status}`))}`);
    assert.equal(answer.status, 400);
    assert.equal(answer.headers['iothub-errorcode'], 'InvalidFileUploadCorrelationId');
    await clients.close(client);
  });
});
