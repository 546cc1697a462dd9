"""A Python worker in front of the Python counter: `/increment?name=A`, `/decrement?name=A` and
`/?name=A` reach the `counter-py` object named A; `/env?key=K` reads its vars and secrets and
`/fetch?url=U` sends an outbound request."""

from wdo.outbound import fetch as outbound_fetch
from wdo.worker import HttpError, Response, env, objects, serve_worker


def fetch(request):
    if request.path == "/env":
        value = env.get(request.params.get("key", ""))
        return Response.not_found() if value is None else Response.text(value)
    if request.path == "/fetch":
        answer = outbound_fetch(request.params.get("url", ""))
        return Response.text(f"{answer.status} {answer.text()}")
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
