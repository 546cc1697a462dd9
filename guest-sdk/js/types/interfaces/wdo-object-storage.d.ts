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
   * Empties the object: removes every key-value entry, every table, index, view and trigger
   * its SQL made, and its alarm (as hosted Durable Objects do for SQLite-backed objects), in
   * the current transaction.
   */
  export function deleteAll(): void;
  /**
   * Point-in-time recovery, from the host's backup store (`wdo serve --backup URL`; without
   * one these answer `not-allowed`). A bookmark is a string naming a moment of the object's
   * history; bookmarks sort in time order.
   * 
   * A bookmark for the object's state now: every commit so far, none of the writes of the
   * current event.
   */
  export function currentBookmark(): string;
  /**
   * A bookmark for the object's state at `ms` (milliseconds since the Unix epoch), which must
   * not be in the future nor older than the backup's retention.
   */
  export function bookmarkForTime(ms: bigint): string;
  /**
   * When the object's next session starts (a new instance: after it idled, hibernated or
   * failed), its storage comes back exactly as it was at `bookmark` (empty, if that was before
   * its first commit), before any event of that session runs. Returns a bookmark for the state
   * before the current event, which undoes the restore.
   */
  export function restoreOnNextSession(bookmark: string): string;
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
