// What the JavaScript SDK promises, route by route (the Python probe has the same routes):
// errors, context, alarms, SQL, key-value listing and calls between objects.
import { DurableObject, HttpError, Response, alarms, context, env, objects, serve, sql, storage, warmUp, websockets } from '../../../guest-sdk/js/wdo.js';

class Probe extends DurableObject {
  /** An outbound request with the platform's own `fetch`: `{ url, method, headers, body, write }`. */
  async outbound({ url, method = 'GET', headers = [], body, write }) {
    if (write) storage.put(write, 'written before the request');
    try {
      const answer = await fetch(url, { method, headers, body });
      const text = await answer.text();
      return Response.json({ status: answer.status, body: text, upstream: answer.headers.get('x-upstream') });
    } catch (e) {
      return Response.text(`${e.message}\n`, 502);
    }
  }

  webSocketMessage(socket, message) {
    if (websockets.tags(socket).includes('upstream')) {
      storage.put('upstream', [...(storage.get('upstream') ?? []), { text: String(message) }]);
    }
  }

  fetch(request) {
    const route = `${request.method} ${request.path}`;
    switch (route) {
      case 'GET /env': {
        const value = env[request.params.get('key')];
        return value === undefined ? Response.notFound() : Response.text(value);
      }
      case 'POST /fetch':
        return this.outbound(request.json());
      case 'POST /fetch-many': {
        // `{ url, n }`: n requests at once; answers their statuses.
        const { url, n } = request.json();
        return Promise.all(Array.from({ length: n }, () => fetch(url).then((r) => r.status))).then((s) => Response.json(s));
      }
      case 'POST /ws-connect':
        return Response.text(String(websockets.connect(request.text(), { protocols: ['feed'], tags: ['upstream'] })));
      case 'GET /ws-upstream':
        return Response.json(storage.get('upstream') ?? []);
      case 'POST /async-throw':
        return (async () => {
          storage.put('written', true);
          await Promise.resolve();
          throw new Error('rejected on purpose');
        })();
      case 'GET /whoami':
        return Response.json({ name: context.name(), class: context.className(), id: context.id(), warm_ups: warmUp.runs });
      case 'POST /write-then-throw':
        storage.put('written', true);
        throw new Error('thrown on purpose');
      case 'POST /write-then-http-error':
        storage.put('written', true);
        throw new HttpError(418, 'teapot');
      // Bookmarks (the same routes in the Rust and Python probes).
      case 'POST /bookmark/write':
        storage.put('mark', request.text());
        return Response.text('ok');
      case 'GET /bookmark/read':
        return Response.text(storage.get('mark') ?? '');
      case 'GET /bookmark/now':
        return Response.text(storage.currentBookmark());
      case 'GET /bookmark/at':
        return Response.text(storage.bookmarkForTime(Number(request.params.get('ms'))));
      case 'POST /bookmark/restore':
        return Response.text(storage.restoreOnNextSession(request.text()));
      case 'POST /bookmark/restore-abort':
        storage.restoreOnNextSession(request.text());
        throw new Error('aborting to start the next session now');
      case 'GET /written':
        return Response.json(storage.get('written') ?? false);
      case 'GET /bad-sql':
        sql.exec('SELEKT 1');
        return Response.text('unreachable');
      case 'POST /sql': {
        sql.migrate(['CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)']);
        sql.run('INSERT INTO t (name, score, data) VALUES (?, ?, ?)', 'ada', 1.5, new Uint8Array([1, 2]));
        const row = sql.one('SELECT id, name, score, length(data) AS size FROM t ORDER BY id DESC LIMIT 1');
        const bulk = sql.execMany('INSERT INTO t (name) VALUES (?)', [['b'], ['c'], ['d']]);
        return Response.json({ ...row, bulk: bulk.rowsWritten, count: sql.one('SELECT count(*) AS n FROM t').n });
      }
      case 'POST /list':
        storage.putMany({ 'k:1': 1, 'k:2': 2, 'other': 3 });
        return Response.json(Object.fromEntries(storage.list({ prefix: 'k:' })));
      case 'POST /alarm':
        alarms.set(context.now() + 50);
        return Response.text('armed');
      case 'GET /fired':
        return Response.json(storage.get('fired') ?? 0);
      case 'POST /call':
        return Response.json(objects.get(context.className(), 'callee').call('add', request.json()));
      case 'POST /call-errors': {
        // How failed calls reach the caller: a re-entrant call and fetch (a bad call), and a
        // method the callee does not have (its own failure).
        const outcome = (f) => {
          try {
            f();
            return null;
          } catch (e) {
            return { status: e.status, fromCallee: e.fromCallee, retryable: e.retryable, overloaded: e.overloaded };
          }
        };
        const self = objects.get(context.className(), context.name());
        const callee = objects.get(context.className(), 'callee');
        return Response.json({
          reentrantCall: outcome(() => self.call('add', { a: 1, b: 2 })),
          reentrantFetch: outcome(() => self.fetch({ path: '/fired' })),
          calleeFailed: outcome(() => callee.call('no-such-method')),
        });
      }
      default:
        return Response.notFound();
    }
  }

  alarm(info) {
    storage.put('fired', (storage.get('fired') ?? 0) + 1);
  }

  add({ a, b }) {
    return { sum: a + b, by: context.name() };
  }
}

export const handler = serve(Probe);
// Lets the host warm up the instances it keeps ready (world `warmable-durable-object`).
export { warmUp };
