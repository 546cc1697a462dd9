// wdo for JavaScript, part 2 of 3: who the component is, and calls to objects. Imports only
// `context` and `objects`, which both worlds (`durable-object` and `worker`) have.

import * as rawContext from 'wdo:object/context@0.1.0';
import * as rawObjects from 'wdo:object/objects@0.1.0';
import { HttpError, Response, encoder, decoder, host, toBytes } from './http.js';

/** This code's settings: `env.API_KEY` is a secret of its class (`wdo secret put`), else a var
 * of its deployed version (`vars` in `wdo.toml`); `undefined` when neither has it. */
export const env = new Proxy(
  {},
  {
    get: (_, key) => (typeof key === 'string' ? rawContext.env(key) : undefined),
    has: (_, key) => typeof key === 'string' && rawContext.env(key) !== undefined,
  },
);

// The platform's `fetch` (over wasi:http) reports any failure as "NetworkError"; the host knows
// why (a refusal names the host and the manifest key to change), so say that instead.
const platformFetch = globalThis.fetch;
if (typeof platformFetch === 'function') {
  globalThis.fetch = async function fetch(input, init) {
    try {
      return await platformFetch(input, init);
    } catch (e) {
      const why = rawContext.lastRequestError();
      if (why !== undefined) throw new TypeError(why, { cause: e });
      throw e;
    }
  };
}

/** Who this object is, logging and time. */
export const context = {
  id: () => rawContext.objectId(),
  name: () => rawContext.objectName(),
  className: () => rawContext.className(),
  now: () => Number(rawContext.nowMs()),
  log: (level, message) => rawContext.log(level, String(message)),
};

/**
 * Why a call to another object failed, as an `HttpError`: 503 when it is safe to retry
 * (overloaded, not run), 500 when the callee failed, 400 for a bad call (unknown class, a
 * re-entrant call, too deep a chain); `fromCallee`, `retryable` and `overloaded` tell more.
 */
function callError(e) {
  const failure = e && e.payload;
  if (!failure || typeof failure.message !== 'string') return e;
  const status = failure.retryable ? 503 : failure.fromCallee ? 500 : 400;
  const { fromCallee, retryable, overloaded } = failure;
  return Object.assign(new HttpError(status, failure.message), { fromCallee, retryable, overloaded });
}

/** Another object: `objects.get('counter', 'alice').call('increment', 1)`. */
export class Stub {
  constructor(className, id) {
    this.className = className;
    this.id = id;
  }
  /** Calls the object's method with JSON arguments; answers its JSON result. */
  call(method, args = null) {
    try {
      const raw = rawObjects.call(this.className, this.id, method, encoder.encode(JSON.stringify(args)));
      return raw.length === 0 ? undefined : JSON.parse(decoder.decode(raw));
    } catch (e) {
      throw callError(e);
    }
  }
  /** Sends an HTTP request (a `Request` or `{ method, path, query, headers, body }`) to the object. */
  fetch({ method = 'GET', path = '/', query = '', headers = [], body } = {}) {
    try {
      const raw = rawObjects.fetch(this.className, this.id, { method, path, query, headers, body: toBytes(body) });
      return new Response(raw.body, { status: raw.status, headers: raw.headers });
    } catch (e) {
      throw callError(e);
    }
  }
}

export const objects = {
  get: (className, name) => new Stub(className, host(() => rawObjects.idFromName(className, name))),
  byId: (className, id) => new Stub(className, host(() => rawObjects.idFromString(className, id))),
  newUniqueId: (className) => host(() => rawObjects.newUniqueId(className)),
};
