// `ctx.storage`: Cloudflare's Durable Object storage API over the host's imports. Every call
// runs at once against the object's own database, inside the event's transaction (the host
// commits the event's writes together before its response leaves), so the promise-returning
// methods are already settled when they return. Values are structured (values.js).

import * as kv from 'wdo:object/storage@0.1.0';
import * as rawSql from 'wdo:object/sql@0.1.0';
import * as savepoints from 'wdo:object/transaction@0.1.0';
import * as rawAlarms from 'wdo:object/alarms@0.1.0';
import { decodeValue, encodeValue } from './values.js';

/** What a host import refused, as the `Error` Cloudflare code expects. */
export function host(call) {
  try {
    return call();
  } catch (e) {
    const payload = e && e.payload;
    if (payload && typeof payload.tag === 'string') {
      const error = new Error(String(payload.val));
      error.kind = payload.tag;
      throw error;
    }
    throw e;
  }
}

const settled = (work) => {
  try {
    return Promise.resolve(work());
  } catch (e) {
    return Promise.reject(e);
  }
};

function checkKey(key) {
  if (typeof key !== 'string') throw new TypeError(`storage keys are strings (got a ${typeof key})`);
  return key;
}

function listOptions(options = {}) {
  const text = (name) => {
    const value = options[name];
    if (value === undefined || value === null) return undefined;
    return checkKey(value);
  };
  if (options.start !== undefined && options.startAfter !== undefined) {
    throw new TypeError('list() takes either `start` or `startAfter`, not both');
  }
  const limit = options.limit;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new TypeError('list() `limit` is a positive integer');
  return {
    prefix: text('prefix'),
    start: text('start'),
    startAfter: text('startAfter'),
    end: text('end'),
    reverse: Boolean(options.reverse),
    limit,
  };
}

/** The synchronous key-value API (`ctx.storage.kv`, and what the async one runs). */
export const syncKv = {
  get(key) {
    if (Array.isArray(key)) {
      const entries = host(() => kv.getMany(key.map(checkKey)));
      return new Map(entries.map(([k, raw]) => [k, decodeValue(raw)]));
    }
    const raw = host(() => kv.get(checkKey(key)));
    return raw === undefined ? undefined : decodeValue(raw);
  },
  put(key, value) {
    if (typeof key === 'object' && key !== null) {
      const entries = Object.entries(key).map(([k, v]) => [k, encodeValue(v)]);
      host(() => kv.putMany(entries));
      return;
    }
    if (value === undefined) throw new TypeError('put() needs a value (use delete() to remove a key)');
    const raw = encodeValue(value);
    host(() => kv.put(checkKey(key), raw));
  },
  delete(key) {
    if (Array.isArray(key)) return host(() => kv.deleteMany(key.map(checkKey)));
    return host(() => kv.delete(checkKey(key)));
  },
  list(options) {
    const entries = host(() => kv.listEntries(listOptions(options)));
    return new Map(entries.map(([k, raw]) => [k, decodeValue(raw)]));
  },
};

// ---------------------------------------------------------------- SQL

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function toSql(value) {
  switch (typeof value) {
    case 'number':
      return Number.isInteger(value) ? { tag: 'integer', val: BigInt(value) } : { tag: 'real', val: value };
    case 'bigint':
      return { tag: 'integer', val: value };
    case 'string':
      return { tag: 'text', val: value };
    case 'boolean':
      return { tag: 'integer', val: value ? 1n : 0n };
    case 'undefined':
      return { tag: 'null' };
  }
  if (value === null) return { tag: 'null' };
  if (value instanceof ArrayBuffer) return { tag: 'blob', val: new Uint8Array(value) };
  if (ArrayBuffer.isView(value)) return { tag: 'blob', val: new Uint8Array(value.buffer, value.byteOffset, value.byteLength) };
  throw new TypeError(`a SQL parameter is a number, bigint, string, boolean, null or bytes (got a ${value.constructor?.name ?? typeof value})`);
}

function fromSql(value) {
  switch (value.tag) {
    case 'null':
      return null;
    case 'integer':
      return value.val >= -MAX_SAFE && value.val <= MAX_SAFE ? Number(value.val) : value.val;
    case 'blob':
      return value.val.buffer.slice(value.val.byteOffset, value.val.byteOffset + value.val.byteLength);
    default:
      return value.val;
  }
}

/** What `sql.exec` returns: the rows, iterable once, with their counts. */
export class SqlCursor {
  constructor(result) {
    this.columnNames = result.columns;
    this.rowsRead = Number(result.rowsRead);
    this.rowsWritten = Number(result.rowsWritten);
    this.rows = result.rows;
    this.position = 0;
  }
  row(values) {
    const row = {};
    this.columnNames.forEach((name, i) => {
      row[name] = fromSql(values[i]);
    });
    return row;
  }
  next() {
    if (this.position >= this.rows.length) return { done: true, value: undefined };
    return { done: false, value: this.row(this.rows[this.position++]) };
  }
  [Symbol.iterator]() {
    return this;
  }
  toArray() {
    return [...this];
  }
  one() {
    const rest = this.rows.length - this.position;
    if (rest === 0) throw new Error('Expected exactly one result from SQL query, but got no results.');
    if (rest > 1) throw new Error('Expected exactly one result from SQL query, but got multiple results.');
    return this.next().value;
  }
  /** The rest of the rows as arrays of values, in column order. */
  *raw() {
    while (this.position < this.rows.length) yield this.rows[this.position++].map(fromSql);
  }
}

export const sql = {
  exec(query, ...bindings) {
    if (typeof query !== 'string') throw new TypeError('sql.exec takes the SQL text first');
    const params = bindings.map(toSql);
    return new SqlCursor(host(() => rawSql.exec(query, params)));
  },
  get databaseSize() {
    return Number(host(() => rawSql.databaseSize()));
  },
};

// ---------------------------------------------------------------- the storage object

function alarmTime(time) {
  const ms = time instanceof Date ? time.getTime() : Number(time);
  if (!Number.isFinite(ms)) throw new TypeError('setAlarm() takes a Date or milliseconds since the epoch');
  return BigInt(Math.round(ms));
}

class Transaction {
  constructor() {
    this.rolledBack = false;
  }
  get(key, _options) {
    return settled(() => syncKv.get(key));
  }
  put(key, value, _options) {
    return settled(() => syncKv.put(key, value));
  }
  delete(key, _options) {
    return settled(() => syncKv.delete(key));
  }
  list(options) {
    return settled(() => syncKv.list(options));
  }
  getAlarm(_options) {
    return settled(() => {
      const at = host(() => rawAlarms.get());
      return at === undefined ? null : Number(at);
    });
  }
  setAlarm(time, _options) {
    return settled(() => host(() => rawAlarms.set(alarmTime(time))));
  }
  deleteAlarm(_options) {
    return settled(() => host(() => rawAlarms.delete()));
  }
  /** Undoes what the transaction wrote so far; it ends when its function returns. */
  rollback() {
    this.rolledBack = true;
  }
}

export class DurableObjectStorage extends Transaction {
  constructor() {
    super();
    this.kv = syncKv;
    this.sql = sql;
  }
  /** Empties the object: key-value data, SQL tables, views and triggers, and the alarm (the host does it all). */
  deleteAll(_options) {
    return settled(() => host(() => kv.deleteAll()));
  }
  getCurrentBookmark() {
    return settled(() => host(() => kv.currentBookmark()));
  }
  getBookmarkForTime(time) {
    return settled(() => host(() => kv.bookmarkForTime(alarmTime(time))));
  }
  onNextSessionRestoreBookmark(bookmark) {
    return settled(() => host(() => kv.restoreOnNextSession(String(bookmark))));
  }
  /** Runs `closure(txn)` in a savepoint: it keeps its writes, or none if it throws or calls `txn.rollback()`. */
  async transaction(closure) {
    const savepoint = host(() => savepoints.savepoint());
    const txn = new Transaction();
    let result;
    try {
      result = await closure(txn);
    } catch (e) {
      host(() => savepoints.rollback(savepoint));
      throw e;
    }
    host(() => (txn.rolledBack ? savepoints.rollback(savepoint) : savepoints.release(savepoint)));
    return result;
  }
  transactionSync(closure) {
    const savepoint = host(() => savepoints.savepoint());
    let result;
    try {
      result = closure();
    } catch (e) {
      host(() => savepoints.rollback(savepoint));
      throw e;
    }
    host(() => savepoints.release(savepoint));
    return result;
  }
  /** Writes are durable when the event commits, before its response leaves: nothing to wait for. */
  sync() {
    return Promise.resolve();
  }
  getCurrentBookmark() {
    return Promise.reject(new Error('bookmarks (point-in-time recovery) are not supported by wdo yet'));
  }
}
