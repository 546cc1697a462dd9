//! `wdo secret put | list | delete`: a class's (or the worker's) secrets, through the admin API.
//! A value is read from standard input, so it never shows up in `ps` or in the shell history,
//! and no command ever prints one.

use super::admin_client::{AdminClient, Connection, Failure};
use std::io::{IsTerminal, Read};

#[derive(clap::Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Set a secret: its value is read from standard input (one trailing newline is dropped).
    Put {
        /// The class (`[worker]` for the worker).
        class: String,
        /// The secret's name, as the code asks for it (e.g. API_KEY).
        key: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the names of a class's secrets (never their values).
    List {
        class: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a secret.
    Delete {
        class: String,
        key: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// A class name or `[worker]`, as one path segment.
fn owner(class: &str) -> String {
    percent_encoding::utf8_percent_encode(class, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub async fn secret(args: SecretArgs) -> Result<(), Failure> {
    match args.action {
        Action::Put { class, key, connection } => {
            let client = AdminClient::connect(&connection)?;
            if std::io::stdin().is_terminal() {
                eprintln!("value of {key} for {class} (end with Ctrl-D):");
            }
            let mut value = String::new();
            std::io::stdin().read_to_string(&mut value).map_err(|e| format!("cannot read the value: {e}"))?;
            let value = value.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&value);
            let path = format!("secrets/{}/{}", owner(&class), owner(&key));
            let reply: serde_json::Value = client.put(&path, value.as_bytes().to_vec()).await?.json()?;
            let verb = if reply["replaced"].as_bool() == Some(true) { "replaced" } else { "set" };
            println!("{class}: secret {key} {verb} (the next event reads it)");
        }
        Action::List { class, connection } => {
            let client = AdminClient::connect(&connection)?;
            let reply: serde_json::Value = client.get(&format!("secrets/{}", owner(&class))).await?.json()?;
            for name in reply["names"].as_array().into_iter().flatten() {
                println!("{}", name.as_str().unwrap_or_default());
            }
        }
        Action::Delete { class, key, connection } => {
            let client = AdminClient::connect(&connection)?;
            let path = format!("secrets/{}/{}", owner(&class), owner(&key));
            let _: serde_json::Value = client.delete(&path).await?.json()?;
            println!("{class}: secret {key} deleted");
        }
    }
    Ok(())
}
