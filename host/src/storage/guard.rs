//! The SQL guard: SQLite's authorizer, active while a guest's SQL is prepared and run.
//!
//! It refuses what would escape the object's database or break the event's transaction, and
//! remembers why, so the guest's error names what was refused. Host statements (key-value,
//! savepoints) run with the guard off. Statements are authorized when SQLite prepares them
//! (and again if SQLite re-prepares them after a schema change, with the guard still on,
//! because a guest statement only ever runs inside `Guard::enter`); guest statements are cached
//! under their own keys, so a guest can never reuse a statement the host prepared.

use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization, TransactionOperation};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Tables whose names start with this belong to the host.
pub const INTERNAL_PREFIX: &str = "_wdo_";

/// PRAGMAs a guest may use: `(name, may be written)`.
const PRAGMAS: &[(&str, bool)] = &[
    ("user_version", true),
    ("foreign_keys", true),
    ("defer_foreign_keys", true),
    ("recursive_triggers", true),
    ("table_info", false),
    ("table_xinfo", false),
    ("table_list", false),
    ("index_list", false),
    ("index_info", false),
    ("index_xinfo", false),
    ("foreign_key_list", false),
    ("foreign_key_check", false),
    ("integrity_check", false),
    ("quick_check", false),
    ("page_count", false),
    ("page_size", false),
    ("freelist_count", false),
    ("data_version", false),
    ("schema_version", false),
    ("collation_list", false),
    ("function_list", false),
    ("pragma_list", false),
    ("compile_options", false),
];

/// SQL functions that hand out or take pointers into the host process: `fts3_tokenizer(name)`
/// returns a tokenizer's address (which defeats address-space randomisation), and its
/// two-argument form installs a tokenizer from an address.
const HOST_POINTER_FUNCTIONS: &[&str] = &["fts3_tokenizer"];

#[derive(Clone, Default)]
pub struct Guard {
    active: Arc<AtomicBool>,
    /// Set with `refused`, so that a statement nothing refused takes no lock.
    any_refused: Arc<AtomicBool>,
    refused: Arc<Mutex<Option<String>>>,
}

impl Guard {
    /// Installs the authorizer on `conn`; it refuses nothing until `enter`.
    pub fn install(conn: &mut Connection) -> rusqlite::Result<Guard> {
        let guard = Guard::default();
        let hook = guard.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            if !hook.active.load(Ordering::Relaxed) {
                return Authorization::Allow;
            }
            match refusal(&ctx) {
                None => Authorization::Allow,
                Some(reason) => {
                    hook.refused.lock().unwrap().get_or_insert(reason);
                    hook.any_refused.store(true, Ordering::Relaxed);
                    Authorization::Deny
                }
            }
        }))?;
        Ok(guard)
    }

    /// Runs `f` with the guard on; returns its result and, if it was refused, why.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> (T, Option<String>) {
        self.active.store(true, Ordering::Relaxed);
        let result = f();
        self.active.store(false, Ordering::Relaxed);
        let refused =
            if self.any_refused.swap(false, Ordering::Relaxed) { self.refused.lock().unwrap().take() } else { None };
        (result, refused)
    }
}

fn internal(name: &str) -> bool {
    name.len() >= INTERNAL_PREFIX.len() && name[..INTERNAL_PREFIX.len()].eq_ignore_ascii_case(INTERNAL_PREFIX)
}

/// Why an action is refused, or `None` to allow it.
fn refusal(ctx: &AuthContext<'_>) -> Option<String> {
    use AuthAction::*;
    let table = match ctx.action {
        Transaction { operation } => {
            let op = match operation {
                TransactionOperation::Begin => "BEGIN",
                TransactionOperation::Rollback => "ROLLBACK",
                // rusqlite reports COMMIT/END as an unknown operation.
                _ => "COMMIT",
            };
            return Some(format!(
                "{op}: each event is already one transaction; use the transaction interface \
                 (savepoint/release/rollback) for nested ones"
            ));
        }
        Savepoint { .. } => {
            return Some("SAVEPOINT in SQL: use the transaction interface (savepoint/release/rollback)".into());
        }
        Attach { .. } => return Some("ATTACH: an object can only use its own database".into()),
        Detach { .. } => return Some("DETACH: an object can only use its own database".into()),
        Function { function_name } if function_name.eq_ignore_ascii_case("load_extension") => {
            return Some("load_extension: extensions cannot be loaded".into());
        }
        Function { function_name } if HOST_POINTER_FUNCTIONS.iter().any(|f| function_name.eq_ignore_ascii_case(f)) => {
            return Some(format!("{function_name}(): it exposes or takes the host's memory addresses"));
        }
        Pragma { pragma_name, pragma_value } => return pragma_refusal(pragma_name, pragma_value),
        CreateTempTable { .. } | CreateTempIndex { .. } | CreateTempTrigger { .. } | CreateTempView { .. } => {
            return Some("TEMP schema objects: the connection outlives the event; use regular tables".into());
        }
        CreateVtable { module_name, .. } => return Some(format!("virtual table module `{module_name}`")),
        Read { table_name, .. }
        | Insert { table_name }
        | Update { table_name, .. }
        | Delete { table_name }
        | CreateTable { table_name }
        | DropTable { table_name }
        | CreateIndex { table_name, .. }
        | DropIndex { table_name, .. }
        | CreateTrigger { table_name, .. }
        | DropTrigger { table_name, .. }
        | AlterTable { table_name, .. }
        | Analyze { table_name } => table_name,
        CreateView { view_name } | DropView { view_name } => view_name,
        _ => return None,
    };
    internal(table).then(|| format!("table `{table}`: tables named {INTERNAL_PREFIX}* belong to the host"))
}

fn pragma_refusal(name: &str, value: Option<&str>) -> Option<String> {
    let name = name.to_ascii_lowercase();
    match PRAGMAS.iter().find(|(allowed, _)| *allowed == name) {
        None => Some(format!("PRAGMA {name}: only harmless PRAGMAs are available inside an object")),
        Some((_, false)) if value.is_some_and(|v| !is_table_argument(&name, v)) => {
            Some(format!("PRAGMA {name} = {}: it can only be read", value.unwrap_or_default()))
        }
        Some(_) if value.is_some_and(internal) => {
            Some(format!("PRAGMA {name}({}): tables named {INTERNAL_PREFIX}* belong to the host", value.unwrap()))
        }
        Some(_) => None,
    }
}

/// `PRAGMA table_info(t)` passes `t` as the value: that is an argument, not a write.
fn is_table_argument(name: &str, _value: &str) -> bool {
    matches!(
        name,
        "table_info"
            | "table_xinfo"
            | "table_list"
            | "index_list"
            | "index_info"
            | "index_xinfo"
            | "foreign_key_list"
            | "foreign_key_check"
            | "integrity_check"
            | "quick_check"
    )
}
