/// <reference path="./wdo-object-types.d.ts" />
declare module 'wdo:object/alarms@0.1.0' {
  /**
   * The pending alarm, in ms since the Unix epoch.
   */
  export function get(): bigint | undefined;
  /**
   * Replaces any earlier alarm; a time in the past fires as soon as possible.
   */
  export function set(atMs: bigint): void;
  export { _delete as delete };
  function _delete(): void;
  export type Error = import('wdo:object/types@0.1.0').Error;
}
