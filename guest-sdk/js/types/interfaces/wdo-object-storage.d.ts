/// <reference path="./wdo-object-types.d.ts" />
declare module 'wdo:object/storage@0.1.0' {
  export function get(key: string): Uint8Array | undefined;
  /**
   * Only the keys that exist come back, in the order asked.
   */
  export function getMany(keys: Array<string>): Array<Entry>;
  export function put(key: string, value: Uint8Array): void;
  export function putMany(entries: Array<Entry>): void;
  /**
   * True when the key existed.
   */
  export { _delete as delete };
  function _delete(key: string): boolean;
  /**
   * How many of the keys existed.
   */
  export function deleteMany(keys: Array<string>): number;
  export function listEntries(options: ListOptions): Array<Entry>;
  /**
   * Removes every key-value entry of this object.
   */
  export function deleteAll(): void;
  export type Error = import('wdo:object/types@0.1.0').Error;
  export type Entry = [string, Uint8Array];
  /**
   * Options for `list-entries`. Keys come back in byte order of their UTF-8 encoding.
   */
  export interface ListOptions {
    /**
     * Only keys that start with this prefix.
     */
    prefix?: string,
    /**
     * Only keys >= start.
     */
    start?: string,
    /**
     * Only keys > start-after (use either start or start-after).
     */
    startAfter?: string,
    /**
     * Only keys < end.
     */
    end?: string,
    /**
     * Descending order.
     */
    reverse: boolean,
    /**
     * At most this many entries.
     */
    limit?: number,
  }
}
