"""The race-free ticket counter of the product page, in Python: every `POST /ticket-py/<name>`
gets the next ticket number of that counter, `{"ticket": N}`, none given twice or skipped."""

from wdo import DurableObject, Response, WarmUp, serve, sql

SCHEMA = [
    "CREATE TABLE tickets (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL)",
    "INSERT INTO tickets (id, last) VALUES (1, 0)",
]


class Tickets(DurableObject):
    def fetch(self, request):
        if (request.method, request.path) != ("POST", "/"):
            return Response.not_found()
        sql.migrate(SCHEMA)
        # Take the next number and read it back as one unit.
        with sql.transaction():
            sql.run("UPDATE tickets SET last = last + 1 WHERE id = 1")
            ticket = sql.one("SELECT last FROM tickets WHERE id = 1")["last"]
        return Response.json({"ticket": ticket})


# The exports: `Handler`, the object, and `WarmUp` (imported above), which lets the host warm
# up the instances it keeps ready (world `warmable-durable-object`).
Handler = serve(Tickets)
