'use strict';

// Plain HTTPS calls to the hub's REST API, for what the Node service SDK does over AMQP (which
// Roost does not serve yet): cloud-to-device sends, purge, the feedback queue and the file upload
// notification queue. Not a test file itself.
//
// Requests go to the HostName of the iothubowner connection string on port 443 with node's https
// module; the hub's CA comes from NODE_EXTRA_CA_CERTS (set by run.sh). The Authorization header
// is a service SAS token made with azure-iothub's own SharedAccessSignature helper, unless the
// caller passes another token (a device's, for device-side endpoints).

const assert = require('node:assert/strict');
const https = require('node:https');
const { SharedAccessSignature } = require('azure-iothub');
const { hub } = require('./helpers');

const API_VERSION = '2021-04-12';
const REQUEST_TIMEOUT_MS = 10_000;

/** A service SAS token for the iothubowner policy, valid for an hour. */
function serviceToken() {
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  return SharedAccessSignature.create(hub.HostName, hub.SharedAccessKeyName, hub.SharedAccessKey, expiry).toString();
}

/**
 * One HTTPS request to the hub. `path` is without the query; `query` is extra query parameters
 * (api-version is always added). Resolves with { status, headers, body (Buffer), text, json() }
 * for any status; rejects only on transport errors or when no answer comes within `timeoutMs`.
 */
function request(method, path, { query = {}, headers = {}, body, token, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
  const qs = new URLSearchParams({ 'api-version': API_VERSION, ...query }).toString();
  const payload = body === undefined ? undefined : (Buffer.isBuffer(body) ? body : Buffer.from(String(body), 'utf8'));
  const allHeaders = { Authorization: token || serviceToken(), ...headers };
  if (payload) allHeaders['Content-Length'] = String(payload.length);
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: hub.HostName,
      port: 443,
      method,
      path: `${path}?${qs}`,
      headers: allHeaders,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        const text = buf.toString('utf8');
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: buf,
          text,
          json() {
            try {
              return JSON.parse(text);
            } catch (e) {
              throw new Error(`${method} ${path}: body is not JSON (HTTP ${res.statusCode}): ${text}`);
            }
          },
        });
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

/** One line describing an answer, for assertion messages. */
function describeAnswer(res) {
  return `HTTP ${res.status} iothub-errorcode=${res.headers['iothub-errorcode']} body=${res.text.slice(0, 300)}`;
}

/**
 * Asserts an IoT Hub error answer: the status, the iothub-errorcode header and the legacy body
 * {"Message":"ErrorCode:<code>;<text>",...} naming the same code.
 */
function assertHubError(res, status, code) {
  assert.equal(res.status, status, describeAnswer(res));
  assert.equal(res.headers['iothub-errorcode'], code, describeAnswer(res));
  const body = res.json();
  assert.equal(typeof body.Message, 'string', `error body lacks "Message": ${describeAnswer(res)}`);
  assert.ok(body.Message.startsWith(`ErrorCode:${code};`), `Message should start with ErrorCode:${code}; ${describeAnswer(res)}`);
}

/** The lock token of an answer: its ETag without the quotes. Fails if the ETag is not quoted. */
function lockTokenOf(res) {
  const etag = res.headers.etag;
  if (typeof etag !== 'string' || !/^"[^"]+"$/.test(etag)) {
    throw new Error(`ETag should be a quoted lock token, got ${JSON.stringify(etag)}; ${describeAnswer(res)}`);
  }
  return etag.slice(1, -1);
}

/**
 * Sends a cloud-to-device message: POST /devices/{id}/messages/deviceBound with `headers` as the
 * message's properties (iothub-messageid, iothub-ack, Content-Type, iothub-app-<name>...).
 */
function sendC2D(deviceId, body, headers = {}) {
  return request('POST', `/devices/${encodeURIComponent(deviceId)}/messages/deviceBound`, { body, headers });
}

/** DELETE /devices/{id}/commands: empties the device's queue. */
function purgeC2D(deviceId) {
  return request('DELETE', `/devices/${encodeURIComponent(deviceId)}/commands`);
}

const FEEDBACK = '/messages/serviceBound/feedback';
const FILE_NOTIFICATIONS = '/messages/serviceBound/filenotifications';

const receiveFeedback = () => request('GET', FEEDBACK);
const completeFeedback = (lockToken) => request('DELETE', `${FEEDBACK}/${encodeURIComponent(lockToken)}`);
const receiveFileNotification = () => request('GET', FILE_NOTIFICATIONS);
const completeFileNotification = (lockToken) => request('DELETE', `${FILE_NOTIFICATIONS}/${encodeURIComponent(lockToken)}`);

/**
 * Polls `receive` until it answers 200 and `accept(res)` is true, or `timeoutMs` passes (then
 * rejects, naming what came). An answer `accept` refuses is passed to `onOther` (to complete it),
 * so that one stale entry cannot hide the awaited one. 204 means "nothing yet": poll again.
 */
async function pollQueue(receive, { accept, onOther, timeoutMs = 10_000, intervalMs = 200, what }) {
  const deadline = Date.now() + timeoutMs;
  const others = [];
  for (;;) {
    const res = await receive();
    if (res.status === 200) {
      if (accept(res)) return res;
      others.push(res.text);
      if (onOther) await onOther(res);
    } else if (res.status !== 204) {
      throw new Error(`${what}: unexpected answer ${describeAnswer(res)}`);
    }
    if (Date.now() >= deadline) {
      throw new Error(`${what}: not there within ${timeoutMs} ms; other entries seen: ${JSON.stringify(others)}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

module.exports = {
  API_VERSION,
  serviceToken,
  request,
  describeAnswer,
  assertHubError,
  lockTokenOf,
  sendC2D,
  purgeC2D,
  receiveFeedback,
  completeFeedback,
  receiveFileNotification,
  completeFileNotification,
  pollQueue,
};
