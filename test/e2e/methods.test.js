'use strict';

// Direct methods, called the way an IoT Hub user calls them: azure-iothub's service Client
// (invokeDeviceMethod) against devices and modules that listen through azure-iot-device over Mqtt
// (TLS, 8883) and MqttWs (WebSockets, 443).
//
// What the SDKs do (read from node_modules, versions in package.json):
// - invokeDeviceMethod(deviceId[, moduleId], params) POSTs /twins/{id}[/modules/{mid}]/methods
//   with {methodName, payload, responseTimeoutInSeconds, connectTimeoutInSeconds} (defaults 30
//   and 0; a null/undefined payload is sent as null) and resolves with { result: the parsed body
//   {status, payload}, message: the HTTP response }.
// - Errors go through RestApiClient.translateError: 400 ArgumentError, 404 DeviceNotFoundError
//   only when the legacy body's ErrorCode is DeviceNotFound (any other 404, DeviceNotOnline
//   included, is a plain Error('Not found')), 504 GatewayTimeoutError; err.response and
//   err.responseBody hold the HTTP answer.
// - The service Client retries with ExponentialBackOffWithJitter for up to 4 minutes
//   (MAX_RETRY_TIMEOUT in dist/client.js) on the errors its DefaultErrorFilter marks retryable:
//   InternalServerError (500), ServiceUnavailableError (503), ThrottlingError (429),
//   NotConnectedError and TimeoutError. 404, 400 and 504 are not retried, but a hub that answered
//   500 or 503 would keep a test busy for minutes, so every service Client here has NoRetry.
// - The device SDK subscribes to $iothub/methods/POST/# when the first handler is registered
//   (onDeviceMethod / ModuleClient.onMethod) and tells no one when the SUBACK comes. The first
//   call after registering therefore passes connectTimeoutInSeconds, which is what IoT Hub offers
//   for a device that is still connecting or subscribing; later calls use the default 0.
// - A request payload reaches the handler as request.payload = JSON.parse(body); the handler's
//   response.send(status, payload) publishes JSON.stringify(payload) to
//   $iothub/methods/res/{status}/?$rid=...

const { describe, it: nodeIt, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { Client: ServiceClient } = require('azure-iothub');
const { NoRetry: ServiceNoRetry } = require('azure-iothub/dist/common-core/retry_policy');
const { Client, ModuleClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');

const {
  errors,
  connectionString,
  uniqueId,
  ownerRegistry,
  haveRoostBin,
  policyConnectionString,
  describeHttp,
  expectHttpError,
  deleteQuietly,
} = require('./helpers');
const {
  deviceConnectionString,
  withTimeout,
  rejectionOf,
  clientTracker,
} = require('./device-helpers');

const TEST_TIMEOUT = 30_000; // per test
const OP_TIMEOUT = 10_000; // per SDK call that is not a method call with its own timeouts
const FIRST_CALL_CONNECT_TIMEOUT = 5; // s: covers the handler's subscription still in flight

const it = (name, opts, fn) => (fn
  ? nodeIt(name, { timeout: TEST_TIMEOUT, ...opts }, fn)
  : nodeIt(name, { timeout: TEST_TIMEOUT }, opts));

const UNAUTHORIZED = ['IotHubUnauthorizedAccess', 'IotHubUnauthorized'];
const needsBin = haveRoostBin ? {} : { skip: 'ROOST_BIN / ROOST_DATA_DIR not set' };

const registry = ownerRegistry();
const service = ServiceClient.fromConnectionString(connectionString);
service.setRetryPolicy(new ServiceNoRetry());
const created = new Set();
const clients = clientTracker();

after(async () => {
  await clients.closeAll();
  await deleteQuietly(registry, created);
  try {
    await withTimeout(service.close(), 5_000, 'service client close');
  } catch (_) {
    // never opened (invokeDeviceMethod is plain REST)
  }
});

async function createDevice(what) {
  const deviceId = uniqueId(what);
  created.add(deviceId);
  const { responseBody: dev } = await withTimeout(registry.create({ deviceId }), OP_TIMEOUT, 'registry.create');
  const key = dev.authentication.symmetricKey.primaryKey;
  return { deviceId, key, cs: deviceConnectionString(deviceId, key) };
}

async function openClient(cs, Transport, ClientClass = Client) {
  const client = clients.track(ClientClass.fromConnectionString(cs, Transport));
  await withTimeout(client.open(), OP_TIMEOUT, 'open');
  return client;
}

/**
 * Calls a method and bounds the wait a little beyond the call's own timeouts (the SDK's HTTP
 * request timeout is their sum and only emits an event nobody listens to, so it never fires).
 */
function invoke(deviceId, moduleId, params) {
  const args = moduleId ? [deviceId, moduleId, params] : [deviceId, params];
  const budget = ((params.responseTimeoutInSeconds || 30) + (params.connectTimeoutInSeconds || 0)) * 1000 + 5_000;
  return withTimeout(service.invokeDeviceMethod(...args), budget, `invokeDeviceMethod ${params.methodName}`);
}

/**
 * The handler most tests use: records each request's payload and answers 200 with it.
 * Returns the list of payloads received.
 */
function echoHandler() {
  const received = [];
  const handler = (request, response) => {
    received.push(request.payload);
    response.send(200, request.payload, () => {});
  };
  return { received, handler };
}

/**
 * The body IoT Hub sends with 404103 and 504101: {"Message":"<JSON>","ExceptionMessage":...}
 * whose Message is itself JSON with errorCode, trackingId, message, info.timeout, timestampUtc.
 * Returns the inner object.
 */
function nestedError(err) {
  let outer;
  try {
    outer = JSON.parse(err.responseBody);
  } catch (e) {
    assert.fail(`error body is not JSON: ${describeHttp(err)}`);
  }
  assert.equal(typeof outer.Message, 'string', `body lacks "Message": ${describeHttp(err)}`);
  let inner;
  try {
    inner = JSON.parse(outer.Message);
  } catch (e) {
    assert.fail(`"Message" is not nested JSON: ${describeHttp(err)}`);
  }
  return inner;
}

function assertDeviceNotOnline(err) {
  assert.ok(!(err instanceof errors.DeviceNotFoundError), `a known device is not DeviceNotFound: ${describeHttp(err)}`);
  assert.equal(err.message, 'Not found', `the SDK turns a 404 that is not DeviceNotFound into Error('Not found'); ${describeHttp(err)}`);
  assert.ok(err.response, `expected an HTTP answer: ${err && err.stack}`);
  assert.equal(err.response.statusCode, 404, describeHttp(err));
  assert.equal(err.response.headers['iothub-errorcode'], 'DeviceNotOnline', describeHttp(err));
  const inner = nestedError(err);
  assert.equal(inner.errorCode, 404103, describeHttp(err));
  assert.equal(typeof inner.trackingId, 'string', describeHttp(err));
  assert.equal(typeof inner.message, 'string', describeHttp(err));
}

const TRANSPORTS = [
  { name: 'Mqtt', Transport: Mqtt },
  { name: 'MqttWs', Transport: MqttWs },
];

for (const { name, Transport } of TRANSPORTS) {
  describe(`direct methods over ${name}`, () => {
    const lname = name.toLowerCase();

    it('payloads null, "", "foo", {k1:"v1"} and {} go to the device and come back', async () => {
      const dev = await createDevice(`m-echo-${lname}`);
      const client = await openClient(dev.cs, Transport);
      const { received, handler } = echoHandler();
      client.onDeviceMethod('method1', handler);

      const payloads = [null, '', 'foo', { k1: 'v1' }, {}];
      for (const [i, payload] of payloads.entries()) {
        const params = { methodName: 'method1', payload };
        if (i === 0) params.connectTimeoutInSeconds = FIRST_CALL_CONNECT_TIMEOUT;
        const { result, message } = await invoke(dev.deviceId, null, params);
        const label = `payload ${JSON.stringify(payload)}`;
        assert.equal(message.statusCode, 200, label);
        assert.equal(result.status, 200, `${label}: ${JSON.stringify(result)}`);
        assert.deepEqual(result.payload, payload, `${label}: the answer's payload`);
        assert.equal(received.length, i + 1, `${label}: the device got ${JSON.stringify(received)}`);
        assert.deepEqual(received[i], payload, `${label}: what the device received`);
      }
      await clients.close(client);
    });

    it('ModuleClient.onMethod answers invokeDeviceMethod(deviceId, moduleId, params)', async () => {
      const dev = await createDevice(`m-mod-${lname}`);
      const moduleId = 'e2e-method-module';
      const { responseBody: mod } = await withTimeout(registry.addModule({ deviceId: dev.deviceId, moduleId }),
        OP_TIMEOUT, 'addModule');
      const cs = deviceConnectionString(dev.deviceId, mod.authentication.symmetricKey.primaryKey, moduleId);
      const client = await openClient(cs, Transport, ModuleClient);
      const received = [];
      client.onMethod('reboot', (request, response) => {
        received.push({ methodName: request.methodName, payload: request.payload });
        response.send(200, { module: moduleId, echo: request.payload }, () => {});
      });

      const { result } = await invoke(dev.deviceId, moduleId, {
        methodName: 'reboot', payload: { delay: 1 }, connectTimeoutInSeconds: FIRST_CALL_CONNECT_TIMEOUT,
      });
      assert.equal(result.status, 200, JSON.stringify(result));
      assert.deepEqual(result.payload, { module: moduleId, echo: { delay: 1 } });
      assert.deepEqual(received, [{ methodName: 'reboot', payload: { delay: 1 } }]);

      // The module's subscription is the module's: the device itself is not listening.
      const err = await rejectionOf(invoke(dev.deviceId, null, { methodName: 'reboot' }), 'device call');
      assertDeviceNotOnline(err);
      await clients.close(client);
    });

    it("the device's status is passed through: send(404, {e:1}) gives result.status 404", async () => {
      const dev = await createDevice(`m-404-${lname}`);
      const client = await openClient(dev.cs, Transport);
      client.onDeviceMethod('missing', (request, response) => response.send(404, { e: 1 }, () => {}));
      const { result, message } = await invoke(dev.deviceId, null, {
        methodName: 'missing', payload: null, connectTimeoutInSeconds: FIRST_CALL_CONNECT_TIMEOUT,
      });
      assert.equal(message.statusCode, 200, 'the call itself succeeds');
      assert.deepEqual(result, { status: 404, payload: { e: 1 } });
      await clients.close(client);
    });

    it('a connected device without a handler is DeviceNotOnline (404, 404103)', async () => {
      const dev = await createDevice(`m-nohandler-${lname}`);
      const client = await openClient(dev.cs, Transport);
      // Connected, and even subscribed to something else (its twin), but not to methods.
      await withTimeout(client.getTwin(), OP_TIMEOUT, 'getTwin');
      const started = Date.now();
      const err = await rejectionOf(invoke(dev.deviceId, null, { methodName: 'method1', payload: 1 }), 'invoke');
      assertDeviceNotOnline(err);
      assert.ok(Date.now() - started < 3_000, `took ${Date.now() - started} ms with connectTimeoutInSeconds 0`);
      await clients.close(client);
    });

    it('a handler that never answers: GatewayTimeoutError (504, 504101) after responseTimeoutInSeconds 5', async () => {
      const dev = await createDevice(`m-slow-${lname}`);
      const client = await openClient(dev.cs, Transport);
      let calls = 0;
      client.onDeviceMethod('sleep', () => { calls += 1; }); // never answers
      // One subscription ($iothub/methods/POST/#) serves every handler: wait until it is in place
      // through a method that does answer, so that the 5 s below are only the device's.
      client.onDeviceMethod('ping', (request, response) => response.send(200, null, () => {}));
      const { result: pong } = await invoke(dev.deviceId, null, {
        methodName: 'ping', connectTimeoutInSeconds: FIRST_CALL_CONNECT_TIMEOUT,
      });
      assert.equal(pong.status, 200);

      const started = Date.now();
      const err = await rejectionOf(invoke(dev.deviceId, null, { methodName: 'sleep', responseTimeoutInSeconds: 5 }), 'invoke');
      const elapsed = Date.now() - started;
      assert.ok(err instanceof errors.GatewayTimeoutError, `expected GatewayTimeoutError, got ${err.name}; ${describeHttp(err)}`);
      assert.equal(err.response.statusCode, 504, describeHttp(err));
      assert.equal(err.response.headers['iothub-errorcode'], 'GatewayTimeout', describeHttp(err));
      const inner = nestedError(err);
      assert.equal(inner.errorCode, 504101, describeHttp(err));
      assert.equal(calls, 1, 'the device got the call');
      assert.ok(elapsed >= 4_800 && elapsed < 8_000, `gave up after ${elapsed} ms, expected about 5 s`);
      await clients.close(client);
    });

    it('a device that disconnects before answering: GatewayTimeoutError at once', async () => {
      const dev = await createDevice(`m-gone-${lname}`);
      const client = await openClient(dev.cs, Transport);
      client.onDeviceMethod('leave', () => { setTimeout(() => clients.close(client).catch(() => {}), 200); });
      const started = Date.now();
      const err = await rejectionOf(invoke(dev.deviceId, null, {
        methodName: 'leave', responseTimeoutInSeconds: 20, connectTimeoutInSeconds: FIRST_CALL_CONNECT_TIMEOUT,
      }), 'invoke');
      const elapsed = Date.now() - started;
      assert.ok(err instanceof errors.GatewayTimeoutError, `expected GatewayTimeoutError, got ${err.name}; ${describeHttp(err)}`);
      assert.equal(nestedError(err).errorCode, 504101, describeHttp(err));
      assert.ok(elapsed < 5_000, `the hub waited ${elapsed} ms for a device that had gone`);
    });

    it('connectTimeoutInSeconds 20 waits for a device that connects and registers 3 s later', async () => {
      const dev = await createDevice(`m-late-${lname}`);
      const { received, handler } = echoHandler();
      const started = Date.now();
      const call = invoke(dev.deviceId, null, {
        methodName: 'method1', payload: { late: true }, connectTimeoutInSeconds: 20, responseTimeoutInSeconds: 10,
      });
      // (keep a rejection from being unhandled while the device is being set up)
      call.catch(() => {});
      await new Promise((r) => setTimeout(r, 3_000));
      const client = await openClient(dev.cs, Transport);
      client.onDeviceMethod('method1', handler);
      const { result } = await call;
      const elapsed = Date.now() - started;
      assert.deepEqual(result, { status: 200, payload: { late: true } });
      assert.deepEqual(received, [{ late: true }]);
      assert.ok(elapsed >= 3_000 && elapsed < 15_000, `answered after ${elapsed} ms`);
      await clients.close(client);
    });
  });
}

describe('direct methods: errors', () => {
  let dev;
  let client;
  let calls = 0;

  before(async () => {
    dev = await createDevice('m-err');
    client = await openClient(dev.cs, Mqtt);
    client.onDeviceMethod('method1', (request, response) => {
      calls += 1;
      response.send(200, null, () => {});
    });
    // Make sure the handler listens, so that only a validation can refuse the calls below.
    const { result } = await invoke(dev.deviceId, null, {
      methodName: 'method1', connectTimeoutInSeconds: FIRST_CALL_CONNECT_TIMEOUT,
    });
    assert.equal(result.status, 200);
    calls = 0;
  });

  it('a registered device that is not connected is DeviceNotOnline (404, 404103)', async () => {
    const offline = await createDevice('m-offline');
    const started = Date.now();
    const err = await rejectionOf(invoke(offline.deviceId, null, { methodName: 'method1', payload: 'x' }), 'invoke');
    assertDeviceNotOnline(err);
    assert.ok(Date.now() - started < 3_000, `took ${Date.now() - started} ms with connectTimeoutInSeconds 0`);
  });

  it('an unknown device is DeviceNotFoundError (404)', async () => {
    await expectHttpError(invoke(uniqueId('m-nodev'), null, { methodName: 'method1' }),
      errors.DeviceNotFoundError, { status: 404, code: 'DeviceNotFound' });
  });

  it('an unknown module is a 404 ModuleNotFound', async () => {
    const err = await expectHttpError(invoke(dev.deviceId, 'no-such-module', { methodName: 'method1' }),
      Error, { status: 404, code: 'ModuleNotFound' });
    assert.ok(!(err instanceof errors.DeviceNotFoundError), describeHttp(err));
  });

  it('only a policy with ServiceConnect may invoke: registryRead and device get UnauthorizedError', needsBin, async () => {
    for (const policy of ['registryRead', 'registryReadWrite', 'device']) {
      const other = ServiceClient.fromConnectionString(policyConnectionString(policy));
      other.setRetryPolicy(new ServiceNoRetry());
      await expectHttpError(withTimeout(other.invokeDeviceMethod(dev.deviceId, { methodName: 'method1' }), 5_000, policy),
        errors.UnauthorizedError, { status: 401, code: UNAUTHORIZED });
    }
    assert.equal(calls, 0, 'the device must not be called');
    const serviceOnly = ServiceClient.fromConnectionString(policyConnectionString('service'));
    serviceOnly.setRetryPolicy(new ServiceNoRetry());
    const { result } = await withTimeout(serviceOnly.invokeDeviceMethod(dev.deviceId, { methodName: 'method1' }), 5_000,
      'service policy');
    assert.equal(result.status, 200);
    assert.equal(calls, 1);
    calls = 0;
  });

  const BAD = [
    ['methodName with a space', { methodName: 'bad name' }],
    ['a 129 KB payload', { methodName: 'method1', payload: 'x'.repeat(129 * 1024) }],
    ['responseTimeoutInSeconds 301', { methodName: 'method1', responseTimeoutInSeconds: 301 }],
    ['connectTimeoutInSeconds 301', { methodName: 'method1', connectTimeoutInSeconds: 301 }],
  ];
  for (const [what, params] of BAD) {
    it(`${what} is ArgumentError (400, ArgumentInvalid)`, async () => {
      // Bound the wait by a few seconds: a refused call must not wait for its timeouts.
      const p = withTimeout(service.invokeDeviceMethod(dev.deviceId, params), 5_000, `invoke (${what})`);
      await expectHttpError(p, errors.ArgumentError, { status: 400, code: 'ArgumentInvalid' });
      assert.equal(calls, 0, 'the device must not be called');
    });
  }
});
