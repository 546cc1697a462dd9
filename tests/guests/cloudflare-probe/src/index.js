import { DurableObject, WorkerEntrypoint } from 'cloudflare:workers';
import notes from './notes.md';
import blob from './blob.bin';

/** What the web platform gives, checked in both worlds. */
async function platform() {
  const out = {};
  const check = async (name, f) => {
    try {
      out[name] = await f();
    } catch (e) {
      out[name] = `ERR ${e}`;
    }
  };
  await check('json', async () => (await Response.json({ a: 1 }).json()).a === 1 && Response.json({}).headers.get('content-type'));
  await check('redirect', () => {
    const r = Response.redirect('https://example.com/x', 301);
    return `${r.status} ${r.headers.get('location')}`;
  });
  await check('headers', () => new Headers({ 'X-A': '1' }).get('x-a'));
  await check('url', () => new URL('/p?q=1#h', 'https://example.com').searchParams.get('q'));
  await check('params', () => new URLSearchParams({ a: 'b c' }).toString());
  await check('text', () => new TextDecoder().decode(new TextEncoder().encode('é')));
  await check('uuid', () => /^[0-9a-f-]{36}$/.test(crypto.randomUUID()));
  await check('random', () => crypto.getRandomValues(new Uint8Array(8)).length);
  await check('digest', async () => [...new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode('abc')))].slice(0, 2));
  await check('clone', () => structuredClone(new Map([[1, new Date(5)]])).get(1).getTime());
  await check('base64', () => atob(btoa('hi')));
  await check('timeout', () => new Promise((resolve) => setTimeout(() => resolve('fired'), 10)));
  await check('request', async () => {
    const r = new Request('https://x/y', { method: 'POST', body: 'body' });
    return `${r.method} ${await r.text()}`;
  });
  await check('textModule', () => notes.trim());
  await check('dataModule', () => blob instanceof ArrayBuffer && [...new Uint8Array(blob)]);
  return out;
}

/** A sample of every kind of value storage keeps. */
function sample() {
  return {
    number: 1.5,
    int: -7,
    string: 'é✓',
    bool: false,
    nil: null,
    undef: undefined,
    nan: NaN,
    negzero: -0,
    inf: -Infinity,
    big: 12345678901234567890n,
    date: new Date(1700000000000),
    map: new Map([['k', new Set([1, 'two'])]]),
    bytes: new Uint8Array([0, 1, 255]),
    floats: new Float64Array([0.5, -2]),
    buffer: new Uint16Array([1, 65535]).buffer,
    regexp: /a+b/gi,
    error: new RangeError('too far'),
    nested: { list: [1, [2, { three: 3 }]], $wdo: 'not a tag' },
  };
}

function same(a, b) {
  if (Object.is(a, b)) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (a.constructor !== b.constructor) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (a instanceof Date) return a.getTime() === b.getTime();
  if (a instanceof Map || a instanceof Set) return same([...a], [...b]);
  if (a instanceof ArrayBuffer) return same(new Uint8Array(a), new Uint8Array(b));
  if (ArrayBuffer.isView(a)) return a.length === b.length && [...a].every((x, i) => Object.is(x, b[i]));
  if (a instanceof RegExp) return a.source === b.source && a.flags === b.flags;
  if (a instanceof Error) return a.name === b.name && a.message === b.message;
  const keys = Object.keys(a);
  return same(keys, Object.keys(b)) && keys.every((k) => same(a[k], b[k]));
}

export class Probe extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.inMemory = 0;
    ctx.blockConcurrencyWhile(async () => {
      const boots = ((await ctx.storage.get('boots')) ?? 0) + 1;
      await ctx.storage.put('boots', boots);
      this.boots = boots;
    });
  }

  async fetch(request) {
    const url = new URL(request.url);
    const storage = this.ctx.storage;
    switch (url.pathname) {
      case '/values/put':
        await storage.put('sample', sample());
        await storage.put(Object.fromEntries(Object.entries(sample()).map(([k, v]) => [`one:${k}`, v])));
        return new Response('stored');
      case '/values/check': {
        const whole = await storage.get('sample');
        const each = await storage.get(Object.keys(sample()).map((k) => `one:${k}`));
        const report = {};
        for (const [k, v] of Object.entries(sample())) {
          report[k] = same(whole[k], v) && same(each.get(`one:${k}`), v);
        }
        return Response.json(report);
      }
      case '/kv': {
        await storage.put('a', 1);
        await storage.put({ b: 2, c: 3, 'd/1': 4, 'd/2': 5 });
        const one = await storage.get('a');
        const many = await storage.get(['a', 'c', 'missing']);
        const removed = await storage.delete('a');
        const removedAgain = await storage.delete('a');
        const count = await storage.delete(['b', 'missing']);
        const all = await storage.list();
        const prefixed = await storage.list({ prefix: 'd/', reverse: true });
        const ranged = await storage.list({ start: 'c', end: 'd/2' });
        const after = await storage.list({ startAfter: 'c', limit: 1 });
        return Response.json({
          one,
          many: [...many],
          isMap: many instanceof Map && all instanceof Map,
          removed,
          removedAgain,
          count,
          all: [...all.keys()],
          prefixed: [...prefixed],
          ranged: [...ranged.keys()],
          after: [...after.keys()],
        });
      }
      case '/kv-sync': {
        const kv = storage.kv;
        kv.put('sync', { n: 1 });
        const got = kv.get('sync');
        const listed = [...kv.list({ prefix: 'sync' })];
        const deleted = kv.delete('sync');
        return Response.json({ got, listed, deleted, after: kv.get('sync') ?? 'gone' });
      }
      case '/sql': {
        const sql = storage.sql;
        sql.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT, data BLOB, score REAL)');
        const inserted = sql.exec('INSERT INTO t (name, data, score) VALUES (?, ?, ?), (?, ?, ?)', 'a', new Uint8Array([1, 2]), 1.5, 'b', null, 2);
        const cursor = sql.exec('SELECT id, name, data, score FROM t ORDER BY id');
        const iterated = [];
        for (const row of cursor) iterated.push(row.name);
        const rows = sql.exec('SELECT name, score FROM t ORDER BY id').toArray();
        const raw = [...sql.exec('SELECT name, id FROM t ORDER BY id').raw()];
        const one = sql.exec('SELECT count(*) AS n FROM t').one();
        const blob = sql.exec('SELECT data FROM t WHERE name = ?', 'a').one().data;
        const errors = [];
        for (const query of ['SELECT * FROM t WHERE 0', 'SELECT * FROM t']) {
          try {
            sql.exec(query).one();
          } catch (e) {
            errors.push(e.message);
          }
        }
        let bad;
        try {
          sql.exec('SELEC nonsense');
        } catch (e) {
          bad = e.message;
        }
        const columns = sql.exec('SELECT name AS who, score FROM t').columnNames;
        return Response.json({
          iterated,
          rows,
          raw,
          one,
          blob: blob instanceof ArrayBuffer && [...new Uint8Array(blob)],
          errors,
          bad,
          columns,
          rowsWritten: inserted.rowsWritten,
          rowsRead: cursor.rowsRead,
          size: sql.databaseSize > 0,
        });
      }
      case '/delete-all': {
        storage.sql.exec('CREATE TABLE IF NOT EXISTS gone (x)');
        storage.sql.exec('CREATE VIEW IF NOT EXISTS gone_view AS SELECT x FROM gone');
        await storage.put('k', 1);
        await storage.setAlarm(Date.now() + 3600_000);
        await storage.deleteAll();
        const tables = storage.sql.exec("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view')").toArray();
        return Response.json({ keys: [...(await storage.list()).keys()], tables, alarmKept: (await storage.getAlarm()) !== null });
      }
      case '/txn': {
        await storage.put('t', 0);
        await storage.transaction(async (txn) => {
          await txn.put('t', 1);
          await txn.put('kept', true);
        });
        await storage.transaction(async (txn) => {
          await txn.put('t', 2);
          txn.rollback();
        });
        let thrown;
        try {
          await storage.transaction(async (txn) => {
            await txn.put('t', 3);
            throw new Error('undo');
          });
        } catch (e) {
          thrown = e.message;
        }
        const sync = storage.transactionSync(() => {
          storage.kv.put('s', 'in');
          return 'done';
        });
        await storage.sync();
        return Response.json({ t: await storage.get('t'), kept: await storage.get('kept'), thrown, sync, s: storage.kv.get('s') });
      }
      case '/alarm/set': {
        const at = Number(url.searchParams.get('in')) + Date.now();
        await storage.setAlarm(url.searchParams.has('date') ? new Date(at) : at);
        return Response.json({ at: await storage.getAlarm() });
      }
      case '/alarm/get':
        return Response.json({ at: await storage.getAlarm(), fired: (await storage.get('alarms')) ?? [] });
      case '/alarm/delete':
        await storage.deleteAlarm();
        return Response.json({ at: await storage.getAlarm() });
      case '/reject':
        await storage.put('rejected', 'written before the throw');
        await new Promise((resolve) => setTimeout(resolve, 5));
        throw new Error('async handler failed on purpose');
      case '/rejected':
        return Response.json({ value: (await storage.get('rejected')) ?? null });
      case '/abort':
        await storage.put('aborted', 'written before abort()');
        this.ctx.abort('enough of this');
        return new Response('not reached');
      case '/rpc-from-object': {
        // RPC from one object to another, as from the worker.
        const callee = this.env.PROBE.getByName('callee');
        return Response.json({ sum: await callee.add(20, 22), kinds: (await callee.describe(new Date(7), 8n)).kinds });
      }
      case '/boots':
        this.inMemory += 1;
        return Response.json({ boots: this.boots, inMemory: this.inMemory });
      case '/wait-until':
        this.ctx.waitUntil(
          new Promise((resolve) => setTimeout(resolve, 20)).then(() => storage.put('waited', 'after the response was ready')),
        );
        return new Response('returned');
      case '/waited':
        return Response.json({ waited: (await storage.get('waited')) ?? null });
      case '/env':
        return Response.json({ greeting: this.env.GREETING, limits: this.env.LIMITS, secret: this.env.API_KEY ?? null, keys: Object.keys(this.env) });
      case '/id':
        return Response.json({ id: this.ctx.id.toString(), name: this.ctx.id.name, equal: this.ctx.id.equals(this.env.PROBE.idFromName(this.ctx.id.name)) });
      case '/web':
        return Response.json(await platform());
      case '/log':
        console.log('probe says hello');
        console.error('probe says oops');
        return new Response('logged');
      case '/ws/hibernate': {
        if (request.headers.get('Upgrade') !== 'websocket') return new Response('expected a WebSocket upgrade', { status: 426 });
        const [client, server] = Object.values(new WebSocketPair());
        server.serializeAttachment({ user: url.searchParams.get('user'), joined: new Date(1000) });
        this.ctx.acceptWebSocket(server, [url.searchParams.get('tag') ?? 'none']);
        // `?wait=ms`: answers that long after accepting.
        const wait = Number(url.searchParams.get('wait') ?? 0);
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        return new Response(null, { status: 101, webSocket: client });
      }
      case '/ws/auto':
        this.ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('ping', 'pong'));
        return new Response('auto-response set');
      case '/ws/standard': {
        const pair = new WebSocketPair();
        const server = pair[1];
        server.accept();
        let count = 0;
        server.addEventListener('message', (event) => {
          count += 1;
          server.send(`echo ${event.data} #${count}`);
        });
        server.addEventListener('close', async (event) => {
          await this.ctx.storage.put('standard-closed', event.code);
        });
        return new Response(null, { status: 101, webSocket: pair[0] });
      }
      case '/ws/closed':
        return Response.json({
          hibernated: (await storage.get('closed')) ?? null,
          standard: (await storage.get('standard-closed')) ?? null,
          errored: (await storage.get('errored')) ?? null,
        });
      default:
        return new Response(`no route ${url.pathname}`, { status: 404 });
    }
  }

  async alarm(info) {
    const fired = (await this.ctx.storage.get('alarms')) ?? [];
    fired.push(info.retryCount);
    await this.ctx.storage.put('alarms', fired);
  }

  async webSocketMessage(ws, message) {
    if (message instanceof ArrayBuffer) {
      ws.send(new Uint8Array(message).reverse());
    } else if (message === 'who') {
      const attachment = ws.deserializeAttachment();
      ws.send(JSON.stringify({ attachment: { user: attachment.user, joined: attachment.joined.getTime() }, tags: this.ctx.getTags(ws), open: this.ctx.getWebSockets().length }));
    } else if (message.startsWith('to ')) {
      const [, tag, ...words] = message.split(' ');
      for (const other of this.ctx.getWebSockets(tag)) other.send(words.join(' '));
    } else if (message === 'auto?') {
      const at = this.ctx.getWebSocketAutoResponseTimestamp(ws);
      ws.send(at instanceof Date ? `auto at ${at.getTime()}` : 'never');
    } else if (message === 'bye') {
      ws.close(1000, 'bye');
    } else {
      ws.send(`unknown ${message}`);
    }
  }

  async webSocketClose(ws, code, reason, wasClean) {
    await this.ctx.storage.put('closed', { code, reason, wasClean });
  }

  async webSocketError(ws, error) {
    await this.ctx.storage.put('errored', error instanceof Error ? error.message : String(error));
  }

  // RPC methods.
  async describe(...args) {
    return {
      count: args.length,
      kinds: args.map((a) => (a === null ? 'null' : a instanceof Date ? 'Date' : a instanceof Map ? 'Map' : typeof a)),
      echo: args,
    };
  }

  async add(a, b) {
    await this.ctx.storage.put('sum', a + b);
    return a + b;
  }

  async fail(message) {
    throw new TypeError(message);
  }
}

/** The older style: a plain class with a `(state, env)` constructor. */
export class Plain {
  constructor(state, env) {
    this.state = state;
    this.env = env;
  }
  async fetch(request) {
    const hits = ((await this.state.storage.get('hits')) ?? 0) + 1;
    await this.state.storage.put('hits', hits);
    return new Response(`${this.state.id.name} ${hits} ${this.env.GREETING}`);
  }
}

export class Other extends DurableObject {
  async fetch() {
    return new Response('other');
  }
}

/** Requests this worker instance served (its module state lasts between requests, as in an isolate). */
let served = 0;

// The class style of a worker (the examples use the object style, `{ fetch(request, env, ctx) }`).
export default class ProbeWorker extends WorkerEntrypoint {
  async fetch(request) {
    const { env, ctx } = this;
    const url = new URL(request.url);
    const parts = url.pathname.split('/').filter(Boolean);
    const name = url.searchParams.get('name') ?? 'probe';
    switch (parts[0]) {
      case 'obj': {
        // /obj/<BINDING>/<name>/<path...>: the request, upgrade and all, to the object.
        const [, binding, object, ...rest] = parts;
        const target = new URL(request.url);
        target.pathname = `/${rest.join('/')}`;
        const answer = await env[binding].getByName(decodeURIComponent(object)).fetch(new Request(target, request));
        // `?worker_wait=ms`: the worker answers that long after the object did.
        const wait = Number(url.searchParams.get('worker_wait') ?? 0);
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        return answer;
      }
      case 'web':
        return Response.json(await platform());
      case 'rpc-args': {
        const result = await env.PROBE.getByName(name).describe(1, 'two', new Date(3), new Map([[4, 5n]]), [true, null], undefined);
        return Response.json({
          count: result.count,
          kinds: result.kinds,
          date: result.echo[2] instanceof Date && result.echo[2].getTime(),
          map: result.echo[3] instanceof Map && String(result.echo[3].get(4)),
          sum: await env.PROBE.getByName(name).add(2, 3),
        });
      }
      case 'rpc-error':
        try {
          await env.PROBE.getByName(name).fail('bad input, said the callee');
          return new Response('no error');
        } catch (e) {
          return Response.json({ error: e instanceof Error, message: e.message });
        }
      case 'ids': {
        const unique = env.OTHER.newUniqueId();
        const again = env.OTHER.idFromString(unique.toString());
        const named = env.PROBE.idFromName('alice');
        let foreign;
        try {
          env.PROBE.idFromString(unique.toString());
          foreign = 'accepted';
        } catch (e) {
          foreign = e.message;
        }
        let garbage;
        try {
          env.PROBE.idFromString('not-an-id');
          garbage = 'accepted';
        } catch (e) {
          garbage = e.message;
        }
        const reply = await env.OTHER.get(again).fetch('https://other/');
        return Response.json({
          equal: unique.equals(again),
          uniqueName: unique.name ?? null,
          namedName: named.name,
          sameAsName: named.equals(env.PROBE.idFromName('alice')),
          differs: named.equals(env.PROBE.idFromName('bob')),
          foreign,
          garbage,
          reply: await reply.text(),
        });
      }
      case 'wait-until':
        ctx.waitUntil(env.PROBE.getByName(name).add(40, 2));
        return new Response('worker returned');
      case 'env':
        return Response.json({ greeting: env.GREETING, limits: env.LIMITS, secret: env.API_KEY ?? null, hasProbe: 'PROBE' in env });
      case 'throw':
        throw new Error('the worker threw on purpose');
      case 'served':
        served += 1;
        return new Response(String(served));
      default:
        return new Response(`no route ${url.pathname}`, { status: 404 });
    }
  }
}
