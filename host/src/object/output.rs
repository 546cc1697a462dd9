//! What a guest writes to stdout and stderr: each line goes to the host's log, tagged with the
//! object, and the last few KiB are kept so a failed event can say what the guest printed
//! before it died (a Rust panic message, a Python traceback).

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes of recent output kept for error messages.
const TAIL: usize = 2048;

#[derive(Clone)]
pub struct GuestOutput(Arc<Mutex<Inner>>);

struct Inner {
    label: Arc<str>,
    line: Vec<u8>,
    tail: Vec<u8>,
}

impl GuestOutput {
    pub fn new(label: Arc<str>) -> Self {
        GuestOutput(Arc::new(Mutex::new(Inner { label, line: Vec::new(), tail: Vec::new() })))
    }

    /// Names the object the output comes from (a spare instance gets its object late).
    pub fn set_label(&self, label: Arc<str>) {
        self.0.lock().unwrap().label = label;
    }

    fn write(&self, bytes: &[u8]) {
        let mut inner = self.0.lock().unwrap();
        inner.tail.extend_from_slice(bytes);
        if inner.tail.len() > 2 * TAIL {
            let cut = inner.tail.len() - TAIL;
            inner.tail.drain(..cut);
        }
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut inner.line);
                let line = String::from_utf8_lossy(&line);
                tracing::info!(target: "wdo::guest", object = %inner.label, "{line}");
                if crate::observe::tail::anyone_watching() {
                    crate::observe::Context::with(|context| context.lines.as_ref().map(|lines| lines.push(&line)));
                }
            } else if inner.line.len() < 16 * 1024 {
                inner.line.push(b);
            }
        }
    }

    /// Returns and forgets what was written since the last call (at most the last 2 KiB).
    pub fn take_recent(&self) -> String {
        let mut inner = self.0.lock().unwrap();
        let tail = std::mem::take(&mut inner.tail);
        let start = tail.len().saturating_sub(TAIL);
        String::from_utf8_lossy(&tail[start..]).trim_end().to_string()
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        GuestOutput::write(self, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The guest's own account of a failure, found in what it printed last: a Rust panic's
/// message, the last line of a Python traceback, or the exception the JavaScript SDK reports
/// (`Uncaught ...`). Clients get this, never the output around it (see `describe_failure`).
pub fn own_message(recent: &str) -> Option<String> {
    const LONGEST: usize = 1024;
    let lines: Vec<&str> = recent.lines().collect();
    // A Python traceback comes first: componentize-py's runtime then panics with a message of its
    // own ("Python function threw an unexpected exception"), which says less.
    let message = if let Some(at) = lines.iter().rposition(|l| l.starts_with("Traceback (most recent call last):")) {
        // Python: the traceback ends with `Type: message`.
        lines[at + 1..].iter().find(|l| !l.is_empty() && !l.starts_with(' ')).map_or("", |l| l).to_string()
    } else if let Some(at) = lines.iter().rposition(|l| l.contains(" panicked at ")) {
        // `thread '<unnamed>' panicked at src/lib.rs:10:5:`, the message, then `note: ...`.
        let message: Vec<&str> = lines[at + 1..].iter().take_while(|l| !l.starts_with("note: ")).copied().collect();
        message.join("\n")
    } else if let Some(line) = lines.iter().rev().find(|l| l.starts_with("Uncaught ")) {
        line["Uncaught ".len()..].to_string()
    } else {
        return None;
    };
    let message = message.trim();
    if message.is_empty() {
        return None;
    }
    let mut end = message.len().min(LONGEST);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Some(message[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guests_own_message_is_found_in_each_language_and_nothing_else_is() {
        let rust = "log line\nthread '<unnamed>' panicked at src/lib.rs:281:17:\ndeliberate panic after writing `k`\n\
                    note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace";
        assert_eq!(own_message(rust).as_deref(), Some("deliberate panic after writing `k`"));
        let python = "secret=abc\nTraceback (most recent call last):\n  File \"app.py\", line 3, in f\n    \
                      raise ValueError('thrown on purpose')\nValueError: thrown on purpose\n\n\
                      thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:\n\
                      Python function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1`";
        assert_eq!(own_message(python).as_deref(), Some("ValueError: thrown on purpose"));
        let js = "token=xyz\nUncaught Error: thrown on purpose\nfetch@app.js:12:11\n";
        assert_eq!(own_message(js).as_deref(), Some("Error: thrown on purpose"));
        assert_eq!(own_message("just some log output\nuser token=xyz"), None);
        assert_eq!(own_message(""), None);
    }

    #[test]
    fn keeps_only_the_recent_tail_and_forgets_it_when_taken() {
        let out = GuestOutput::new("t/x".into());
        out.write(&vec![b'a'; 5000]);
        out.write(b"panicked at boom\n");
        let recent = out.take_recent();
        assert!(recent.ends_with("panicked at boom"));
        assert!(recent.len() <= TAIL);
        assert_eq!(out.take_recent(), "");
    }
}
