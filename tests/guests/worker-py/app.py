"""A Python worker in front of the Python counter: `/increment?name=A`, `/decrement?name=A` and
`/?name=A` reach the `counter-py` object named A."""

from wdo.worker import HttpError, objects, serve_worker


def fetch(request):
    name = request.params.get("name")
    if not name:
        raise HttpError(400, "missing ?name=")
    counter = objects.get("counter-py", name)
    route = request.path
    if route in ("/increment", "/decrement"):
        return counter.fetch("POST", route)
    if route == "/":
        return counter.fetch("GET", "/")
    raise HttpError(404, "not found")


WorkerHandler = serve_worker(fetch)
