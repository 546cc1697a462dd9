/// <reference path="./wdo-object-types.d.ts" />
/// <reference path="./wdo-object-websockets.d.ts" />
declare module 'wdo:object/handler@0.1.0' {
  /**
   * An HTTP request (or a WebSocket upgrade request) for this object.
   */
  export function fetch(request: Request): Response;
  /**
   * An RPC call from another object, a worker or the host's call route.
   */
  export function call(method: string, args: Uint8Array): Uint8Array;
  /**
   * The object's alarm came due. An error (or a trap) means: retry later.
   */
  export function alarm(info: AlarmInfo): void;
  export function websocketMessage(socket: SocketId, message: Message): void;
  export function websocketClose(socket: SocketId, code: number, reason: string, wasClean: boolean): void;
  export function websocketError(socket: SocketId, error: string): void;
  export type Request = import('wdo:object/types@0.1.0').Request;
  export type Response = import('wdo:object/types@0.1.0').Response;
  export type SocketId = import('wdo:object/websockets@0.1.0').SocketId;
  export type Message = import('wdo:object/websockets@0.1.0').Message;
  export interface AlarmInfo {
    retryCount: number,
    isRetry: boolean,
  }
}
