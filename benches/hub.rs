//! The guide's commands against the local Hub test server at 0 and 50 ms per request, with the
//! default connection pool and with one connection. Two Markdown tables for the README: the
//! Hub's part alone (open the model and stream its selection in process, median of 3: nearly all
//! waiting, so it holds on a busy machine), then the wall time of the whole `weightreel` process
//! (median of 3), which adds FFmpeg's start-up and the encode and so depends on the CPU.
//!
//! `cargo bench --bench hub` (the release binary is built first).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::collect::stream_values;
use support::fixtures::{guide_selection, serve_guide_repos, GUIDE_COMMANDS};
use support::hub_server::HubServer;
use weightreel::source::{HubSettings, Model, OpenOptions};

/// Seconds to open every model of `args` and stream its selection, and the requests made.
fn stream_in_process(server: &HubServer, args: &str, connections: usize) -> (f64, u64) {
    let (models, selection) = guide_selection(args);
    let options = OpenOptions {
        endpoint: Some(server.url().to_string()),
        cache_dir: None,
        hub: HubSettings {
            connections,
            ..HubSettings::default()
        },
        ..OpenOptions::default()
    };
    let mut times: Vec<(f64, u64)> = (0..3)
        .map(|_| {
            server.reset_counts();
            let started = Instant::now();
            for name in &models {
                let model = Model::open(name, &options).unwrap();
                stream_values(&model, &selection);
            }
            (started.elapsed().as_secs_f64(), server.counts().requests)
        })
        .collect();
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    times[1]
}

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
    println!("| guide command: open + stream in process | requests | 50 ms, 16 connections | 50 ms, 1 connection |");
    println!("|---|---|---|---|");
    server.set_delay(Duration::from_millis(50));
    for args in GUIDE_COMMANDS {
        let (pooled, requests) = stream_in_process(&server, args, 16);
        let (single, _) = stream_in_process(&server, args, 1);
        println!("| `{args}` | {requests} | {pooled:.2} s | {single:.2} s |");
    }
    // A real model's shapes: MiniLM (104 tensors, 22.7 M values) at --max-params 50000.
    let minilm = support::minilm::dir();
    server.add_repo(
        "sentence-transformers/all-MiniLM-L6-v2",
        support::hub_server::Repo::new("minilm")
            .small(
                "config.json",
                std::fs::read(minilm.join("config.json")).unwrap(),
            )
            .disk("model.safetensors", support::minilm::safetensors(), true),
    );
    let args = "--model sentence-transformers/all-MiniLM-L6-v2 --max-params 50000";
    let (pooled, requests) = stream_in_process(&server, args, 16);
    let (single, _) = stream_in_process(&server, args, 1);
    println!("| `{args}` | {requests} | {pooled:.2} s | {single:.2} s |");
    if std::env::args().any(|a| a == "--stream-only") {
        return;
    }
    println!();
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
