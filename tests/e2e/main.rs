//! End-to-end tests: the real `wdo serve` binary, real components, real HTTP.

mod harness;

mod alarms;
mod backup;
mod backup_classes;
mod backup_sync;
mod bookmarks;
mod browser;
mod clients;
mod cloudflare;
mod cluster;
mod cluster_anchor;
mod cluster_drain;
mod cluster_worker;
mod counter;
mod deploy;
mod embed;
mod etcd;
mod failures;
mod kv;
mod languages;
mod lifecycle;
mod limits;
mod new;
mod observe;
mod outbound;
mod rpc;
mod secrets;
mod sql;
mod startup;
mod upstream;
mod warm_up;
mod websockets;
mod worker;
