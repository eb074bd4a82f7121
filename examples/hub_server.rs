//! The test suite's Hub server as a program, for the Python package's tests and for trying the
//! guide's commands by hand: serves the guide's repos (synthetic weights with the real names,
//! shapes and configs: distilbert-base-uncased, bert-base-uncased, gpt2, …) and
//! `sentence-transformers/all-MiniLM-L6-v2` (the real model) over HTTP with Range support.
//!
//! ```text
//! cargo run --release --example hub_server -- WORK_DIR [DELAY_MS]
//! ```
//!
//! Prints the endpoint URL (for `HF_ENDPOINT`) on the first line of stdout, then serves until
//! its standard input closes.

/// The parts of the test support this program needs (not `cli.rs`, which needs a test
/// build's binary path).
#[allow(dead_code)]
#[path = "../tests/support"]
mod support {
    pub mod fixtures;
    pub mod hub_server;
    pub mod minilm;
}

use std::io::{Read, Write};
use std::time::Duration;

use support::fixtures::serve_guide_repos;
use support::hub_server::{HubServer, Repo};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(work) = args.first() else {
        eprintln!("usage: hub_server WORK_DIR [DELAY_MS]");
        std::process::exit(2)
    };
    let work = std::path::PathBuf::from(work);
    std::fs::create_dir_all(&work).expect("work directory");
    let server = HubServer::start();
    serve_guide_repos(&server, &work);
    let minilm = support::minilm::dir();
    server.add_repo(support::minilm::REPO, support::minilm::repo(true));
    // A private repo (token `hf_test_private_token`) for the 401/403 paths.
    let private = "weightreel-test/private-model";
    server.add_repo(
        private,
        Repo::new(private)
            .small(
                "config.json",
                std::fs::read(minilm.join("config.json")).expect("config.json"),
            )
            .disk("model.safetensors", minilm.join("model.safetensors"), false)
            .private("hf_test_private_token"),
    );
    if let Some(ms) = args.get(1).and_then(|a| a.parse().ok()) {
        server.set_delay(Duration::from_millis(ms));
    }
    println!("{}", server.url());
    std::io::stdout().flush().expect("stdout");
    // Serve until the parent closes our stdin (or exits).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}
