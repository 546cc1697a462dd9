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
//! - `last/<class>/<id>`: the host that claimed the object last (kept after it lets go), and
//!   after a release where its whole database is in the backup store: a host that claims an
//!   object someone else held since it last did restores it from there (or from the log).

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
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

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// This host holds the object now, under `token`; `previous` claimed it last before, and
    /// `stored` says where its database is if it released it (`etcd::release`).
    Claimed { token: u64, previous: Option<String>, stored: Option<String> },
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

/// Claims an object for `host` under `lease`, if nobody holds it.
pub async fn claim(etcd: &Etcd, class: &str, id_hex: &str, host: &str, lease: i64) -> Result<Claim, String> {
    let owner = owner_key(class, id_hex);
    let txn = Txn::new()
        .when([Compare::create_revision(owner.as_str(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(owner.as_str(), host, Some(PutOptions::new().with_lease(lease))),
            TxnOp::put(last_key(class, id_hex), host, Some(PutOptions::new().with_prev_key())),
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
        let last = ops.iter().find_map(|op| match op {
            TxnOpResponse::Put(put) => put.prev_key().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
            _ => None,
        });
        if token <= 0 {
            return Err("etcd answered a claim without a revision".into());
        }
        let (previous, stored) = match last {
            Some(last) => match last.split_once(' ') {
                Some((host, stored)) => (Some(host.to_string()), Some(stored.to_string())),
                None => (Some(last), None),
            },
            None => (None, None),
        };
        return Ok(Claim::Claimed { token: token as u64, previous, stored });
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

/// Lets go of an object this host (`host`) holds under `token`; false if the claim was gone
/// already. `stored`: where its whole database is in the backup store (`-`: it has none), so
/// the next host to claim it reads that instead of walking the log.
pub async fn release(
    etcd: &Etcd,
    class: &str,
    id_hex: &str,
    token: u64,
    released: Option<(&str, &str)>,
) -> Result<bool, String> {
    let owner = owner_key(class, id_hex);
    let mut ops = vec![TxnOp::delete(owner.as_str(), None)];
    if let Some((host, stored)) = released {
        ops.push(TxnOp::put(last_key(class, id_hex), format!("{host} {stored}"), None));
    }
    let txn = Txn::new().when([Compare::create_revision(owner.as_str(), CompareOp::Equal, token as i64)]).and_then(ops);
    Ok(etcd
        .run("release an object", |mut c| {
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
