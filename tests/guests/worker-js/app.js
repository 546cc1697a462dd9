// A JavaScript worker in front of the JavaScript counter: `/increment?name=A`, `/decrement?name=A`
// and `/?name=A` reach the `counter-js` object named A; `/env?key=K` reads its vars and secrets
// and `/fetch?url=U` sends an outbound request with the platform's `fetch` (`/fetch-unread`
// leaves the response's body unread); `/seen` counts the
// requests this instance has run (`?loops=N`: after computing a while); `/spin` runs until the CPU limit stops it.
import { HttpError, Response, env, objects, serveWorker } from '../../../guest-sdk/js/worker.js';

// Module state: each request gets a fresh instance (a spare made ahead, or a new one), so
// `/seen` always answers 1, unless the manifest has the worker reuse its instances.
let seen = 0;

export const workerHandler = serveWorker((request) => {
  if (request.path === '/seen') {
    // `?loops=N`: computes first (the host's CPU ticks let other requests run meanwhile, so
    // requests at once overlap).
    const loops = Number(request.params.get('loops') ?? 0);
    let sum = 0;
    for (let i = 0; i < loops; i++) sum += i;
    seen += sum < 0 ? 0 : 1;
    return Response.text(`${seen}`);
  }
  if (request.path === '/spin') {
    for (;;) {}
  }
  if (request.path === '/env') {
    const value = env[request.params.get('key')];
    return value === undefined ? Response.notFound() : Response.text(value);
  }
  if (request.path === '/fetch-unread') {
    // The response's status only: its body is left unread.
    return fetch(request.params.get('url')).then((answer) => Response.text(`${answer.status}`));
  }
  if (request.path === '/fetch') {
    return fetch(request.params.get('url'))
      .then(async (answer) => Response.text(`${answer.status} ${await answer.text()}`))
      .catch((e) => Response.text(`${e.message}\n`, 502));
  }
  const name = request.params.get('name');
  if (!name) throw new HttpError(400, 'missing ?name=');
  const counter = objects.get('counter-js', name);
  switch (`${request.method} ${request.path}`) {
    case 'GET /increment':
    case 'POST /increment':
      return counter.fetch({ method: 'POST', path: '/increment' });
    case 'GET /decrement':
    case 'POST /decrement':
      return counter.fetch({ method: 'POST', path: '/decrement' });
    case 'GET /':
      return counter.fetch({ method: 'GET', path: '/' });
    default:
      throw new HttpError(404, 'not found');
  }
});
