//! `wdo tail`, `wdo inspect`, `wdo kv` and `wdo sql`: watching a running host's events and
//! reading an object's data through the admin API (`gateway/observe.rs`).

use super::admin_client::{AdminClient, Connection, Failure};
use http_body_util::BodyExt;
use serde_json::Value;

#[derive(clap::Args)]
pub struct TailArgs {
    /// Only events of this class (`_worker` for the worker's requests).
    class: Option<String>,
    /// Only events of this object (its name, or its id).
    name: Option<String>,
    /// Only failures (`error`: anything but ok) or only successes (`ok`).
    #[arg(long, value_parser = ["error", "ok"])]
    status: Option<String>,
    /// Print each event as the JSON line the host sends.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    class: String,
    name: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(clap::Args)]
pub struct KvArgs {
    class: String,
    name: String,
    /// Only keys that start with this.
    #[arg(long)]
    prefix: Option<String>,
    /// At most this many keys (the host answers 1,000 at most).
    #[arg(long, default_value_t = 1000)]
    limit: u32,
    #[command(flatten)]
    connection: Connection,
}

#[derive(clap::Args)]
pub struct SqlArgs {
    class: String,
    name: String,
    /// One read-only statement (SELECT, WITH, VALUES, EXPLAIN); anything that writes is refused.
    query: String,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

fn encoded(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Streams the host's finished events until interrupted.
pub async fn tail(args: TailArgs) -> Result<(), Failure> {
    let client = AdminClient::connect(&args.connection)?;
    let mut query = Vec::new();
    if let Some(class) = &args.class {
        query.push(format!("class={}", encoded(class)));
    }
    if let Some(name) = &args.name {
        query.push(format!("object={}", encoded(name)));
    }
    if let Some(status) = &args.status {
        query.push(format!("status={status}"));
    }
    let mut body = client.stream(&format!("tail?{}", query.join("&"))).await?;
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the host closed the tail: {e}"))?;
        let Ok(data) = frame.into_data() else { continue };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            print_record(&line, args.json);
        }
    }
    Err(format!("the host at {} ended the tail (it stopped?)", args.connection.server()).into())
}

fn print_record(line: &str, json: bool) {
    use std::io::Write;
    let Ok(record) = serde_json::from_str::<Value>(line) else { return };
    let mut out = std::io::stdout().lock();
    if let Some(missed) = record["dropped"].as_u64() {
        let _ = writeln!(out, "({missed} events not shown: this tail read more slowly than they came)");
    } else if record["tail"] == "started" {
        if !json {
            let _ = writeln!(out, "watching events as they finish (Ctrl-C to stop)");
        }
    } else if json {
        let _ = writeln!(out, "{line}");
    } else {
        let object = match record["name"].as_str() {
            Some(name) => format!("{}/{name}", record["class"].as_str().unwrap_or("?")),
            None => record["class"].as_str().unwrap_or("?").to_string(),
        };
        let status = record["status"].as_u64().map(|s| format!(" {s}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{} {:<14} {} {}{} {:.2}ms req={}",
            record["time"].as_str().unwrap_or(""),
            record["outcome"].as_str().unwrap_or("?"),
            object,
            record["kind"].as_str().unwrap_or("?"),
            status,
            record["duration_ms"].as_f64().unwrap_or(0.0),
            record["request_id"].as_str().unwrap_or("-"),
        );
        for log in record["logs"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "    | {}", log.as_str().unwrap_or(""));
        }
        if let Some(error) = record["error"].as_str() {
            let _ = writeln!(out, "    ! {error}");
        }
    }
    let _ = out.flush();
}

pub async fn inspect(args: InspectArgs) -> Result<(), Failure> {
    let client = AdminClient::connect(&args.connection)?;
    let path = format!("objects/{}/{}", encoded(&args.class), encoded(&args.name));
    let object: Value = client.get(&path).await?.json()?;
    println!("{}/{}", args.class, args.name);
    println!("  id           {}", object["id"].as_str().unwrap_or("?"));
    let live = match (object["was_open"].as_bool(), object["instance_live"].as_bool()) {
        (Some(true), Some(true)) => "yes (database open, instance in memory)",
        (Some(true), _) => "database open, no instance in memory",
        _ => "no (opened to answer this)",
    };
    println!("  live         {live}");
    println!("  database     {} bytes ({} on disk)", object["database_bytes"], object["file_bytes"]);
    println!("  keys         {}", object["keys"]);
    let alarm = match object["alarm_ms"].as_u64() {
        Some(ms) => {
            humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
        }
        None => "none".into(),
    };
    println!("  alarm        {alarm}");
    for table in object["tables"].as_array().into_iter().flatten() {
        println!("  table        {} ({} rows)", table["name"].as_str().unwrap_or("?"), table["rows"]);
    }
    let sockets = object["sockets"].as_array().map_or(&[][..], Vec::as_slice);
    println!("  sockets      {}", sockets.len());
    for socket in sockets {
        let tags: Vec<&str> = socket["tags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        println!(
            "    #{} tags [{}]{}",
            socket["id"],
            tags.join(", "),
            if socket["closing"] == true { " (closing)" } else { "" }
        );
    }
    Ok(())
}

pub async fn kv(args: KvArgs) -> Result<(), Failure> {
    let client = AdminClient::connect(&args.connection)?;
    let mut left = args.limit;
    let mut after: Option<String> = None;
    while left > 0 {
        let mut query = format!("limit={}", left.min(1000));
        if let Some(prefix) = &args.prefix {
            query.push_str(&format!("&prefix={}", encoded(prefix)));
        }
        if let Some(after) = &after {
            query.push_str(&format!("&start_after={}", encoded(after)));
        }
        let path = format!("objects/{}/{}/kv?{query}", encoded(&args.class), encoded(&args.name));
        let page: Value = client.get(&path).await?.json()?;
        let keys = page["keys"].as_array().cloned().unwrap_or_default();
        for entry in &keys {
            println!("{}\t{}", entry["key"].as_str().unwrap_or("?"), entry["value"]);
        }
        left = left.saturating_sub(keys.len() as u32);
        after = keys.last().and_then(|e| e["key"].as_str()).map(str::to_string);
        if page["more"] != true || after.is_none() {
            break;
        }
    }
    Ok(())
}

pub async fn sql(args: SqlArgs) -> Result<(), Failure> {
    let client = AdminClient::connect(&args.connection)?;
    let path = format!("objects/{}/{}/sql", encoded(&args.class), encoded(&args.name));
    let answer: Value = client.post_text(&path, &args.query).await?.json()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let columns: Vec<&str> = answer["columns"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    println!("{}", columns.join("\t"));
    let rows = answer["rows"].as_array().map_or(&[][..], Vec::as_slice);
    for row in rows {
        let cells: Vec<String> = row
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| match v {
                Value::String(text) => text.clone(),
                Value::Null => "NULL".into(),
                other => other.to_string(),
            })
            .collect();
        println!("{}", cells.join("\t"));
    }
    if answer["more_rows"] == true {
        eprintln!("(only the first {} rows: add a LIMIT, or narrow the query)", rows.len());
    }
    Ok(())
}
