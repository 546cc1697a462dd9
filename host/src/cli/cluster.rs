//! `wdo cluster status`: the hosts of a cluster and the objects each holds, from any host.

use super::admin_client::{AdminClient, Connection, Failure};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// The live hosts, their addresses and how many objects each holds.
    Status(StatusArgs),
    /// Hand every object of one host over to the others, without failing a request; the host
    /// then holds nothing and can be stopped (it forwards what still reaches it meanwhile).
    Drain(DrainArgs),
}

#[derive(clap::Args)]
struct DrainArgs {
    /// The host to drain: its id, as `wdo cluster status` lists it.
    host: String,
    #[command(flatten)]
    server: StatusArgs,
}

#[derive(clap::Args, Clone)]
struct StatusArgs {
    /// Any host of the cluster.
    #[arg(long, env = "WDO_SERVER", default_value = "http://127.0.0.1:8787")]
    server: String,
    /// The host's admin token (default: WDO_ADMIN_TOKEN, or the admin-token file in --data).
    #[arg(long, env = "WDO_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The host's data folder, to read its admin token when none is given.
    #[arg(long, default_value = ".wdo")]
    data: PathBuf,
}

pub async fn cluster(args: ClusterArgs) -> Result<(), Failure> {
    match args.command {
        ClusterCommand::Status(args) => status(args).await,
        ClusterCommand::Drain(args) => drain(args).await,
    }
}

async fn drain(args: DrainArgs) -> Result<(), Failure> {
    let connection = Connection::new(&args.server.server, args.server.token, args.server.data);
    let client = AdminClient::connect(&connection)?;
    let path = format!("cluster/drain/{}", args.host);
    let answer: serde_json::Value = client.post_json(&path, &serde_json::json!({})).await?.json()?;
    println!(
        "host {} drained: {} objects handed over; it holds none now and can be stopped",
        args.host, answer["objects"]
    );
    Ok(())
}

async fn status(args: StatusArgs) -> Result<(), Failure> {
    let connection = Connection::new(&args.server, args.token, args.data);
    let client = AdminClient::connect(&connection)?;
    let status: serde_json::Value = client.get("cluster").await?.json()?;
    let empty = Vec::new();
    let hosts = status["hosts"].as_array().unwrap_or(&empty);
    println!(
        "{} hosts, {} objects held (asked {}, host {})",
        hosts.len(),
        status["objects"],
        args.server,
        status["host"]
    );
    for host in hosts {
        println!(
            "  {}  {}  {} objects{}",
            host["id"].as_str().unwrap_or("?"),
            host["advertise"].as_str().unwrap_or("?"),
            host["objects"],
            if host["draining"] == true { "  (drained: takes no new objects)" } else { "" }
        );
    }
    Ok(())
}
