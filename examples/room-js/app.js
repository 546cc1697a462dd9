// A broadcast room, in JavaScript: `GET /room-js/<name>` upgrades to a WebSocket; every message
// a client sends goes to every socket of the room, the sender included.
import { DurableObject, Response, serve, websockets } from '../../guest-sdk/js/wdo.js';

class Room extends DurableObject {
  fetch(request) {
    websockets.accept(request);
    return Response.upgraded();
  }

  webSocketMessage(_from, message) {
    websockets.broadcast(message);
  }
}

export const handler = serve(Room);
// Lets the host warm up the instances it keeps ready (world `warmable-durable-object`).
export { warmUp } from '../../guest-sdk/js/wdo.js';
