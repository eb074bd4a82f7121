//! The guide's commands against the local Hub test server at 0 and 50 ms per request: wall time
//! of the whole `weightreel` process (median of 3) and the requests the server answered, with
//! the default connection pool and with one connection. Prints a Markdown table for the README.
//!
//! `cargo bench --bench hub` (the release binary is built first).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::fixtures::{serve_guide_repos, GUIDE_COMMANDS};
use support::hub_server::HubServer;

/// Runs `args` in a fresh directory; returns the wall time and the server's request count.
fn run(server: &HubServer, args: &str, connections: usize) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    server.reset_counts();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_weightreel"))
        .args(args.split_whitespace())
        .current_dir(dir.path())
        .env("HF_ENDPOINT", server.url())
        .env("HF_HUB_CACHE", dir.path().join("empty-cache"))
        .env("WEIGHTREEL_HUB_CONNECTIONS", connections.to_string())
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("WEIGHTREEL_STORE")
        .output()
        .expect("run weightreel");
    let wall = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (wall, server.counts().requests)
}

fn median(server: &HubServer, args: &str, connections: usize) -> (f64, u64) {
    let mut runs: Vec<(f64, u64)> = (0..3).map(|_| run(server, args, connections)).collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    runs[1]
}

fn main() {
    let server = HubServer::start();
    let repos = tempfile::tempdir().unwrap();
    serve_guide_repos(&server, repos.path());
    println!("| guide command | requests | 0 ms | 50 ms | 50 ms, 1 connection |");
    println!("|---|---|---|---|---|");
    for args in GUIDE_COMMANDS {
        server.set_delay(Duration::ZERO);
        let (fast, requests) = median(&server, args, 16);
        server.set_delay(Duration::from_millis(50));
        let (slow, _) = median(&server, args, 16);
        let (single, _) = run(&server, args, 1);
        println!("| `{args}` | {requests} | {fast:.2} s | {slow:.2} s | {single:.2} s |");
    }
}
