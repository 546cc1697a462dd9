/// <reference path="./wdo-object-types.d.ts" />
declare module 'wdo:object/objects@0.1.0' {
  export function idFromName(class_: string, name: string): string;
  export function newUniqueId(class_: string): string;
  /**
   * Checks that `id` is a valid id of `class`.
   */
  export function idFromString(class_: string, id: string): string;
  export function call(class_: string, id: string, method: string, args: Uint8Array): Uint8Array;
  export function fetch(class_: string, id: string, request: Request): Response;
  export type Error = import('wdo:object/types@0.1.0').Error;
  export type Request = import('wdo:object/types@0.1.0').Request;
  export type Response = import('wdo:object/types@0.1.0').Response;
  /**
   * Why a call to another object failed.
   */
  export interface CallError {
    message: string,
    /**
     * The callee's own code failed (its `call` returned an error, or it trapped).
     */
    fromCallee: boolean,
    /**
     * Nothing happened in the callee; the same call may be retried.
     */
    retryable: boolean,
    /**
     * The callee's queue is full.
     */
    overloaded: boolean,
  }
}
