/// <reference path="./interfaces/wdo-object-alarms.d.ts" />
/// <reference path="./interfaces/wdo-object-context.d.ts" />
/// <reference path="./interfaces/wdo-object-handler.d.ts" />
/// <reference path="./interfaces/wdo-object-objects.d.ts" />
/// <reference path="./interfaces/wdo-object-sql.d.ts" />
/// <reference path="./interfaces/wdo-object-storage.d.ts" />
/// <reference path="./interfaces/wdo-object-transaction.d.ts" />
/// <reference path="./interfaces/wdo-object-types.d.ts" />
/// <reference path="./interfaces/wdo-object-warm-up.d.ts" />
/// <reference path="./interfaces/wdo-object-websockets.d.ts" />
declare module 'wdo:object/warmable-durable-object@0.1.0' {
  export type * as WdoObjectAlarms010 from 'wdo:object/alarms@0.1.0'; // import wdo:object/alarms@0.1.0
  export type * as WdoObjectContext010 from 'wdo:object/context@0.1.0'; // import wdo:object/context@0.1.0
  export type * as WdoObjectObjects010 from 'wdo:object/objects@0.1.0'; // import wdo:object/objects@0.1.0
  export type * as WdoObjectSql010 from 'wdo:object/sql@0.1.0'; // import wdo:object/sql@0.1.0
  export type * as WdoObjectStorage010 from 'wdo:object/storage@0.1.0'; // import wdo:object/storage@0.1.0
  export type * as WdoObjectTransaction010 from 'wdo:object/transaction@0.1.0'; // import wdo:object/transaction@0.1.0
  export type * as WdoObjectTypes010 from 'wdo:object/types@0.1.0'; // import wdo:object/types@0.1.0
  export type * as WdoObjectWebsockets010 from 'wdo:object/websockets@0.1.0'; // import wdo:object/websockets@0.1.0
  export * as warmUp from 'wdo:object/warm-up@0.1.0'; // export wdo:object/warm-up@0.1.0
  export * as handler from 'wdo:object/handler@0.1.0'; // export wdo:object/handler@0.1.0
}
