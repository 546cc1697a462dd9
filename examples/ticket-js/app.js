// The race-free ticket counter of the product page, in JavaScript: every `POST /ticket-js/<name>`
// gets the next ticket number of that counter, `{"ticket": N}`, none given twice or skipped.
import { DurableObject, Response, serve, sql } from '../../guest-sdk/js/wdo.js';

const SCHEMA = [
  'CREATE TABLE tickets (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL)',
  'INSERT INTO tickets (id, last) VALUES (1, 0)',
];

class Tickets extends DurableObject {
  fetch(request) {
    if (request.method !== 'POST' || request.path !== '/') return Response.notFound();
    sql.migrate(SCHEMA);
    // Take the next number and read it back as one unit.
    const ticket = sql.transaction(() => {
      sql.run('UPDATE tickets SET last = last + 1 WHERE id = 1');
      return sql.one('SELECT last FROM tickets WHERE id = 1').last;
    });
    return Response.json({ ticket });
  }
}

export const handler = serve(Tickets);
// Lets the host warm up the instances it keeps ready (world `warmable-durable-object`).
export { warmUp } from '../../guest-sdk/js/wdo.js';
