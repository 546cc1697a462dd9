declare module 'wdo:object/types@0.1.0' {
  /**
   * Header names are lower-case; a name may repeat.
   */
  export type Headers = Array<[string, string]>;
  /**
   * An HTTP request as the object sees it.
   */
  export interface Request {
    /**
     * Upper-case method: GET, POST, ...
     */
    method: string,
    /**
     * The path inside the object, always starting with `/`
     * (`/counter/alice/increment` reaches object `alice` of class `counter` as `/increment`).
     */
    path: string,
    /**
     * The raw query string without the `?`; empty when there is none.
     */
    query: string,
    headers: Headers,
    body: Uint8Array,
  }
  export interface Response {
    status: number,
    headers: Headers,
    body: Uint8Array,
  }
  /**
   * What a host import can fail with. Every variant carries a message for humans.
   */
  export type Error = ErrorInvalidArgument | ErrorLimitExceeded | ErrorNotAllowed | ErrorStorage | ErrorUnsupported;
  /**
   * An argument was malformed (an empty key, a bad id, ...).
   */
  export interface ErrorInvalidArgument {
    tag: 'invalid-argument',
    val: string,
  }
  /**
   * A configured limit was reached (value size, batch size, storage quota, ...).
   * Nothing of the failed call was written.
   */
  export interface ErrorLimitExceeded {
    tag: 'limit-exceeded',
    val: string,
  }
  /**
   * SQL that is not allowed inside an object (BEGIN, ATTACH, a dangerous PRAGMA, ...).
   */
  export interface ErrorNotAllowed {
    tag: 'not-allowed',
    val: string,
  }
  /**
   * The object's database reported an error (a SQL syntax error, a constraint, ...).
   */
  export interface ErrorStorage {
    tag: 'storage',
    val: string,
  }
  /**
   * The capability exists in the contract but this host does not provide it yet.
   */
  export interface ErrorUnsupported {
    tag: 'unsupported',
    val: string,
  }
}
