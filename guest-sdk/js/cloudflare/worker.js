// The Cloudflare layer for the worker: what `cloudflare:workers` resolves to when wdo builds the
// worker of a wrangler project (the module's default export), and `serveWorker`, which the
// generated entry uses to export the component's `worker-handler`. The worker world has no
// storage or sockets, so `DurableObject` here is only the base class the module's classes
// extend (they run in the objects' component).

import * as rawContext from 'wdo:object/context@0.1.0';
import { makeEnv } from './namespace.js';
import { fromResponse, installGlobals, toRequest } from './web.js';

installGlobals();

export { DurableObjectId, DurableObjectNamespace } from './namespace.js';
export { WebSocketPair, WebSocketRequestResponsePair } from './web.js';

export class DurableObject {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

export class WorkerEntrypoint {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

export class RpcTarget {}

let config = { bindings: {}, vars: {} };
export const env = makeEnv(() => config, (key) => rawContext.env(key));

/** The `ctx` of a request: `waitUntil` (the request ends after the promise settles). */
class ExecutionContext {
  constructor() {
    this.waiting = [];
  }
  waitUntil(promise) {
    this.waiting.push(Promise.resolve(promise));
  }
  passThroughOnException() {}
}

function reportUncaught(e) {
  console.error(`Uncaught ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  if (e && e.stack) console.error(e.stack);
}

/** The worker's export from the module's default export: `{ fetch }` or a `WorkerEntrypoint` class. */
export function serveWorker(app, projectConfig) {
  config = projectConfig;
  const entry = app.default;
  return {
    workerHandler: {
      fetch(raw) {
        return (async () => {
          const ctx = new ExecutionContext();
          const request = toRequest(raw);
          let response;
          if (typeof entry === 'function') {
            const worker = new entry(ctx, env);
            if (typeof worker.fetch !== 'function') throw new Error('the default export has no fetch() method');
            response = await worker.fetch(request);
          } else {
            response = await entry.fetch(request, env, ctx);
          }
          const answer = await fromResponse(response, 'the worker\'s fetch()');
          for (const outcome of await Promise.allSettled(ctx.waiting)) {
            if (outcome.status === 'rejected') console.error(`waitUntil: ${outcome.reason}`);
          }
          return answer;
        })().catch((e) => {
          reportUncaught(e);
          throw e;
        });
      },
    },
  };
}
