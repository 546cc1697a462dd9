// The counter of the product page, in JavaScript: one number per object name, kept in storage.
//
// `POST /counter-js/<name>/increment` and `/decrement` answer the new value;
// `GET /counter-js/<name>` answers the current value ("0" if never set).
import { DurableObject, Response, serve, storage } from '../../guest-sdk/js/wdo.js';

class Counter extends DurableObject {
  fetch(request) {
    let value = storage.get('value') ?? 0;
    const route = `${request.method} ${request.path}`;
    if (route === 'GET /') return Response.text(String(value));
    else if (route === 'POST /increment') value += 1;
    else if (route === 'POST /decrement') value -= 1;
    else return Response.notFound();
    storage.put('value', value);
    return Response.text(String(value));
  }
}

export const handler = serve(Counter);
// Lets the host warm up the instances it keeps ready (world `warmable-durable-object`).
export { warmUp } from '../../guest-sdk/js/wdo.js';
