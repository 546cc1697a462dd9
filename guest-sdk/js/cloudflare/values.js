// Stored values for the Cloudflare layer: what `ctx.storage.put` and RPC arguments and results
// carry. Cloudflare keeps structured-clone values (numbers, strings, booleans, null, Date, Map,
// Set, BigInt, ArrayBuffer and typed arrays, RegExp, Error, nested objects and arrays); wdo
// stores them as JSON text that every SDK can read:
//
// - A value JSON can say as it is (a string, a finite number, true/false, null, and arrays and
//   plain objects of those) is stored as that JSON: `42`, `"alice"`, `{"n":1,"tags":["a"]}`. So
//   the Rust and Python SDKs' JSON values and these are the same bytes.
// - Anything else is an object with a `$wdo` key naming the type, and `v` its content:
//     {"$wdo":"undefined"}                      undefined
//     {"$wdo":"number","v":"NaN"}               NaN, "Infinity", "-Infinity", "-0"
//     {"$wdo":"bigint","v":"12345678901234567890"}
//     {"$wdo":"date","v":1764633600000}         ms since the epoch ("NaN" for an invalid date)
//     {"$wdo":"map","v":[[key, value], ...]}    keys and values encoded alike
//     {"$wdo":"set","v":[value, ...]}
//     {"$wdo":"ArrayBuffer","v":"<base64>"}     also Uint8Array, Int8Array, Uint8ClampedArray,
//                                               Int16Array, Uint16Array, Int32Array, Uint32Array,
//                                               Float32Array, Float64Array, BigInt64Array,
//                                               BigUint64Array, DataView: the view's bytes,
//                                               little-endian
//     {"$wdo":"regexp","v":"a+b","flags":"gi"}
//     {"$wdo":"error","name":"TypeError","v":"the message"}
//     {"$wdo":"object","v":{...}}               a plain object that itself has a `$wdo` key
// - Values nest: `{"$wdo":"map","v":[["at",{"$wdo":"date","v":0}]]}`.
// - Functions, symbols and values that contain themselves cannot be stored (a DataCloneError,
//   as on Cloudflare). An object reached twice is stored twice (identity is not kept).

const TAG = '$wdo';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const VIEWS = {
  Uint8Array,
  Int8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  DataView,
};

export class DataCloneError extends Error {
  constructor(message) {
    super(message);
    this.name = 'DataCloneError';
  }
}

function toBase64(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function viewName(value) {
  if (value instanceof DataView) return 'DataView';
  const name = value.constructor && value.constructor.name;
  return VIEWS[name] ? name : 'Uint8Array';
}

function toJson(value, path) {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (Number.isFinite(value) && !Object.is(value, -0)) return value;
      return { [TAG]: 'number', v: Object.is(value, -0) ? '-0' : String(value) };
    case 'undefined':
      return { [TAG]: 'undefined' };
    case 'bigint':
      return { [TAG]: 'bigint', v: value.toString() };
    case 'function':
    case 'symbol':
      throw new DataCloneError(`a ${typeof value} cannot be stored or sent (${String(value).slice(0, 60)})`);
  }
  if (value === null) return null;
  if (path.has(value)) throw new DataCloneError('a value that contains itself cannot be stored or sent');
  path.add(value);
  try {
    if (Array.isArray(value)) {
      const out = new Array(value.length);
      for (let i = 0; i < value.length; i++) out[i] = toJson(value[i], path);
      return out;
    }
    if (value instanceof Date) {
      const ms = value.getTime();
      return { [TAG]: 'date', v: Number.isNaN(ms) ? 'NaN' : ms };
    }
    if (value instanceof Map) {
      return { [TAG]: 'map', v: [...value].map(([k, v]) => [toJson(k, path), toJson(v, path)]) };
    }
    if (value instanceof Set) return { [TAG]: 'set', v: [...value].map((v) => toJson(v, path)) };
    if (value instanceof ArrayBuffer) return { [TAG]: 'ArrayBuffer', v: toBase64(new Uint8Array(value)) };
    if (ArrayBuffer.isView(value)) {
      const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
      return { [TAG]: viewName(value), v: toBase64(bytes) };
    }
    if (value instanceof RegExp) return { [TAG]: 'regexp', v: value.source, flags: value.flags };
    if (value instanceof Error) return { [TAG]: 'error', name: value.name, v: value.message };
    const out = {};
    for (const key of Object.keys(value)) out[key] = toJson(value[key], path);
    return Object.prototype.hasOwnProperty.call(out, TAG) ? { [TAG]: 'object', v: out } : out;
  } finally {
    path.delete(value);
  }
}

function number(text) {
  return text === '-0' ? -0 : Number(text);
}

function fromJson(json) {
  if (json === null || typeof json !== 'object') return json;
  if (Array.isArray(json)) return json.map(fromJson);
  const tag = json[TAG];
  if (typeof tag !== 'string') {
    const out = {};
    for (const key of Object.keys(json)) out[key] = fromJson(json[key]);
    return out;
  }
  const v = json.v;
  switch (tag) {
    case 'undefined':
      return undefined;
    case 'number':
      return number(v);
    case 'bigint':
      return BigInt(v);
    case 'date':
      return new Date(v === 'NaN' ? NaN : v);
    case 'map':
      return new Map(v.map(([k, x]) => [fromJson(k), fromJson(x)]));
    case 'set':
      return new Set(v.map(fromJson));
    case 'ArrayBuffer':
      return fromBase64(v).buffer;
    case 'regexp':
      return new RegExp(v, json.flags);
    case 'error': {
      const Type = globalThis[json.name];
      const error = typeof Type === 'function' && Type.prototype instanceof Error ? new Type(v) : new Error(v);
      if (error.name !== json.name) error.name = json.name;
      return error;
    }
    case 'object': {
      const out = {};
      for (const key of Object.keys(v)) out[key] = fromJson(v[key]);
      return out;
    }
  }
  const View = VIEWS[tag];
  if (View) {
    const bytes = fromBase64(v);
    if (View === DataView) return new DataView(bytes.buffer);
    return new View(bytes.buffer, 0, bytes.byteLength / View.BYTES_PER_ELEMENT);
  }
  throw new TypeError(`a stored value has an unknown type \`${tag}\` (written by a newer wdo?)`);
}

/** The stored form of `value`: JSON text as bytes. */
export function encodeValue(value) {
  const t = typeof value;
  // The common cases need no walk.
  if (t === 'string' || t === 'boolean' || value === null || (t === 'number' && Number.isFinite(value) && !Object.is(value, -0))) {
    return encoder.encode(JSON.stringify(value));
  }
  return encoder.encode(JSON.stringify(toJson(value, new Set())));
}

/** The value `bytes` (from `encodeValue`, or any JSON) stand for. */
export function decodeValue(bytes) {
  const text = decoder.decode(bytes);
  let json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    // Not JSON: bytes some other code stored as they are; give them as text.
    return text;
  }
  return fromJson(json);
}
