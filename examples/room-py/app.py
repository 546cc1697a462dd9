"""A broadcast room, in Python: `GET /room-py/<name>` upgrades to a WebSocket; every message a
client sends goes to every socket of the room, the sender included."""

from wdo import DurableObject, Response, serve, websockets


class Room(DurableObject):
    def fetch(self, request):
        websockets.accept(request)
        return Response.upgraded()

    def websocket_message(self, socket, message):
        websockets.broadcast(message)


Handler = serve(Room)
