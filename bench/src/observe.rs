//! What seeing the host costs: the same wrk runs with `--metrics on` and `--metrics off`, taken
//! in turn (on, off, on, off) so the machine's drift shows as spread rather than as a difference;
//! and the hot object with a tail open and reading.

use crate::scale::{WrkRun, script, wrk};
use crate::server::Server;

pub async fn measure(duration: std::time::Duration) -> Vec<WrkRun> {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for round in 0..2 {
        for metrics in ["on", "off"] {
            let data = dir.path().join(format!("data-{metrics}-{round}"));
            let server =
                Server::start(&data, &[("counter", crate::counter_component())], &["--metrics", metrics]).await;
            let hot = script(dir.path(), "hot", 0, "hot");
            rows.push(wrk(&server, &format!("one hot object, metrics {metrics}"), 64, duration, &hot));
            let random = script(dir.path(), "cycle", 1000, &format!("m{round}{metrics}"));
            rows.push(wrk(&server, &format!("1,000 objects in turn, metrics {metrics}"), 64, duration, &random));
            server.kill().await;
        }
    }
    // A tail that reads every event (curl, writing to /dev/null): the broadcast and the records.
    let data = dir.path().join("data-tail");
    let flags = ["--admin-token", "bench-token-0123456789"];
    let server = Server::start(&data, &[("counter", crate::counter_component())], &flags).await;
    let mut tail = std::process::Command::new("curl")
        .args(["-s", "-N", "-o", "/dev/null", "-H", "authorization: Bearer bench-token-0123456789"])
        .arg(format!("http://{}/_wdo/admin/tail", server.addr))
        .spawn()
        .expect("curl");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let hot = script(dir.path(), "hot", 0, "hot");
    rows.push(wrk(&server, "one hot object, metrics on, a tail reading every event", 64, duration, &hot));
    let _ = tail.kill();
    let _ = tail.wait();
    server.kill().await;
    rows
}
