//! Deploys, rollbacks and secrets reach every host of a cluster.
//!
//! The host an admin request reaches applies the change, ships it to the backup store (sync
//! mode: components included, under `components/<sha256>.wasm`), then sends it to every other
//! live host (`POST /_wdo/cluster/change`, authenticated like forwarded events), which takes
//! missing components from the store and applies it too. The admin request answers once every
//! host switched, or with an error naming each host that did not.

use super::Cluster;
use crate::Host;
use crate::deploy::{Plan, Target};
use crate::error::Error;
use serde::{Deserialize, Serialize};

/// A change every host of the cluster makes.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Deploy { plan: Plan },
    Rollback { target: String, version: Option<u32> },
    Secret { owner: String, name: String, value: Option<String> },
}

impl Change {
    fn describe(&self) -> &'static str {
        match self {
            Change::Deploy { .. } => "the deploy",
            Change::Rollback { .. } => "the rollback",
            Change::Secret { .. } => "the secret's change",
        }
    }
}

impl Cluster {
    /// Sends `change` (made on this host already) to every other live host; an error names
    /// each host that did not make it.
    pub(crate) async fn broadcast(&self, change: &Change) -> Result<(), Error> {
        let body = serde_json::to_vec(change).expect("serializable");
        let others: Vec<_> = self.members().into_iter().filter(|m| m.id != self.me.id).collect();
        let sends = others.iter().map(|member| self.forwarder.post(member, "/_wdo/cluster/change", body.clone()));
        let answers = futures_util::future::join_all(sends).await;
        let failed: Vec<String> = others
            .iter()
            .zip(answers)
            .filter_map(|(member, answer)| match answer {
                Ok((200, _)) => None,
                Ok((status, body)) => Some(format!(
                    "host {} ({}) answered {status}: {}",
                    member.id,
                    member.advertise,
                    String::from_utf8_lossy(&body).trim()
                )),
                Err(e) => Some(format!("host {} ({}) did not answer: {e}", member.id, member.advertise)),
            })
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        Err(Error::Busy(format!(
            "{} is done on this host ({}){}, but not everywhere: {}; the hosts that did not switch keep serving \
             what they had: run it again once they answer",
            change.describe(),
            self.me.id,
            match others.len() - failed.len() {
                0 => String::new(),
                n => format!(" and on {n} other host(s)"),
            },
            failed.join("; ")
        )))
    }
}

/// Makes a change another host of the cluster sent (`POST /_wdo/cluster/change`).
pub(crate) async fn apply(host: &Host, change: Change) -> Result<serde_json::Value, Error> {
    let what = change.describe();
    let changes = match change {
        Change::Deploy { plan } => {
            let hashes = plan.classes.iter().map(|c| c.hash.clone()).chain(plan.worker.clone());
            for hash in hashes {
                if host.component_size(&hash).is_some() {
                    continue;
                }
                let bytes = host.component_from_backup(&hash).await?;
                let kept = host.clone();
                blocking(move || kept.upload_component(&bytes)).await?;
            }
            let deploying = host.clone();
            serde_json::to_value(blocking(move || deploying.deploy(&plan)).await?).expect("serializable")
        }
        Change::Rollback { target, version } => {
            let rolling_back = host.clone();
            let target = Target::parse(&target);
            serde_json::to_value([blocking(move || rolling_back.rollback(&target, version)).await?])
                .expect("serializable")
        }
        Change::Secret { owner, name, value } => {
            let changed = host.set_secret(&Target::parse(&owner), &name, value.as_deref())?;
            serde_json::json!({ "changed": changed })
        }
    };
    host.replicate_change(what).await?;
    Ok(serde_json::json!({ "changes": changes }))
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Error::Internal(format!("a deploy task failed: {e}"))))
}
