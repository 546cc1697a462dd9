"""The counter of the product page, in Python: one number per object name, kept in storage.

`POST /counter-py/<name>/increment` and `/decrement` answer the new value;
`GET /counter-py/<name>` answers the current value ("0" if never set).
"""

from wdo import DurableObject, Response, WarmUp, serve, storage


class Counter(DurableObject):
    def fetch(self, request):
        value = storage.get("value", 0)
        route = (request.method, request.path)
        if route == ("GET", "/"):
            return Response.text(str(value))
        elif route == ("POST", "/increment"):
            value += 1
        elif route == ("POST", "/decrement"):
            value -= 1
        else:
            return Response.not_found()
        storage.put("value", value)
        return Response.text(str(value))


# The exports: `Handler`, the object, and `WarmUp` (imported above), which lets the host warm
# up the instances it keeps ready (world `warmable-durable-object`).
Handler = serve(Counter)
