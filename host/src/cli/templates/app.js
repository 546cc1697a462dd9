// A durable object in JavaScript: one counter per object name, kept in storage.
//
// `POST /{{class}}/<name>/increment` answers the new value; `GET /{{class}}/<name>` the current one.
import { DurableObject, Response, serve, storage } from './wdo.js';

class Counter extends DurableObject {
  fetch(request) {
    let value = storage.get('value') ?? 0;
    if (request.method === 'GET' && request.path === '/') return Response.text(String(value));
    if (request.method !== 'POST' || request.path !== '/increment') return Response.notFound();
    value += 1;
    storage.put('value', value);
    return Response.text(String(value));
  }
}

export const handler = serve(Counter);
// Lets the host warm up the instances it keeps ready (world `warmable-durable-object`).
export { warmUp } from './wdo.js';
