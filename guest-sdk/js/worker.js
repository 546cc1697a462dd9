// wdo for JavaScript, part 3 of 3: the `worker` world, a stateless front component that receives
// every HTTP request and reaches objects through `objects`.
//
//   import { Response, objects, serveWorker } from './worker.js';
//
//   export const workerHandler = serveWorker((request) => {
//     const name = request.params.get('name');
//     return objects.get('counter', name).fetch({ method: 'POST', path: '/increment' });
//   });
//
// Build with `componentize-js app.js --wit wit -n worker -d fetch-event -o worker.wasm`.

import { answer } from './http.js';

export { HttpError, WdoError, Request, Response } from './http.js';
export { context, env, objects, Stub } from './objects.js';

/** The `workerHandler` export: `fetch(request)` answers each request (a fresh instance each, or
 * one instance after another with `reuse_instances = true` in the manifest's `[worker]`). */
export function serveWorker(fetch) {
  return { fetch: (raw) => answer(fetch, raw) };
}
