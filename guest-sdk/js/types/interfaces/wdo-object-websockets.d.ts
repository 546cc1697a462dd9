/// <reference path="./wdo-object-types.d.ts" />
declare module 'wdo:object/websockets@0.1.0' {
  /**
   * Accepts the WebSocket upgrade of the request being handled by `fetch`. The response
   * `fetch` returns is replaced by 101 Switching Protocols.
   */
  export function accept(tags: Array<string>, attachment: Uint8Array | undefined): SocketId;
  /**
   * Opens a WebSocket to `url` (`ws://` or `wss://`) as this object's client, offering
   * `protocols`. The host owns the connection as it owns accepted sockets: it outlives the
   * instance (hibernation), what the remote end sends arrives as `websocket-message` and
   * `websocket-close` events with the returned id, and `send`, `close`, tags and attachments
   * work alike. Its host must be allowed by the class's `outbound` list; the event's writes
   * so far commit before the connection opens (the output gate). The socket joins the
   * object when the event commits; if the event fails, the connection is closed. The error
   * says why no connection was made: a bad URL or argument, a refusal naming the manifest
   * key, a limit, or the network's failure.
   */
  export function connect(url: string, protocols: Array<string>, tags: Array<string>, attachment: Uint8Array | undefined): SocketId;
  /**
   * Open sockets of this object, optionally only those with a tag.
   */
  export function getWebsockets(tag: string | undefined): BigUint64Array;
  /**
   * Sent when the current event commits.
   */
  export function send(socket: SocketId, message: Message): void;
  export function close(socket: SocketId, code: number, reason: string): void;
  export function getTags(socket: SocketId): Array<string>;
  export function getAttachment(socket: SocketId): Uint8Array | undefined;
  export function setAttachment(socket: SocketId, attachment: Uint8Array | undefined): void;
  /**
   * The host answers `request` with `response` without waking the object.
   */
  export function setAutoResponse(pair: [string, string] | undefined): void;
  /**
   * When the host last answered `socket` with the auto-response, in ms since the Unix epoch.
   */
  export function getAutoResponseTimestamp(socket: SocketId): bigint | undefined;
  /**
   * Keeps this object's instance in memory while `socket` is open, for code that keeps the
   * socket's state in the instance (JavaScript's standard WebSocket API, with listeners)
   * instead of hibernating between its events. The instance still goes when it fails, when
   * its database is closed to make room for others (`--max-open-objects`) or on a deploy.
   */
  export function holdInstance(socket: SocketId): void;
  export type Error = import('wdo:object/types@0.1.0').Error;
  /**
   * A socket of this object, stable while it is open.
   */
  export type SocketId = bigint;
  export type Message = MessageText | MessageBinary;
  export interface MessageText {
    tag: 'text',
    val: string,
  }
  export interface MessageBinary {
    tag: 'binary',
    val: Uint8Array,
  }
}
