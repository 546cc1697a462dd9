/// <reference path="./wdo-object-types.d.ts" />
declare module 'wdo:object/transaction@0.1.0' {
  /**
   * Opens a savepoint and returns its handle.
   */
  export function savepoint(): number;
  /**
   * Keeps the writes since `savepoint` (they still commit only with the event).
   */
  export function release(savepoint: number): void;
  /**
   * Undoes the writes since `savepoint` and closes it.
   */
  export function rollback(savepoint: number): void;
  export type Error = import('wdo:object/types@0.1.0').Error;
}
