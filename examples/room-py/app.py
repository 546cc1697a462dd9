"""A broadcast room, in Python: `GET /room-py/<name>` upgrades to a WebSocket; every message a
client sends goes to every socket of the room, the sender included."""

from wdo import DurableObject, Response, WarmUp, serve, websockets


class Room(DurableObject):
    def fetch(self, request):
        websockets.accept(request)
        return Response.upgraded()

    def websocket_message(self, socket, message):
        websockets.broadcast(message)


# The exports: `Handler`, the object, and `WarmUp` (imported above), which lets the host warm
# up the instances it keeps ready (world `warmable-durable-object`).
Handler = serve(Room)
