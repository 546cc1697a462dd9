// The Cloudflare layer for Durable Objects: what `import { DurableObject } from
// "cloudflare:workers"` resolves to when wdo builds the classes of a wrangler project, and
// `serveObjects`, which the generated entry uses to export the component's `handler`.
//
// One component serves every class of the project: the host tells an instance which class it
// is (`context.class-name`), and the module's export of that name is instantiated once per
// object, on its first event, as `new Class(ctx, env)`: both `extends DurableObject` and the
// older `constructor(state, env)` style work. Every handler may be `async`; the export returns
// its promise, and componentize-js runs the event loop until it settles, so the event (and its
// transaction) ends only then. A rejection is a thrown error: the event rolls back, the caller
// gets a 500 with the message.

import * as rawContext from 'wdo:object/context@0.1.0';
import * as rawSockets from 'wdo:object/websockets@0.1.0';
import { DurableObjectStorage, host } from './storage.js';
import { DurableObjectId, decodeArguments } from './namespace.js';
import { env, reportUncaught, setProject } from './common.js';
import { decodeValue, encodeValue } from './values.js';
import {
  CloseEvent,
  ErrorEvent,
  MessageEvent,
  WebSocket,
  fromResponse,
  installGlobals,
  setSocketBackend,
  toRequest,
} from './web.js';

installGlobals();

export { DurableObjectId, DurableObjectNamespace } from './namespace.js';
export { WebSocketPair, WebSocketRequestResponsePair } from './web.js';

export { DurableObject, RpcTarget, WorkerEntrypoint, env } from './common.js';

// ---------------------------------------------------------------- sockets

/** The WebSocket object of each socket id, so `ws === ws` holds across events of an instance. */
const sockets = new Map();
/** Sockets accepted with `ws.accept()`: their events go to their listeners. */
const listening = new Set();

/** Accepts the upgrade of the request being handled for `ws` (the server end of a pair). */
function acceptSocket(ws, tags, hibernatable) {
  if (ws.id !== undefined) throw new Error('this WebSocket was already accepted');
  const pending = ws.pendingAttachment;
  const attachment = pending === undefined ? undefined : encodeValue(pending.value);
  const id = host(() => rawSockets.accept(tags, attachment));
  ws.pendingAttachment = undefined;
  ws.id = id;
  ws.readyState = WebSocket.OPEN;
  sockets.set(id, ws);
  if (!hibernatable) {
    // The listeners live in this instance: the host keeps it while the socket is open.
    host(() => rawSockets.holdInstance(id));
    listening.add(id);
  }
}

setSocketBackend({
  accept: acceptSocket,
  send: (id, data) => host(() => rawSockets.send(id, data)),
  close: (id, code, reason) => host(() => rawSockets.close(id, code, reason)),
  setAttachment: (id, value) => host(() => rawSockets.setAttachment(id, encodeValue(value))),
  getAttachment(id) {
    const raw = host(() => rawSockets.getAttachment(id));
    return raw === undefined ? undefined : decodeValue(raw);
  },
});

function socketFor(id) {
  let ws = sockets.get(id);
  if (!ws) {
    ws = new WebSocket();
    ws.id = id;
    ws.readyState = WebSocket.OPEN;
    sockets.set(id, ws);
  }
  return ws;
}

// ---------------------------------------------------------------- ctx

class DurableObjectState {
  constructor() {
    this.id = new DurableObjectId(rawContext.objectId(), rawContext.objectName());
    this.storage = new DurableObjectStorage();
    this.blocking = [];
    this.waiting = [];
  }
  /** Runs `fn`; no other event of this object starts before it settles. */
  blockConcurrencyWhile(fn) {
    const result = Promise.resolve().then(fn);
    this.blocking.push(result);
    return result;
  }
  /** The event ends only after `promise` settles. */
  waitUntil(promise) {
    this.waiting.push(Promise.resolve(promise));
  }
  /** Accepts a WebSocket for hibernation: its events go to the class's `webSocket*` methods. */
  acceptWebSocket(ws, tags = []) {
    if (!(ws instanceof WebSocket)) throw new TypeError('acceptWebSocket takes the server end of a WebSocketPair');
    if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string')) throw new TypeError('tags are an array of strings');
    acceptSocket(ws, tags, true);
  }
  getWebSockets(tag) {
    // A typed array of ids (list<u64>): Array.from, since its own map would make bigints.
    return Array.from(host(() => rawSockets.getWebsockets(tag)), (id) => socketFor(id));
  }
  getTags(ws) {
    if (!(ws instanceof WebSocket) || ws.id === undefined) throw new TypeError('getTags takes an accepted WebSocket');
    return host(() => rawSockets.getTags(ws.id));
  }
  setWebSocketAutoResponse(pair) {
    host(() => rawSockets.setAutoResponse(pair ? [pair.request, pair.response] : undefined));
  }
  getWebSocketAutoResponseTimestamp(ws) {
    if (!(ws instanceof WebSocket) || ws.id === undefined) return null;
    const at = host(() => rawSockets.getAutoResponseTimestamp(ws.id));
    return at === undefined ? null : new Date(Number(at));
  }
  /** Ends this instance: the event fails, and the next one gets a fresh instance. */
  abort(reason) {
    throw new Error(`the object aborted itself${reason === undefined ? '' : `: ${reason}`}`);
  }
}

// ---------------------------------------------------------------- the handler export

const HANDLERS = new Set(['constructor', 'fetch', 'alarm', 'webSocketMessage', 'webSocketClose', 'webSocketError']);

const messageOf = (e) => (e instanceof Error ? e.message : String(e));

/**
 * The component's exports for the project's classes. `app` is the user's module,
 * `projectConfig` what the build knows: `{ bindings: { BINDING: 'ClassName' }, vars: { NAME: 'json' | 'text' } }`.
 */
export function serveObjects(app, projectConfig) {
  setProject(projectConfig);
  let object;
  let state;

  async function instance() {
    if (!object) {
      const name = rawContext.className();
      const Class = app[name];
      if (typeof Class !== 'function') {
        throw new Error(`the module exports no class \`${name}\` (the wrangler config binds it)`);
      }
      state = new DurableObjectState();
      object = new Class(state, env);
    }
    while (state.blocking.length > 0) await state.blocking.shift();
    return object;
  }

  async function finish(result) {
    while (state && state.waiting.length > 0) {
      const waiting = state.waiting.splice(0);
      for (const outcome of await Promise.allSettled(waiting)) {
        if (outcome.status === 'rejected') console.error(`waitUntil: ${messageOf(outcome.reason)}`);
      }
    }
    return result;
  }

  // Traps (after saying why on stderr): the event rolls back and the caller gets a 500.
  const trap = (e) => {
    reportUncaught(e);
    throw e;
  };

  async function onSocket(id, method, event, args) {
    const target = await instance();
    if (listening.has(id)) {
      await socketFor(id).dispatchEvent(event);
      if (event.type === 'close' || event.type === 'error') listening.delete(id);
    } else if (typeof target[method] === 'function') {
      await target[method](socketFor(id), ...args);
    } else if (event.type === 'message') {
      // A socket whose listeners this instance never had (it was reset), and no hibernation
      // handler: nothing can hear it.
      host(() => rawSockets.close(id, 1011, 'the Durable Object was reset'));
    }
    if (event.type === 'close' || event.type === 'error') sockets.delete(id);
    return finish();
  }

  const handler = {
    fetch(raw) {
      return (async () => {
        const target = await instance();
        if (typeof target.fetch !== 'function') {
          return { status: 501, headers: [['content-type', 'text/plain']], body: new TextEncoder().encode(`${rawContext.className()} has no fetch() method\n`) };
        }
        const response = await target.fetch(toRequest(raw));
        return finish(await fromResponse(response, `${rawContext.className()}.fetch()`));
      })().catch(trap);
    },
    call(method, args) {
      return (async () => {
        const target = await instance();
        if (HANDLERS.has(method) || method.startsWith('#') || typeof target[method] !== 'function') {
          throw new Error(`${rawContext.className()} has no method \`${method}\``);
        }
        const result = await target[method](...decodeArguments(args));
        await finish();
        return encodeValue(result);
      })().catch((e) => {
        throw messageOf(e);
      });
    },
    alarm(info) {
      return (async () => {
        const target = await instance();
        if (typeof target.alarm === 'function') await target.alarm({ retryCount: info.retryCount, isRetry: info.isRetry });
        return finish();
      })().catch((e) => {
        reportUncaught(e);
        throw messageOf(e);
      });
    },
    websocketMessage(id, message) {
      const data = message.tag === 'text' ? message.val : message.val.buffer.slice(message.val.byteOffset, message.val.byteOffset + message.val.byteLength);
      return onSocket(id, 'webSocketMessage', new MessageEvent('message', { data }), [data]).catch(trap);
    },
    websocketClose(id, code, reason, wasClean) {
      const ws = socketFor(id);
      ws.readyState = WebSocket.CLOSED;
      return onSocket(id, 'webSocketClose', new CloseEvent('close', { code, reason, wasClean }), [code, reason, wasClean]).catch(trap);
    },
    websocketError(id, error) {
      const ws = socketFor(id);
      ws.readyState = WebSocket.CLOSED;
      return onSocket(id, 'webSocketError', new ErrorEvent('error', { message: error, error: new Error(error) }), [new Error(error)]).catch(trap);
    },
  };

  const warmUp = {
    // Runs the request path with no object and no host import, so the first event finds that
    // memory already written (see the `warm-up` interface in the WIT).
    warmUp() {
      const request = toRequest({ method: 'POST', path: '/', query: 'a=1', headers: [['host', 'localhost']], body: new Uint8Array([123, 125]) });
      void request.url;
      void new URL(request.url).searchParams.get('a');
      decodeValue(encodeValue({ n: 1, d: new Date(0) }));
    },
  };

  return { handler, warmUp };
}
