'use strict';

// Reads device-to-cloud telemetry back through the hub's consumer API, for the device tests.
//
// The API is the hub's streaming read side of the built-in endpoint:
//   GET /messages/events?api-version=...&from=start&deviceId=<id>   (ServiceConnect)
//   Accept: application/x-ndjson  ->  one JSON event per line, blank lines as keep-alives:
//   { body, base64Encoded?, partition, sequenceNumber, offset, enqueuedTime,
//     systemProperties: { 'iothub-connection-device-id', 'message-id', 'content-type', ... },
//     properties: { <application properties> } }
// The stream never ends by itself: read until enough events came and the stream has been quiet
// for a moment (so extra events are seen too), then abort.
//
// `read()` rejects with an EventsUnavailable error when the hub has no such API (404 for the
// path), so that the tests can mark the read-back as pending instead of failing.

const https = require('node:https');
const { execFile } = require('node:child_process');
const { SharedAccessSignature } = require('azure-iothub');
const { hub } = require('./helpers');

const API_VERSION = '2021-04-12';

class EventsUnavailable extends Error {
  constructor(message) {
    super(message);
    this.name = 'EventsUnavailable';
  }
}

function serviceToken() {
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  return SharedAccessSignature.create(hub.HostName, hub.SharedAccessKeyName, hub.SharedAccessKey, expiry).toString();
}

/** Turns one line of the stream into the shape the tests compare. */
function normalise(ev) {
  const sp = ev.systemProperties || {};
  return {
    body: ev.base64Encoded ? Buffer.from(ev.body, 'base64').toString('utf8') : ev.body,
    messageId: sp['message-id'],
    correlationId: sp['correlation-id'],
    contentType: sp['content-type'],
    contentEncoding: sp['content-encoding'],
    properties: ev.properties || {},
    annotations: sp,
    raw: ev,
  };
}

/**
 * Reads a device's stored events from the start of the retained telemetry. Resolves once at
 * least `count` events came and nothing more arrived for `quietMs`, or when `timeoutMs` passes
 * (with what came so far, so the caller can report what is missing).
 */
function read({ deviceId, moduleId, count, timeoutMs = 15_000, quietMs = 500 }) {
  const query = new URLSearchParams({ 'api-version': API_VERSION, from: 'start', deviceId });
  if (moduleId) query.set('moduleId', moduleId);
  return new Promise((resolve, reject) => {
    const got = [];
    let settled = false;
    let quietTimer;
    const finish = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(overall);
      clearTimeout(quietTimer);
      req.destroy();
      if (err) reject(err);
      else resolve(got);
    };
    const overall = setTimeout(() => finish(), timeoutMs);
    const req = https.get({
      host: hub.HostName,
      port: 443,
      path: `/messages/events?${query}`,
      headers: { Authorization: serviceToken(), Accept: 'application/x-ndjson' },
    }, (res) => {
      if (res.statusCode !== 200) {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => { body += c; });
        res.on('end', () => {
          const code = res.headers['iothub-errorcode'];
          const desc = `GET /messages/events: HTTP ${res.statusCode} iothub-errorcode=${code} ${body}`;
          finish(res.statusCode === 404 ? new EventsUnavailable(desc) : new Error(desc));
        });
        return;
      }
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        pending += chunk;
        let nl;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (!line) continue; // keep-alive
          try {
            got.push(normalise(JSON.parse(line)));
          } catch (e) {
            finish(new Error(`event stream line is not JSON: ${line}`));
            return;
          }
        }
        if (got.length >= count) {
          clearTimeout(quietTimer);
          quietTimer = setTimeout(() => finish(), quietMs);
        }
      });
      res.on('error', (e) => finish(settled ? null : e));
      res.on('end', () => finish());
    });
    req.on('error', (e) => finish(e));
  });
}

/**
 * Runs `roost monitor-events --device <id> --from start --output json --properties` until it has
 * been quiet for `idle`, and resolves with the parsed events (one JSON object per line, az's
 * shape: { event: { origin, module, properties: { system, application }, annotations, payload } }).
 */
function monitorEvents({ deviceId, idle = '2s', timeoutMs = 20_000 }) {
  const args = ['monitor-events', '--data-dir', process.env.ROOST_DATA_DIR, '--device', deviceId,
    '--from', 'start', '--timeout', idle, '--output', 'json', '--properties'];
  return new Promise((resolve, reject) => {
    execFile(process.env.ROOST_BIN, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`roost ${args.join(' ')}: ${err.message}\nstderr: ${stderr}\nstdout: ${stdout}`));
        return;
      }
      try {
        resolve(stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l).event));
      } catch (e) {
        reject(new Error(`roost monitor-events printed a line that is not JSON: ${e.message}\n${stdout}`));
      }
    });
  });
}

module.exports = { read, monitorEvents, EventsUnavailable };
