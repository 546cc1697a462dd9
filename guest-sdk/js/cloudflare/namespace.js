// Durable Object namespaces (`env.COUNTER`), ids and stubs, over the host's `objects` import.
// Both worlds have it, so a worker and an object reach other objects alike.
//
// RPC: `await stub.increment(5, 'x')` calls the object's `call` export with method `increment`
// and the arguments as one stored value (see values.js): the array of arguments. The callee
// spreads an array (any other value is one argument, so a wdo SDK caller's JSON argument
// works). The result comes back the same way; the callee's error comes back as an `Error`
// with its message.

import * as rawObjects from 'wdo:object/objects@0.1.0';
import { decodeValue, encodeValue } from './values.js';
import { fromRequest, toResponse } from './web.js';

/** A Durable Object's id: 64 hex digits, and the name it was made from, if any. */
export class DurableObjectId {
  constructor(hex, name) {
    this.hex = hex;
    this.name = name;
  }
  toString() {
    return this.hex;
  }
  equals(other) {
    return other instanceof DurableObjectId && other.hex === this.hex;
  }
}

/** What a failed host call says, as an `Error` with Cloudflare's fields where they apply. */
function callError(e, what) {
  const failure = e && e.payload;
  if (!failure || typeof failure.message !== 'string') return e;
  const error = new Error(failure.message);
  error.retryable = failure.retryable;
  error.overloaded = failure.overloaded;
  error.remote = failure.fromCallee;
  if (!failure.fromCallee) error.message = `${what}: ${failure.message}`;
  return error;
}

function hostError(e) {
  const payload = e && e.payload;
  if (payload && typeof payload.tag === 'string') return new TypeError(String(payload.val));
  return e;
}

// Names a stub answers itself; every other property is an RPC method. `then` must not be one,
// or `await stub` would call it.
const OWN = new Set(['id', 'name', 'fetch', 'then', 'toJSON', 'constructor']);

class Stub {
  constructor(className, id) {
    this.className = className;
    this.id = id;
    this.name = id.name;
  }

  /** Sends an HTTP request to the object: `fetch(request)` or `fetch(url, init)`. */
  async fetch(input, init) {
    const request = await fromRequest(typeof input === 'string' || input instanceof URL ? new URL(input, 'http://do/') : input, init);
    let raw;
    try {
      raw = rawObjects.fetch(this.className, this.id.hex, request);
    } catch (e) {
      throw callError(e, `fetch to ${this.className}`);
    }
    return toResponse(raw);
  }

  call(method, args) {
    let raw;
    try {
      raw = rawObjects.call(this.className, this.id.hex, method, encodeValue(args));
    } catch (e) {
      throw callError(e, `${this.className}.${method}()`);
    }
    return raw.length === 0 ? undefined : decodeValue(raw);
  }
}

function stub(className, id) {
  const target = new Stub(className, id);
  return new Proxy(target, {
    get(target, property) {
      if (typeof property !== 'string' || OWN.has(property)) {
        const value = target[property];
        return typeof value === 'function' ? value.bind(target) : value;
      }
      return async (...args) => target.call(property, args);
    },
  });
}

/** `env.<BINDING>`: the Durable Object class a binding names. */
export class DurableObjectNamespace {
  constructor(className) {
    this.className = className;
  }
  idFromName(name) {
    if (typeof name !== 'string') throw new TypeError('idFromName takes a string');
    try {
      return new DurableObjectId(rawObjects.idFromName(this.className, name), name);
    } catch (e) {
      throw hostError(e);
    }
  }
  newUniqueId(_options) {
    try {
      return new DurableObjectId(rawObjects.newUniqueId(this.className), undefined);
    } catch (e) {
      throw hostError(e);
    }
  }
  /** The id `hex` stands for; refused unless it is an id of this class. */
  idFromString(hex) {
    try {
      return new DurableObjectId(rawObjects.idFromString(this.className, String(hex)), undefined);
    } catch (e) {
      throw hostError(e);
    }
  }
  get(id, _options) {
    if (!(id instanceof DurableObjectId)) throw new TypeError('get() takes an id from idFromName, newUniqueId or idFromString');
    return stub(this.className, id);
  }
  getByName(name, _options) {
    return this.get(this.idFromName(name));
  }
  /** One host has one jurisdiction: the namespace itself. */
  jurisdiction(_name) {
    return this;
  }
}

/** The RPC arguments a caller sent, as a list (see the note at the top). */
export function decodeArguments(raw) {
  if (raw.length === 0) return [];
  const value = decodeValue(raw);
  return Array.isArray(value) ? value : [value];
}

/**
 * The `env` of a worker or object: its Durable Object bindings, then its vars and secrets
 * (`readVar`, the host's `context.env`). `project()` gives what the build knows:
 * `{ bindings: { BINDING: 'ClassName' }, vars: { NAME: 'json' | 'text' } }`; vars written as
 * JSON in the config (an object, a number) come back as that value.
 */
export function makeEnv(project, readVar) {
  const namespaces = new Map();
  const read = (key) => {
    const { bindings, vars } = project();
    if (Object.prototype.hasOwnProperty.call(bindings, key)) {
      if (!namespaces.has(key)) namespaces.set(key, new DurableObjectNamespace(bindings[key]));
      return namespaces.get(key);
    }
    const text = readVar(key);
    if (text === undefined || vars[key] !== 'json') return text;
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  };
  const keys = () => {
    const { bindings, vars } = project();
    return [...Object.keys(bindings), ...Object.keys(vars)].filter((key) => read(key) !== undefined);
  };
  return new Proxy(
    {},
    {
      get: (_, key) => (typeof key === 'string' ? read(key) : undefined),
      has: (_, key) => typeof key === 'string' && read(key) !== undefined,
      ownKeys: keys,
      getOwnPropertyDescriptor: (_, key) => {
        const value = typeof key === 'string' ? read(key) : undefined;
        return value === undefined ? undefined : { value, enumerable: true, configurable: true, writable: false };
      },
    },
  );
}
