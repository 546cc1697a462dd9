// The web platform a Worker expects, on top of what StarlingMonkey (componentize-js's engine)
// already has (Request, Response, Headers, URL, TextEncoder, crypto, structuredClone, atob,
// setTimeout, ...): a `Response` that can be a 101 with a `webSocket`, `WebSocketPair` and
// `WebSocket` over the host's sockets, the events they dispatch, and the conversions between
// web `Request`/`Response` objects and the WIT records the host passes.
//
// Imports nothing from the host: the socket operations come in through `setSocketBackend`, so
// the worker world (which has no sockets) can load it too.

const NativeResponse = globalThis.Response;
const NativeRequest = globalThis.Request;
const UPGRADE = Symbol('webSocket');
const HEADERS = Symbol('headers');

/**
 * `Request`, with every header it was given. The web platform drops "forbidden" request
 * headers (`Upgrade`, `Connection`, `Host`, ...), which a browser sets itself; a Worker sees
 * them, and checks `request.headers.get("Upgrade")` to find WebSocket upgrades.
 */
export class Request extends NativeRequest {
  constructor(input, init = {}) {
    super(input, init);
    const given = init && init.headers !== undefined ? init.headers : input instanceof NativeRequest ? input.headers : undefined;
    const headers = new Headers(super.headers);
    for (const [name, value] of new Headers(given ?? {})) {
      if (!headers.has(name)) headers.append(name, value);
    }
    this[HEADERS] = headers;
  }
  get headers() {
    return this[HEADERS];
  }
  clone() {
    const copy = super.clone();
    Object.setPrototypeOf(copy, Request.prototype);
    copy[HEADERS] = new Headers(this[HEADERS]);
    return copy;
  }
}

/** `Response`, plus Cloudflare's `new Response(null, { status: 101, webSocket })`. */
export class Response extends NativeResponse {
  constructor(body, init) {
    if (init && init.status === 101) {
      if (!init.webSocket) throw new RangeError('a 101 response needs the client end of a WebSocketPair as `webSocket`');
      super(null, { headers: init.headers, status: 200 });
      this[UPGRADE] = init.webSocket;
      return;
    }
    if (init && init.webSocket) throw new RangeError('only a 101 response carries a `webSocket`');
    super(body, init);
  }
  get status() {
    return this[UPGRADE] ? 101 : super.status;
  }
  get ok() {
    return this[UPGRADE] ? false : super.ok;
  }
  get webSocket() {
    return this[UPGRADE] ?? null;
  }
  static json(data, init = {}) {
    const headers = new Headers(init.headers);
    if (!headers.has('content-type')) headers.set('content-type', 'application/json');
    return new Response(JSON.stringify(data), { ...init, headers });
  }
  static redirect(url, status = 302) {
    if (![301, 302, 303, 307, 308].includes(status)) throw new RangeError(`invalid redirect status ${status}`);
    return new Response(null, { status, headers: { location: String(new URL(url)) } });
  }
  static error() {
    return NativeResponse.error();
  }
}

// ---------------------------------------------------------------- events

export class MessageEvent extends Event {
  constructor(type, init = {}) {
    super(type);
    this.data = init.data;
  }
}

export class CloseEvent extends Event {
  constructor(type, init = {}) {
    super(type);
    this.code = init.code ?? 0;
    this.reason = init.reason ?? '';
    this.wasClean = init.wasClean ?? false;
  }
}

export class ErrorEvent extends Event {
  constructor(type, init = {}) {
    super(type);
    this.message = init.message ?? '';
    this.error = init.error;
  }
}

// ---------------------------------------------------------------- WebSockets

/** What the object world gives `WebSocket` to act on its socket (ids are the host's). */
let backend = {
  accept() {
    throw new Error('WebSockets can only be accepted by a Durable Object, in its fetch handler');
  },
};

export function setSocketBackend(sockets) {
  backend = sockets;
}

const toData = (message) => {
  if (typeof message === 'string') return { tag: 'text', val: message };
  if (message instanceof ArrayBuffer) return { tag: 'binary', val: new Uint8Array(message) };
  if (ArrayBuffer.isView(message)) {
    return { tag: 'binary', val: new Uint8Array(message.buffer, message.byteOffset, message.byteLength) };
  }
  throw new TypeError('a WebSocket message is a string, an ArrayBuffer or a typed array');
};

/**
 * One end of a WebSocket. The server end (`pair[1]`) belongs to the object once accepted:
 * `ctx.acceptWebSocket(ws, tags)` (hibernation: events go to the class's `webSocketMessage`,
 * and the object may leave memory between them) or `ws.accept()` (events go to this object's
 * listeners, and the object stays in memory while the socket is open). The client end
 * (`pair[0]`) goes back in the 101 response.
 */
export class WebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url) {
    if (url !== undefined) {
      throw new Error('new WebSocket(url) is not supported by wdo: a Durable Object opens outbound WebSockets with the wdo SDK (websockets.connect)');
    }
    this.id = undefined;
    this.readyState = WebSocket.CONNECTING;
    this.url = null;
    this.protocol = '';
    this.extensions = '';
    this.binaryType = 'arraybuffer';
    this.listeners = new Map();
    this.pendingAttachment = undefined;
  }

  /** Accepts the socket for the standard API (listeners). */
  accept() {
    backend.accept(this, [], false);
  }

  send(message) {
    if (this.id === undefined) throw new Error('accept the WebSocket before sending (ws.accept() or ctx.acceptWebSocket(ws))');
    if (this.readyState !== WebSocket.OPEN) throw new TypeError('the WebSocket is closed');
    backend.send(this.id, toData(message));
  }

  close(code = 1000, reason = '') {
    if (this.id === undefined) throw new Error('accept the WebSocket before closing it');
    if (this.readyState >= WebSocket.CLOSING) return;
    this.readyState = WebSocket.CLOSING;
    backend.close(this.id, code, reason);
  }

  serializeAttachment(value) {
    if (this.id === undefined) this.pendingAttachment = { value };
    else backend.setAttachment(this.id, value);
  }

  deserializeAttachment() {
    if (this.id === undefined) return this.pendingAttachment ? structuredClone(this.pendingAttachment.value) : null;
    const value = backend.getAttachment(this.id);
    return value === undefined ? null : value;
  }

  addEventListener(type, listener, options) {
    if (!listener) return;
    const list = this.listeners.get(type) ?? [];
    if (!list.some((l) => l.listener === listener)) {
      list.push({ listener, once: Boolean(options && options.once) });
    }
    this.listeners.set(type, list);
  }

  removeEventListener(type, listener) {
    const list = this.listeners.get(type);
    if (list) this.listeners.set(type, list.filter((l) => l.listener !== listener));
  }

  /** Runs the listeners (and `on<type>`) one after another, awaiting those that are async. */
  async dispatchEvent(event) {
    const list = [...(this.listeners.get(event.type) ?? [])];
    const property = this[`on${event.type}`];
    if (typeof property === 'function') list.push({ listener: property, once: false });
    for (const entry of list) {
      if (entry.once) this.removeEventListener(event.type, entry.listener);
      const { listener } = entry;
      await (typeof listener === 'function' ? listener.call(this, event) : listener.handleEvent(event));
    }
    return true;
  }
}

/** `new WebSocketPair()`: `[client, server]`, also as `pair[0]` and `pair[1]`. */
export class WebSocketPair {
  constructor() {
    const client = new WebSocket();
    const server = new WebSocket();
    server.peer = client;
    client.peer = server;
    this[0] = client;
    this[1] = server;
  }
  *[Symbol.iterator]() {
    yield this[0];
    yield this[1];
  }
}

/** What `ctx.setWebSocketAutoResponse` takes: a request text and the response text to it. */
export class WebSocketRequestResponsePair {
  constructor(request, response) {
    if (typeof request !== 'string' || typeof response !== 'string') {
      throw new TypeError('WebSocketRequestResponsePair takes two strings: the request and the response');
    }
    this.request = request;
    this.response = response;
  }
}

// ---------------------------------------------------------------- requests and responses

const BODYLESS = new Set(['GET', 'HEAD']);

/** A web `Request` from the host's request record. */
export function toRequest(raw) {
  const headers = new Headers();
  for (const [name, value] of raw.headers) {
    try {
      headers.append(name, value);
    } catch {
      // A header the web platform refuses (a stray byte): the object never sees it.
    }
  }
  const target = `${raw.path}${raw.query ? `?${raw.query}` : ''}`;
  let url;
  try {
    url = new URL(target, `http://${headers.get('host') || 'localhost'}`);
  } catch {
    url = new URL(target, 'http://localhost');
  }
  const init = { method: raw.method, headers };
  if (!BODYLESS.has(raw.method) && raw.body.length > 0) init.body = raw.body;
  return new Request(url, init);
}

/** The host's request record from a web `Request` (or what `fetch` takes: a URL and init). */
export async function fromRequest(input, init) {
  const request = input instanceof NativeRequest && init === undefined ? input : new Request(input, init);
  const url = new URL(request.url);
  const body = BODYLESS.has(request.method) ? new Uint8Array() : new Uint8Array(await request.arrayBuffer());
  const headers = [...request.headers];
  if (!request.headers.has('host')) headers.push(['host', url.host]);
  return { method: request.method, path: url.pathname, query: url.search.slice(1), headers, body };
}

/** The host's response record from what a handler returned. */
export async function fromResponse(response, where) {
  if (!(response instanceof NativeResponse)) {
    throw new TypeError(`${where} must return a Response (it returned ${describe(response)})`);
  }
  if (response.status === 101) {
    return { status: 101, headers: [], body: new Uint8Array() };
  }
  const body = new Uint8Array(await response.arrayBuffer());
  return { status: response.status, headers: [...response.headers], body };
}

/** A web `Response` from the host's response record. */
export function toResponse(raw) {
  if (raw.status === 101) {
    // The WebSocket another object accepted: handed on as it is (the host connects the client).
    return new Response(null, { status: 101, webSocket: new WebSocket() });
  }
  const nullBody = raw.status === 204 || raw.status === 205 || raw.status === 304;
  return new Response(nullBody ? null : raw.body, { status: raw.status, headers: raw.headers });
}

function describe(value) {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'object') return value.constructor ? `a ${value.constructor.name}` : 'an object';
  return `a ${typeof value}`;
}

/** Puts the web classes Cloudflare code uses without importing them on `globalThis`. */
export function installGlobals() {
  Object.assign(globalThis, {
    Request,
    Response,
    WebSocket,
    WebSocketPair,
    WebSocketRequestResponsePair,
    MessageEvent,
    CloseEvent,
    ErrorEvent,
  });
}
