'use strict';

// Helpers for the device-SDK tests (device.test.js). Not a test file itself.
//
// The device SDKs (`azure-iot-device`, `-mqtt`, `-http`) use the error classes of the standalone
// `azure-iot-common` package, not the copy vendored in `azure-iothub`: compare against these.

const assert = require('node:assert/strict');
const http = require('node:http');

const { errors: deviceErrors, NoRetry, ExponentialBackOffWithJitter } = require('azure-iot-common');
const { hub } = require('./helpers');

/** The hub's host name as devices use it (HostName of the iothubowner connection string). */
const hostName = hub.HostName;

/** The admin listener (plain HTTP: /healthz, /metrics), from run.sh. */
const adminUrl = process.env.ROOST_ADMIN_URL || '';

function deviceConnectionString(deviceId, key, moduleId) {
  const parts = [`HostName=${hostName}`, `DeviceId=${deviceId}`];
  if (moduleId) parts.push(`ModuleId=${moduleId}`);
  parts.push(`SharedAccessKey=${key}`);
  return parts.join(';');
}

/**
 * Resolves or rejects as `promise` does, or rejects after `ms` with an error naming `what`, so a
 * hang fails the test at once instead of running into the runner's timeout.
 */
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Closes a client, ignoring errors and giving up after `ms` (best-effort cleanup). */
async function closeQuietly(client, ms = 5000) {
  if (!client) return;
  try {
    await withTimeout(client.close(), ms, 'close');
  } catch (_) {
    // already closed, or broken in a way the test itself reports
  }
}

/** Awaits `promise` and returns the error it rejects with; fails if it resolves. */
async function rejectionOf(promise, what) {
  try {
    const res = await promise;
    assert.fail(`${what} should have failed, but it succeeded: ${describeResult(res)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    return e;
  }
}

function describeResult(res) {
  if (!res) return String(res);
  const name = res.constructor && res.constructor.name;
  const status = res.transportObj && res.transportObj.statusCode;
  return `${name}${status ? ` (HTTP ${status})` : ''}`;
}

/** One line describing an SDK error and what the transport saw, for assertion messages. */
function describeError(err) {
  if (!err) return String(err);
  const parts = [`${err.name || err.constructor.name}: ${err.message}`];
  if (err.transportError && err.transportError !== err) {
    const te = err.transportError;
    parts.push(`transportError=${te.name}: ${te.message}${te.code !== undefined ? ` (code ${te.code})` : ''}`);
  }
  if (err.response) {
    parts.push(`HTTP ${err.response.statusCode} iothub-errorcode=${err.response.headers['iothub-errorcode']}`);
  }
  if (err.responseBody) parts.push(`body=${err.responseBody}`);
  return parts.join('; ');
}

/** GET `path` on the admin listener; resolves with the body. */
function adminGet(path) {
  return new Promise((resolve, reject) => {
    const req = http.get(adminUrl + path, { timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`GET ${path}: HTTP ${res.statusCode}: ${body}`));
        else resolve(body);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timeout`)));
    req.on('error', reject);
  });
}

/**
 * The hub's Prometheus metrics as a Map from `name{labels}` (labels as printed) to a number.
 * Samples without labels are keyed by the bare name.
 */
async function scrapeMetrics() {
  const text = await adminGet('/metrics');
  const out = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

/** The value of one sample (0 when absent: Prometheus omits label sets never incremented). */
function sample(metrics, name, labels) {
  const key = labels
    ? `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`
    : name;
  return metrics.get(key) || 0;
}

/** Sum of all samples of `name` over every label set. */
function sampleSum(metrics, name) {
  let sum = 0;
  for (const [k, v] of metrics) {
    if (k === name || k.startsWith(`${name}{`)) sum += v;
  }
  return sum;
}

// Counters the tests watch. Every Connections record written with an error increments
// roost_connection_errors_total{code} once (internal/mqtt/conn.go), so its delta is the
// outside-visible trace of the Error records while the records themselves cannot be read.
const CONNECTION_ERRORS = 'roost_connection_errors_total';
const TELEMETRY_SUCCESS = 'roost_d2c_telemetry_ingress_success_total';
const TELEMETRY_ATTEMPTS = 'roost_d2c_telemetry_ingress_all_protocol_total';

/**
 * Polls the metrics until `check(metrics)` returns true or `timeoutMs` passes; returns the last
 * scrape. Records and counters are written right after the protocol answer, so allow a moment.
 */
async function metricsEventually(check, { timeoutMs = 5000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = await scrapeMetrics();
    if (check(m) || Date.now() >= deadline) return m;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** True when the SDK's default retry policy would give up on `err` at once (no retry loop). */
function defaultPolicyGivesUp(err) {
  return new ExponentialBackOffWithJitter().shouldRetry(err) === false;
}


/**
 * Keeps track of the device and module clients a test file opens: `track(client)` gives the
 * client the NoRetry policy (a failure or a dropped connection surfaces at once instead of being
 * retried for minutes behind the test's back) and a no-op 'error' listener (an unheard 'error'
 * event would crash the test process); `closeAll()` closes whatever is still open.
 */
function clientTracker() {
  const open = new Set();
  return {
    track(client) {
      client.setRetryPolicy(new NoRetry());
      client.on('error', () => {});
      open.add(client);
      return client;
    },
    async close(client, ms = 10_000) {
      open.delete(client);
      await withTimeout(client.close(), ms, 'close');
    },
    async closeAll() {
      const all = [...open];
      open.clear();
      await Promise.all(all.map((c) => closeQuietly(c)));
    },
  };
}

/**
 * `twin.properties.reported.update(patch, cb)` (the device SDK's Twin has no promise form for it)
 * as a promise bounded by `ms`.
 */
function updateReported(twin, patch, ms = 10_000) {
  const done = new Promise((resolve, reject) => {
    twin.properties.reported.update(patch, (err) => (err ? reject(err) : resolve()));
  });
  return withTimeout(done, ms, 'reported properties update');
}

/**
 * Listens to a device Twin's 'properties.desired' event. Registering the listener makes the SDK
 * subscribe to desired property updates ($iothub/twin/PATCH/properties/desired/#); `subscribed()`
 * resolves once the hub acknowledged that subscription. It asks the SDK's Twin to enable the
 * updates again, which for a subscription already made or under way only waits for its SUBACK
 * (azure-iot-device-mqtt's MqttTwinClient topic state machine), so nothing extra goes on the wire.
 * The hub pushes only changes made after the subscription, as IoT Hub does.
 * `next(pred, ms)` resolves with the first event (seen before or after the call) that satisfies
 * `pred`. Note that the SDK also emits the desired section it already holds when a listener is
 * added, so the first event is usually the one from the last getTwin.
 */
function watchDesired(twin) {
  const seen = [];
  const waiters = [];
  twin.on('error', () => {}); // a failed subscription would otherwise crash the process
  twin.on('properties.desired', (patch) => {
    const copy = JSON.parse(JSON.stringify(patch));
    seen.push(copy);
    for (const w of [...waiters]) {
      if (w.pred(copy)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(copy);
      }
    }
  });
  return {
    seen,
    subscribed(ms = 10_000) {
      const p = new Promise((resolve, reject) => {
        twin.enableTwinDesiredPropertiesUpdates((err) => (err ? reject(err) : resolve()));
      });
      return withTimeout(p, ms, 'subscribe to desired property updates');
    },
    next(pred, ms = 5_000) {
      const hit = seen.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (v) => { clearTimeout(timer); resolve(v); } };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no matching desired property update within ${ms} ms; the device saw ${JSON.stringify(seen)}`));
        }, ms);
        waiters.push(w);
      });
    },
  };
}

module.exports = {
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
  clientTracker,
  updateReported,
  watchDesired,
  CONNECTION_ERRORS,
  TELEMETRY_SUCCESS,
  TELEMETRY_ATTEMPTS,
};
