declare module 'wdo:object/context@0.1.0' {
  /**
   * This object's id: 64 lower-case hex characters, stable for its whole life.
   */
  export function objectId(): string;
  /**
   * The name the object was addressed by, when it has one (ids from `new-unique-id` have none).
   */
  export function objectName(): string | undefined;
  /**
   * The class this object is an instance of.
   */
  export function className(): string;
  /**
   * Write a line to the host's log, tagged with this object's class and name.
   */
  export function log(level: LogLevel, message: string): void;
  /**
   * Wall-clock time in milliseconds since the Unix epoch.
   */
  export function nowMs(): bigint;
  /**
   * A setting of this code: a secret of its class (`wdo secret put`), else a var of the
   * deployed version (`vars` in `wdo.toml`). None when neither has `key`.
   */
  export function env(key: string): string | undefined;
  /**
   * Why this code's last outbound request (`wasi:http/outgoing-handler`) failed, in the
   * host's words: a refusal names the host and the manifest key to change. None when it did
   * not fail. For HTTP clients that report every failure alike (JavaScript's `fetch`).
   */
  export function lastRequestError(): string | undefined;
  /**
   * # Variants
   * 
   * ## `"trace"`
   * 
   * ## `"debug"`
   * 
   * ## `"info"`
   * 
   * ## `"warn"`
   * 
   * ## `"error"`
   */
  export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
