// The Cloudflare layer for the worker: what `cloudflare:workers` resolves to when wdo builds the
// worker of a wrangler project (the module's default export), and `serveWorker`, which the
// generated entry uses to export the component's `worker-handler`. The worker world has no
// storage or sockets, so `DurableObject` here is only the base class the module's classes
// extend (they run in the objects' component).

import { env, reportUncaught, setProject } from './common.js';
import { fromResponse, installGlobals, toRequest } from './web.js';

installGlobals();

export { DurableObjectId, DurableObjectNamespace } from './namespace.js';
export { WebSocketPair, WebSocketRequestResponsePair } from './web.js';

export { DurableObject, RpcTarget, WorkerEntrypoint, env } from './common.js';

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

/** The worker's export from the module's default export: `{ fetch }` or a `WorkerEntrypoint` class. */
export function serveWorker(app, projectConfig) {
  setProject(projectConfig);
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
