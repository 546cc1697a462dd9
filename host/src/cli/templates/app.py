"""A durable object in Python: one counter per object name, kept in storage.

`POST /{{class}}/<name>/increment` answers the new value; `GET /{{class}}/<name>` the current one.
"""

from wdo import DurableObject, Response, WarmUp, serve, storage


class Counter(DurableObject):
    def fetch(self, request):
        value = storage.get("value", 0)
        if (request.method, request.path) == ("GET", "/"):
            return Response.text(str(value))
        if (request.method, request.path) != ("POST", "/increment"):
            return Response.not_found()
        value += 1
        storage.put("value", value)
        return Response.text(str(value))


# The exports: `Handler`, the object, and `WarmUp` (imported above), which lets the host warm
# up the instances it keeps ready (world `warmable-durable-object`).
Handler = serve(Counter)
