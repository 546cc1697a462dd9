//! What the cluster keeps in etcd, and the transactions that change it.
//!
//! Keys (all under `wdo/`):
//!
//! - `secret`: the cluster's secret (hex), made by the first host: it signs forwarded events and
//!   derives every class's id secret, so a name means the same object on every host;
//! - `hosts/<host>`: a live host's advertised URL (followed by ` draining` while it hands its
//!   objects over), under that host's lease;
//! - `owners/<class>/<id>`: the host that holds the object, under its lease. The claim's
//!   revision (the key's create revision) is the object's fencing token;
//! - `alarms/<class>/<id>`: when the object's alarm is due (ms since 1970), kept by its owner
//!   while it has one, so that the alarm of an object whose host died fires on another;
//! - `last/<class>/<id>`: where the object's latest state is in the backup store, an
//!   [`Anchor`] kept by its holder (and after it lets go): a host that claims an object
//!   someone else held restores it from there (`anchor.rs`);
//! - `changes/<random>`: the cluster's journal of deploys, rollbacks and secrets, in the order
//!   of their create revisions (`changes.rs`); never trimmed (a change is a few KB);
//! - `change-lock`: the host making a change now, under its lease: one change at a time.

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A client of every etcd member, used one at a time: a request that cannot reach its member
/// goes to the next one (a balanced channel keeps picking a dead member now and then).
pub struct Etcd {
    clients: Vec<Client>,
    current: AtomicUsize,
}

impl Etcd {
    pub async fn connect(endpoints: &[String], options: etcd_client::ConnectOptions) -> Result<Etcd, String> {
        let mut clients = Vec::new();
        for endpoint in endpoints {
            let client = Client::connect([endpoint], Some(options.clone()))
                .await
                .map_err(|e| format!("cannot reach etcd at {endpoint}: {e}"))?;
            clients.push(client);
        }
        Ok(Etcd { clients, current: AtomicUsize::new(0) })
    }

    /// The member's client requests go to now.
    pub fn client(&self) -> Client {
        self.clients[self.current.load(Ordering::Relaxed) % self.clients.len()].clone()
    }

    /// Runs `op` on the current member, and on the next ones while a member does not answer.
    pub async fn run<T, F, R>(&self, what: &str, op: F) -> Result<T, String>
    where
        F: Fn(Client) -> R,
        R: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = None;
        for _ in 0..self.clients.len() {
            let at = self.current.load(Ordering::Relaxed);
            match op(self.clients[at % self.clients.len()].clone()).await {
                Ok(value) => return Ok(value),
                Err(e) if unreachable(&e) => {
                    let _ = self.current.compare_exchange(at, at + 1, Ordering::Relaxed, Ordering::Relaxed);
                    last = Some(e);
                }
                Err(e) => return Err(failed(what, e)),
            }
        }
        Err(failed(what, last.expect("at least one member")))
    }

    /// The member did not answer (as opposed to answering no): try another.
    pub fn next_member(&self) {
        self.current.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether an error says the member could not be reached (or did not answer in time).
fn unreachable(error: &etcd_client::Error) -> bool {
    match error {
        // 14: unavailable, 4: deadline exceeded, 1: cancelled, 2: unknown (a connection reset).
        etcd_client::Error::GRpcStatus(status) => matches!(status.code() as i32, 1 | 2 | 4 | 14),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// A live host: its id and the URL other hosts reach it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub advertise: String,
    /// Handing its objects over (`wdo cluster drain`): it takes no new ones.
    pub draining: bool,
}

/// Where an object's latest state is in the backup store (the value of `last/<class>/<id>`):
/// the database `stored` there (`None`: no base, the object starts empty), then the commits of
/// the object that `host`'s run `run` shipped under a token of at least `token`, in that run's
/// batches from number `batch` on (written from `since_ms` on, by that run's clock: where the
/// listing starts). Only the host that holds the object writes it, and before the object runs
/// anything; see `anchor.rs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub host: String,
    /// `None`: written by a version that kept no run (the whole log is walked).
    pub run: Option<String>,
    pub token: u64,
    pub since_ms: u64,
    pub batch: u64,
    pub stored: Option<String>,
}

impl Anchor {
    /// `v2 <host> <run> <token> <since_ms> <batch> <stored or ->`; earlier values
    /// (`<host>[ <stored>]`) read as anchors with no run.
    fn encode(&self) -> String {
        let run = self.run.as_deref().unwrap_or("-");
        let stored = self.stored.as_deref().unwrap_or("-");
        format!("v2 {} {run} {} {} {} {stored}", self.host, self.token, self.since_ms, self.batch)
    }

    pub fn decode(value: &str) -> Option<Anchor> {
        let words: Vec<&str> = value.split(' ').collect();
        let some = |word: &str| (word != "-").then(|| word.to_string());
        match words.as_slice() {
            ["v2", host, run, token, since, batch, stored] => Some(Anchor {
                host: host.to_string(),
                run: some(run),
                token: token.parse().ok()?,
                since_ms: since.parse().ok()?,
                batch: batch.parse().ok()?,
                stored: some(stored),
            }),
            [host] => Some(Anchor { host: host.to_string(), run: None, token: 0, since_ms: 0, batch: 0, stored: None }),
            // A release of that version: the whole database, `-` when it had none.
            [host, stored] => Some(Anchor {
                host: host.to_string(),
                run: None,
                token: 0,
                since_ms: 0,
                batch: 0,
                stored: Some(stored.to_string()),
            }),
            _ => None,
        }
    }
}

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// This host holds the object now, under `token`; `previous`: where its state was when
    /// claimed (`None`: no host ever held it, and `fresh` is its anchor now).
    Claimed { token: u64, previous: Option<Anchor> },
    /// Another host (or this host under an older lease: `lease` differs) holds it, under
    /// `token`.
    Held { host: String, lease: i64, token: u64 },
}

pub fn owner_key(class: &str, id_hex: &str) -> String {
    format!("wdo/owners/{class}/{id_hex}")
}

fn last_key(class: &str, id_hex: &str) -> String {
    format!("wdo/last/{class}/{id_hex}")
}

fn host_key(id: &str) -> String {
    format!("wdo/hosts/{id}")
}

fn failed(what: &str, e: etcd_client::Error) -> String {
    format!("etcd did not {what}: {e}")
}

/// The cluster's secret: the one already in etcd, or `proposed` if this host is the first.
pub async fn secret(etcd: &Etcd, proposed: &str) -> Result<String, String> {
    let key = "wdo/secret";
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, proposed, None)])
        .or_else([TxnOp::get(key, None)]);
    let response = etcd
        .run("give the cluster's secret", |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    if response.succeeded() {
        return Ok(proposed.to_string());
    }
    for op in response.op_responses() {
        if let TxnOpResponse::Get(get) = op
            && let Some(kv) = get.kvs().first()
        {
            return Ok(String::from_utf8_lossy(kv.value()).into_owned());
        }
    }
    Err("etcd answered the secret's transaction without the secret".into())
}

/// A new lease of `ttl` seconds.
pub async fn grant(etcd: &Etcd, ttl: i64) -> Result<i64, String> {
    Ok(etcd.run("grant a lease", |mut c| async move { c.lease_grant(ttl, None).await }).await?.id())
}

/// Lists this host as live under `lease`.
pub async fn register(etcd: &Etcd, member: &Member, lease: i64) -> Result<(), String> {
    let value = match member.draining {
        true => format!("{} draining", member.advertise),
        false => member.advertise.clone(),
    };
    let key = host_key(&member.id);
    etcd.run("list this host", |mut c| {
        let (key, value) = (key.clone(), value.clone());
        async move { c.put(key, value, Some(PutOptions::new().with_lease(lease))).await }
    })
    .await?;
    Ok(())
}

/// The live hosts, sorted by id.
pub async fn members(etcd: &Etcd) -> Result<Vec<Member>, String> {
    let response = etcd
        .run("list the hosts", |mut c| async move { c.get("wdo/hosts/", Some(GetOptions::new().with_prefix())).await })
        .await?;
    let mut members: Vec<Member> = response
        .kvs()
        .iter()
        .filter_map(|kv| {
            let id = kv.key_str().ok()?.strip_prefix("wdo/hosts/")?.to_string();
            let value = kv.value_str().ok()?;
            let (advertise, draining) = match value.strip_suffix(" draining") {
                Some(advertise) => (advertise, true),
                None => (value, false),
            };
            Some(Member { id, advertise: advertise.to_string(), draining })
        })
        .collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(members)
}

/// A watch on the live hosts' keys: a message whenever a host joins, leaves or starts draining.
pub async fn watch_members(etcd: &Etcd) -> Result<etcd_client::WatchStream, String> {
    let options = etcd_client::WatchOptions::new().with_prefix();
    etcd.run("watch the hosts", |mut c| {
        let options = options.clone();
        async move { c.watch("wdo/hosts/", Some(options)).await }
    })
    .await
}

/// Claims an object for `host` under `lease`, if nobody holds it. An object no host ever held
/// gets `fresh` as its anchor in the same transaction.
pub async fn claim(
    etcd: &Etcd,
    class: &str,
    id_hex: &str,
    host: &str,
    lease: i64,
    fresh: &Anchor,
) -> Result<Claim, String> {
    let (owner, last) = (owner_key(class, id_hex), last_key(class, id_hex));
    let anchor_if_new = Txn::new()
        .when([Compare::create_revision(last.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(last.as_str(), fresh.encode(), None)])
        .or_else([TxnOp::get(last.as_str(), None)]);
    let txn = Txn::new()
        .when([Compare::create_revision(owner.as_str(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(owner.as_str(), host, Some(PutOptions::new().with_lease(lease))),
            TxnOp::txn(anchor_if_new),
        ])
        .or_else([TxnOp::get(owner.as_str(), None)]);
    let response = etcd
        .run("answer a claim", |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    let ops = response.op_responses();
    if response.succeeded() {
        let token = response.header().map(|h| h.revision()).unwrap_or(0);
        if token <= 0 {
            return Err("etcd answered a claim without a revision".into());
        }
        let previous = ops.iter().find_map(|op| match op {
            TxnOpResponse::Txn(inner) if !inner.succeeded() => inner.op_responses().iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                _ => None,
            }),
            _ => None,
        });
        let previous = match previous {
            Some(value) => {
                Some(Anchor::decode(&value).ok_or_else(|| format!("{last} in etcd is not understood: {value}"))?)
            }
            None => None,
        };
        return Ok(Claim::Claimed { token: token as u64, previous });
    }
    for op in ops {
        if let TxnOpResponse::Get(get) = op
            && let Some(kv) = get.kvs().first()
        {
            let host = String::from_utf8_lossy(kv.value()).into_owned();
            return Ok(Claim::Held { host, lease: kv.lease(), token: kv.create_revision() as u64 });
        }
    }
    // Released between the compare and the read: the caller tries again.
    Ok(Claim::Held { host: String::new(), lease: 0, token: 0 })
}

/// The object's anchor, if a host ever held it.
pub async fn anchor(etcd: &Etcd, class: &str, id_hex: &str) -> Result<Option<Anchor>, String> {
    let key = last_key(class, id_hex);
    let response = etcd
        .run("read an anchor", |mut c| {
            let key = key.clone();
            async move { c.get(key, None).await }
        })
        .await?;
    match response.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()) {
        Some(value) => {
            Ok(Some(Anchor::decode(&value).ok_or_else(|| format!("{key} in etcd is not understood: {value}"))?))
        }
        None => Ok(None),
    }
}

/// Moves the anchor of an object this host holds under `token`, and with `release` lets go of
/// it too; false if the claim was gone already.
pub async fn set_anchor(
    etcd: &Etcd,
    class: &str,
    id_hex: &str,
    token: u64,
    anchor: Option<&Anchor>,
    release: bool,
) -> Result<bool, String> {
    let owner = owner_key(class, id_hex);
    let mut ops = Vec::new();
    if release {
        ops.push(TxnOp::delete(owner.as_str(), None));
    }
    if let Some(anchor) = anchor {
        ops.push(TxnOp::put(last_key(class, id_hex), anchor.encode(), None));
    }
    let txn = Txn::new().when([Compare::create_revision(owner.as_str(), CompareOp::Equal, token as i64)]).and_then(ops);
    Ok(etcd
        .run(if release { "release an object" } else { "move an anchor" }, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?
        .succeeded())
}

/// Objects held per host (for `wdo cluster status`).
pub async fn owners(etcd: &Etcd) -> Result<Vec<(String, String)>, String> {
    let response =
        etcd.run("list the owners", |mut c| async move {
            c.get("wdo/owners/", Some(GetOptions::new().with_prefix())).await
        })
        .await?;
    Ok(response
        .kvs()
        .iter()
        .filter_map(|kv| {
            let key = kv.key_str().ok()?.strip_prefix("wdo/owners/")?.to_string();
            Some((key, kv.value_str().ok()?.to_string()))
        })
        .collect())
}

/// The host holding an object, if any.
pub async fn owner(etcd: &Etcd, class: &str, id_hex: &str) -> Result<Option<String>, String> {
    let key = owner_key(class, id_hex);
    let response = etcd
        .run("read an owner", |mut c| {
            let key = key.clone();
            async move { c.get(key, None).await }
        })
        .await?;
    Ok(response.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
}

fn alarm_key(class: &str, id_hex: &str) -> String {
    format!("wdo/alarms/{class}/{id_hex}")
}

/// Records when an object's alarm is due (`None`: it has none).
pub async fn set_alarm(etcd: &Etcd, class: &str, id_hex: &str, at_ms: Option<i64>) -> Result<(), String> {
    let key = alarm_key(class, id_hex);
    match at_ms {
        Some(at) => {
            etcd.run("record an alarm", |mut c| {
                let key = key.clone();
                async move { c.put(key, at.to_string(), None).await }
            })
            .await?;
        }
        None => {
            etcd.run("forget an alarm", |mut c| {
                let key = key.clone();
                async move { c.delete(key, None).await }
            })
            .await?;
        }
    }
    Ok(())
}

/// Objects with an alarm that no host holds: (class, id, due).
pub async fn orphan_alarms(etcd: &Etcd) -> Result<Vec<(String, String, i64)>, String> {
    let alarms =
        etcd.run("list the alarms", |mut c| async move {
            c.get("wdo/alarms/", Some(GetOptions::new().with_prefix())).await
        })
        .await?;
    let owners = etcd
        .run("list the owners", |mut c| async move {
            c.get("wdo/owners/", Some(GetOptions::new().with_prefix().with_keys_only())).await
        })
        .await?;
    let held: std::collections::HashSet<&str> =
        owners.kvs().iter().filter_map(|kv| kv.key_str().ok()?.strip_prefix("wdo/owners/")).collect();
    Ok(alarms
        .kvs()
        .iter()
        .filter_map(|kv| {
            let object = kv.key_str().ok()?.strip_prefix("wdo/alarms/")?;
            if held.contains(object) {
                return None;
            }
            let (class, id) = object.split_once('/')?;
            Some((class.to_string(), id.to_string(), kv.value_str().ok()?.parse().ok()?))
        })
        .collect())
}

/// Appends `change` (JSON) to the cluster's journal of changes; returns its revision.
pub async fn journal(etcd: &Etcd, change: &str) -> Result<u64, String> {
    let key = format!("wdo/changes/{}", hex::encode(rand::random::<[u8; 8]>()));
    let response = etcd
        .run("record a change", |mut c| {
            let (key, change) = (key.clone(), change.to_string());
            async move { c.put(key, change, None).await }
        })
        .await?;
    match response.header().map(|h| h.revision()) {
        Some(revision) if revision > 0 => Ok(revision as u64),
        _ => Err("etcd recorded a change without a revision".into()),
    }
}

/// Up to `limit` changes of the journal recorded after revision `after`, oldest first, with
/// their revisions; and whether more follow.
pub async fn changes_after(etcd: &Etcd, after: u64, limit: i64) -> Result<(Vec<(u64, String)>, bool), String> {
    let options = GetOptions::new()
        .with_prefix()
        .with_min_create_revision(after as i64 + 1)
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(limit);
    let response = etcd
        .run("read the changes", |mut c| {
            let options = options.clone();
            async move { c.get("wdo/changes/", Some(options)).await }
        })
        .await?;
    let changes = response
        .kvs()
        .iter()
        .map(|kv| (kv.create_revision() as u64, String::from_utf8_lossy(kv.value()).into_owned()))
        .collect();
    Ok((changes, response.more()))
}

/// The revision of the journal's newest change (0: none).
pub async fn newest_change(etcd: &Etcd) -> Result<u64, String> {
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Descend)
        .with_limit(1)
        .with_keys_only();
    let response = etcd
        .run("read the newest change", |mut c| {
            let options = options.clone();
            async move { c.get("wdo/changes/", Some(options)).await }
        })
        .await?;
    Ok(response.kvs().first().map_or(0, |kv| kv.create_revision() as u64))
}

const CHANGE_LOCK: &str = "wdo/change-lock";

/// Takes the cluster's change lock for `host` under its lease, if nobody holds it; otherwise
/// names the host that does.
pub async fn try_change_lock(etcd: &Etcd, host: &str, lease: i64) -> Result<Result<(), String>, String> {
    let txn = Txn::new()
        .when([Compare::create_revision(CHANGE_LOCK, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(CHANGE_LOCK, host, Some(PutOptions::new().with_lease(lease)))])
        .or_else([TxnOp::get(CHANGE_LOCK, None)]);
    let response = etcd
        .run("take the change lock", |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    if response.succeeded() {
        return Ok(Ok(()));
    }
    let holder = response.op_responses().iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
        _ => None,
    });
    Ok(Err(holder.unwrap_or_default()))
}

/// Lets go of the change lock, if `host` holds it.
pub async fn release_change_lock(etcd: &Etcd, host: &str) -> Result<(), String> {
    let txn = Txn::new()
        .when([Compare::value(CHANGE_LOCK, CompareOp::Equal, host)])
        .and_then([TxnOp::delete(CHANGE_LOCK, None)]);
    etcd.run("release the change lock", |mut c| {
        let txn = txn.clone();
        async move { c.txn(txn).await }
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Anchor;

    #[test]
    fn an_anchor_reads_back_and_older_values_read_as_anchors_with_no_run() {
        let anchor = Anchor {
            host: "h1".into(),
            run: Some("0a1b2c3d".into()),
            token: 42,
            since_ms: 1_700_000_000_000,
            batch: 7,
            stored: Some("objects/counter/ab/42.db".into()),
        };
        assert_eq!(Anchor::decode(&anchor.encode()), Some(anchor.clone()));
        let bare = Anchor { run: None, stored: None, ..anchor };
        assert_eq!(Anchor::decode(&bare.encode()), Some(bare));
        let old = Anchor::decode("h2 objects/c/ff/7.db").unwrap();
        assert_eq!((old.host.as_str(), old.run, old.stored.as_deref()), ("h2", None, Some("objects/c/ff/7.db")));
        assert_eq!(Anchor::decode("h3").unwrap().stored, None);
        assert_eq!(Anchor::decode("v2 h 1 x 3 4 -"), None);
    }
}
