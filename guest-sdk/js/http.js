// wdo for JavaScript, part 1 of 3: HTTP requests and answers, and errors. Imports nothing from
// the host, so both worlds (`durable-object` and `worker`) can use it.

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();

/** An error that becomes an HTTP response with `status`. */
export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** What a host import refused: `kind` is invalid-argument, limit-exceeded, not-allowed, storage or unsupported. */
export class WdoError extends HttpError {
  constructor(kind, message) {
    super(kind === 'invalid-argument' ? 400 : 500, `${kind}: ${message}`);
    this.kind = kind;
  }
}

/** Calls a host import, turning its error variant into a `WdoError`. */
export function host(call) {
  try {
    return call();
  } catch (e) {
    const payload = e && e.payload;
    if (payload && typeof payload.tag === 'string') throw new WdoError(payload.tag, String(payload.val));
    throw e;
  }
}

export const toBytes = (body) =>
  body === undefined || body === null ? new Uint8Array() : typeof body === 'string' ? encoder.encode(body) : body;

export class Request {
  constructor(raw) {
    this.method = raw.method;
    this.path = raw.path;
    this.query = raw.query;
    this.headers = raw.headers;
    this.body = raw.body;
  }
  /** The first value of a header (names are lower-case). */
  header(name) {
    const found = this.headers.find(([key]) => key === name.toLowerCase());
    return found ? found[1] : undefined;
  }
  get params() {
    return new URLSearchParams(this.query);
  }
  text() {
    return decoder.decode(this.body);
  }
  json() {
    try {
      return JSON.parse(this.text());
    } catch (e) {
      throw new HttpError(400, `the body is not JSON: ${e.message}`);
    }
  }
  toWit() {
    return { method: this.method, path: this.path, query: this.query, headers: this.headers, body: this.body };
  }
}

export class Response {
  constructor(body, { status = 200, headers = [] } = {}) {
    this.status = status;
    this.headers = headers;
    this.body = toBytes(body);
  }
  static text(text, status = 200) {
    return new Response(text, { status, headers: [['content-type', 'text/plain; charset=utf-8']] });
  }
  static json(value, status = 200) {
    return new Response(JSON.stringify(value), { status, headers: [['content-type', 'application/json']] });
  }
  static notFound() {
    return Response.text('not found\n', 404);
  }
  /** The answer to an accepted WebSocket upgrade (the host sends 101). */
  static upgraded() {
    return new Response('', { status: 101 });
  }
  toWit() {
    return { status: this.status, headers: this.headers, body: this.body };
  }
}

/** Says on stderr what an uncaught exception was, before the SDK traps: the first line
 * (`Uncaught <error>`) is the message the caller's 500 carries; the stack goes to the host's
 * log only. */
export function reportUncaught(e) {
  console.error(`Uncaught ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  if (e && e.stack) console.error(e.stack);
}

/** Runs a fetch handler: an `HttpError` answers with its status; anything else traps, after
 * saying what it was on stderr (the caller's 500 carries its message). */
export function answer(fetch, raw) {
  const done = (response) => (response instanceof Response ? response : Response.text(String(response ?? ''))).toWit();
  const failed = (e) => {
    if (e instanceof HttpError) return Response.text(`${e.message}\n`, e.status).toWit();
    reportUncaught(e);
    throw e;
  };
  return settle(() => fetch(new Request(raw)), done, failed);
}

/** Runs `work`; hands its result to `done` and what it throws to `failed`. When it returns a
 * promise (an `async` handler), so does this: componentize-js runs the event loop until the
 * promise settles, and the event ends only then. */
export function settle(work, done, failed) {
  let result;
  try {
    result = work();
  } catch (e) {
    return failed(e);
  }
  if (result && typeof result.then === 'function') return result.then(done, failed);
  return done(result);
}

/** Runs the SDK's request path with no object and no host import: a JSON request in, JSON and
 *  text responses out, the way an event uses them. */
export function runRequestPath() {
  const probe = { method: 'GET', path: '/', query: '', headers: [], body: encoder.encode('{"value":1}') };
  answer((request) => Response.json(JSON.parse(JSON.stringify(request.json()))), probe);
  answer((request) => Response.text(request.path), probe);
}
