// wdo for JavaScript: durable objects as WebAssembly components, built with componentize-js.
//
//   import { DurableObject, Response, serve, storage } from '../../guest-sdk/js/wdo.js';
//
//   class Counter extends DurableObject {
//     fetch(request) {
//       const value = (storage.get('value') ?? 0) + 1;
//       storage.put('value', value);
//       return Response.text(String(value));
//     }
//   }
//   export const handler = serve(Counter);
//
// A thin layer over the imports of the WIT world `wdo:object/durable-object` (declarations in
// ./types). Values in key-value storage are JSON, as with the Rust SDK, so either language
// reads the other's data. Throw an `HttpError` to answer with a status (the event's writes
// stay, as with any response); any other exception traps: the event is rolled back and the
// caller gets a 500 with the message.

import * as kv from 'wdo:object/storage@0.1.0';
import * as rawSql from 'wdo:object/sql@0.1.0';
import * as savepoints from 'wdo:object/transaction@0.1.0';
import * as rawAlarms from 'wdo:object/alarms@0.1.0';
import * as rawSockets from 'wdo:object/websockets@0.1.0';
import { HttpError, Response, answer, decoder, encoder, host, reportUncaught, runRequestPath, settle } from './http.js';

export { HttpError, WdoError, Request, Response } from './http.js';
export { context, env, objects, Stub } from './objects.js';

/** Key-value storage; values are stored as JSON. */
export const storage = {
  get(key) {
    const raw = host(() => kv.get(key));
    return raw === undefined ? undefined : JSON.parse(decoder.decode(raw));
  },
  put(key, value) {
    host(() => kv.put(key, encoder.encode(JSON.stringify(value))));
  },
  /** True when the key existed. */
  delete(key) {
    return host(() => kv.delete(key));
  },
  getMany(keys) {
    return new Map(host(() => kv.getMany(keys)).map(([key, raw]) => [key, JSON.parse(decoder.decode(raw))]));
  },
  putMany(entries) {
    const pairs = entries instanceof Map ? [...entries] : Object.entries(entries);
    host(() => kv.putMany(pairs.map(([key, value]) => [key, encoder.encode(JSON.stringify(value))])));
  },
  deleteMany(keys) {
    return host(() => kv.deleteMany(keys));
  },
  /** `{ prefix, start, startAfter, end, reverse, limit }`, all optional. */
  list(options = {}) {
    const raw = host(() => kv.listEntries({ reverse: false, ...options }));
    return new Map(raw.map(([key, bytes]) => [key, JSON.parse(decoder.decode(bytes))]));
  },
  /** Empties the object: every key, every SQL table, view and trigger, and its alarm. */
  deleteAll() {
    host(() => kv.deleteAll());
  },
  /** A bookmark for the object's state now (needs the host's backup store, `--backup`). */
  currentBookmark() {
    return host(() => kv.currentBookmark());
  },
  /** A bookmark for the object's state at `ms` (milliseconds since the epoch, or a Date). */
  bookmarkForTime(ms) {
    return host(() => kv.bookmarkForTime(BigInt(Math.round(ms instanceof Date ? ms.getTime() : Number(ms)))));
  },
  /** At its next session the object comes back as it was at `bookmark`; returns the undo bookmark. */
  restoreOnNextSession(bookmark) {
    return host(() => kv.restoreOnNextSession(String(bookmark)));
  },
};

function toSqlValue(value) {
  if (value === null || value === undefined) return { tag: 'null' };
  if (typeof value === 'bigint') return { tag: 'integer', val: value };
  if (typeof value === 'boolean') return { tag: 'integer', val: value ? 1n : 0n };
  if (typeof value === 'number') return Number.isInteger(value) ? { tag: 'integer', val: BigInt(value) } : { tag: 'real', val: value };
  if (typeof value === 'string') return { tag: 'text', val: value };
  if (value instanceof Uint8Array) return { tag: 'blob', val: value };
  throw new HttpError(500, `cannot bind ${typeof value} to SQL (use null, numbers, bigint, strings or Uint8Array)`);
}

function fromSqlValue(value) {
  if (value.tag === 'null') return null;
  if (value.tag === 'integer') {
    const n = Number(value.val);
    return Number.isSafeInteger(n) ? n : value.val;
  }
  return value.val;
}

/** The object's SQLite database. Parameters bind to `?` in order. */
export const sql = {
  /** Runs statements; returns `{ columns, rows (arrays), rowsRead, rowsWritten }`. */
  exec(query, ...params) {
    const result = host(() => rawSql.exec(query, params.map(toSqlValue)));
    return {
      columns: result.columns,
      rows: result.rows.map((row) => row.map(fromSqlValue)),
      rowsRead: Number(result.rowsRead),
      rowsWritten: Number(result.rowsWritten),
    };
  },
  /** Runs one statement once per entry of `rows` (arrays of parameters), all or nothing. */
  execMany(query, rows) {
    const result = host(() => rawSql.execMany(query, rows.map((row) => row.map(toSqlValue))));
    return { rowsRead: Number(result.rowsRead), rowsWritten: Number(result.rowsWritten) };
  },
  /** Rows as objects keyed by column name. */
  query(query, ...params) {
    const { columns, rows } = sql.exec(query, ...params);
    return rows.map((row) => Object.fromEntries(columns.map((column, i) => [column, row[i]])));
  },
  /** The first row as an object, or undefined. */
  one(query, ...params) {
    return sql.query(query, ...params)[0];
  },
  /** Runs statements for their effect; returns the rows written. Cheaper than `exec`: no rows come back. */
  run(query, ...params) {
    return Number(host(() => rawSql.execute(query, params.map(toSqlValue))).rowsWritten);
  },
  /** Runs `fn` in a savepoint: kept if it returns, undone if it throws (the error goes on). */
  transaction(fn) {
    const savepoint = host(() => savepoints.savepoint());
    let result;
    try {
      result = fn();
    } catch (e) {
      host(() => savepoints.rollback(savepoint));
      throw e;
    }
    host(() => savepoints.release(savepoint));
    return result;
  },
  /** Runs the migrations the database has not seen (by `PRAGMA user_version`), all or nothing. */
  migrate(migrations) {
    const current = sql.one('PRAGMA user_version').user_version;
    if (current >= migrations.length) return 0;
    return sql.transaction(() => {
      for (const migration of migrations.slice(current)) sql.exec(migration);
      sql.exec(`PRAGMA user_version = ${migrations.length}`);
      return migrations.length - current;
    });
  },
  databaseSize() {
    return Number(host(() => rawSql.databaseSize()));
  },
};

/** The object's one alarm, in milliseconds since the Unix epoch. */
export const alarms = {
  get() {
    const at = host(() => rawAlarms.get());
    return at === undefined ? undefined : Number(at);
  },
  set(at) {
    host(() => rawAlarms.set(BigInt(Math.round(at instanceof Date ? at.getTime() : at))));
  },
  delete() {
    host(() => rawAlarms.delete());
  },
};

const toMessage = (message) =>
  typeof message === 'string' ? { tag: 'text', val: message } : { tag: 'binary', val: message };

/** WebSockets held by the host; socket ids are bigints. Sends leave when the event commits. */
export const websockets = {
  isUpgrade(request) {
    return (request.header('upgrade') ?? '').toLowerCase() === 'websocket';
  },
  /** Accepts the upgrade of `request` (answer with `Response.upgraded()`); 426 if it is none. */
  accept(request, { tags = [], attachment } = {}) {
    if (!websockets.isUpgrade(request)) {
      throw new HttpError(426, 'this route expects a WebSocket upgrade (send `Upgrade: websocket`)');
    }
    const raw = attachment === undefined ? undefined : encoder.encode(JSON.stringify(attachment));
    return host(() => rawSockets.accept(tags, raw));
  },
  /** Opens a WebSocket to `url` (ws:// or wss://) as this object's client: the host keeps it
   * across hibernation, and what the remote end sends arrives in `webSocketMessage` with the
   * returned id. Only hosts the class's `outbound` list allows; a refusal or failure throws an
   * `HttpError` (502) with the host's reason. It joins the object when the event commits. */
  connect(url, { protocols = [], tags = [], attachment } = {}) {
    const raw = attachment === undefined ? undefined : encoder.encode(JSON.stringify(attachment));
    try {
      return rawSockets.connect(url, protocols, tags, raw);
    } catch (e) {
      throw new HttpError(502, String(e && e.payload !== undefined ? e.payload : e));
    }
  },
  sockets(tag) {
    return host(() => rawSockets.getWebsockets(tag));
  },
  send(socket, message) {
    host(() => rawSockets.send(socket, toMessage(message)));
  },
  /** Sends to every open socket (with `tag`, if given). */
  broadcast(message, tag) {
    for (const socket of websockets.sockets(tag)) websockets.send(socket, message);
  },
  close(socket, code = 1000, reason = '') {
    host(() => rawSockets.close(socket, code, reason));
  },
  tags(socket) {
    return host(() => rawSockets.getTags(socket));
  },
  attachment(socket) {
    const raw = host(() => rawSockets.getAttachment(socket));
    return raw === undefined ? undefined : JSON.parse(decoder.decode(raw));
  },
  setAttachment(socket, value) {
    const raw = value === undefined ? undefined : encoder.encode(JSON.stringify(value));
    host(() => rawSockets.setAttachment(socket, raw));
  },
  /** The host answers `request` with `response` without waking the object; `null` clears it. */
  setAutoResponse(request, response) {
    host(() => rawSockets.setAutoResponse(request === null ? undefined : [request, response]));
  },
};

/** Subclass it and override what the object handles; the rest answers as the Rust SDK does. */
export class DurableObject {
  fetch(_request) {
    return Response.notFound();
  }
  alarm(_info) {}
  webSocketMessage(_socket, _message) {}
  webSocketClose(_socket, _code, _reason, _wasClean) {}
  webSocketError(_socket, _error) {}
}

const HANDLERS = new Set(['constructor', 'fetch', 'alarm', 'webSocketMessage', 'webSocketClose', 'webSocketError']);

/**
 * The optional `warm-up` export (world `warmable-durable-object`). The host calls it on each
 * fresh instance it keeps ready, before an object adopts it: the SDK's request path runs once
 * (no object code, no host import), so the object's first event finds the memory that path
 * writes already copied instead of copying it page by page. Export it from the app with
 * `export { warmUp } from '.../wdo.js';`.
 */
export const warmUp = {
  /** How many times this instance was warmed up: 1 in a spare the host warmed, else 0. */
  runs: 0,
  warmUp() {
    warmUp.runs += 1;
    runRequestPath();
  },
};

/** The `handler` export for a class: one instance of it per object, made on the first event. */
export function serve(ObjectClass) {
  let instance;
  const object = () => (instance ??= new ObjectClass());
  // An HttpError answers; anything else traps (after saying what it was on stderr: the
  // caller's 500 carries its message).
  const trap = (e) => {
    reportUncaught(e);
    throw e;
  };
  // A handler may be `async`: what it returns is awaited (see `settle`).
  const message = (e) => {
    throw e instanceof Error ? e.message : String(e);
  };
  return {
    fetch(raw) {
      return answer((request) => object().fetch(request), raw);
    },
    call(method, args) {
      const target = object();
      if (HANDLERS.has(method) || typeof target[method] !== 'function') throw `no method \`${method}\``;
      const encode = (result) => encoder.encode(result === undefined ? '' : JSON.stringify(result));
      return settle(() => target[method](args.length === 0 ? undefined : JSON.parse(decoder.decode(args))), encode, message);
    },
    alarm(info) {
      return settle(() => object().alarm({ retryCount: info.retryCount, isRetry: info.isRetry }), () => {}, message);
    },
    websocketMessage(socket, data) {
      return settle(() => object().webSocketMessage(socket, data.val), () => {}, trap);
    },
    websocketClose(socket, code, reason, wasClean) {
      return settle(() => object().webSocketClose(socket, code, reason, wasClean), () => {}, trap);
    },
    websocketError(socket, error) {
      return settle(() => object().webSocketError(socket, error), () => {}, trap);
    },
  };
}
