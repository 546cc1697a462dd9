/// <reference path="./wdo-object-types.d.ts" />
declare module 'wdo:object/sql@0.1.0' {
  /**
   * Runs one or more `;`-separated statements; `params` bind to the last one.
   */
  export function exec(query: string, params: Array<Value>): QueryResult;
  /**
   * Runs statements like `exec`, for their effect only: no columns or rows come back (rows a
   * statement returns are read and dropped). The cheaper call for writes.
   */
  export function execute(query: string, params: Array<Value>): Counts;
  /**
   * Runs one statement once per entry of `rows` (the parameters of each run), all or nothing:
   * a bulk insert or update in one call. No rows come back; the counts add up.
   */
  export function execMany(query: string, rows: Array<Array<Value>>): QueryResult;
  /**
   * Size of the object's database in bytes.
   */
  export function databaseSize(): bigint;
  export type Error = import('wdo:object/types@0.1.0').Error;
  export type Value = ValueNull | ValueInteger | ValueReal | ValueText | ValueBlob;
  export interface ValueNull {
    tag: 'null',
  }
  export interface ValueInteger {
    tag: 'integer',
    val: bigint,
  }
  export interface ValueReal {
    tag: 'real',
    val: number,
  }
  export interface ValueText {
    tag: 'text',
    val: string,
  }
  export interface ValueBlob {
    tag: 'blob',
    val: Uint8Array,
  }
  export interface QueryResult {
    columns: Array<string>,
    rows: Array<Array<Value>>,
    rowsRead: bigint,
    rowsWritten: bigint,
  }
  /**
   * What a statement run for its effect did.
   */
  export interface Counts {
    rowsRead: bigint,
    rowsWritten: bigint,
  }
}
