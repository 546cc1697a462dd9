// wdo for JavaScript, part 2 of 3: who the component is, and calls to objects. Imports only
// `context` and `objects`, which both worlds (`durable-object` and `worker`) have.

import * as rawContext from 'wdo:object/context@0.1.0';
import * as rawObjects from 'wdo:object/objects@0.1.0';
import { HttpError, Response, encoder, decoder, host, toBytes } from './http.js';

/** Who this object is, logging and time. */
export const context = {
  id: () => rawContext.objectId(),
  name: () => rawContext.objectName(),
  className: () => rawContext.className(),
  now: () => Number(rawContext.nowMs()),
  log: (level, message) => rawContext.log(level, String(message)),
};

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
      const failure = e && e.payload;
      if (failure && typeof failure.message === 'string') {
        const error = new HttpError(failure.overloaded ? 503 : 500, failure.message);
        Object.assign(error, { fromCallee: failure.fromCallee, retryable: failure.retryable, overloaded: failure.overloaded });
        throw error;
      }
      throw e;
    }
  }
  /** Sends an HTTP request (a `Request` or `{ method, path, query, headers, body }`) to the object. */
  fetch({ method = 'GET', path = '/', query = '', headers = [], body } = {}) {
    try {
      const raw = rawObjects.fetch(this.className, this.id, { method, path, query, headers, body: toBytes(body) });
      return new Response(raw.body, { status: raw.status, headers: raw.headers });
    } catch (e) {
      const failure = e && e.payload;
      if (failure && typeof failure.message === 'string') throw new HttpError(failure.overloaded ? 503 : 500, failure.message);
      throw e;
    }
  }
}

export const objects = {
  get: (className, name) => new Stub(className, host(() => rawObjects.idFromName(className, name))),
  byId: (className, id) => new Stub(className, host(() => rawObjects.idFromString(className, id))),
  newUniqueId: (className) => host(() => rawObjects.newUniqueId(className)),
};
