//! The job queue and its workers against a real PostgreSQL (a private cluster started for each
//! test, see `support/postgres.rs`) and the Hub test server: adding jobs, four workers draining
//! forty models while one is killed with SIGKILL, and a job that keeps failing.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::path;
use support::fixtures::{write_arch, GUIDE_DIMS};
use support::hub_server::{HubServer, Repo};
use support::postgres::{services_disabled, Postgres};

fn weightreel(args: &[&str], endpoint: &str, home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weightreel"));
    cmd.args(args)
        .env_remove("WEIGHTREEL_STORE")
        .env_remove("WEIGHTREEL_QUEUE")
        .env_remove("HF_TOKEN")
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", home)
        .env("HF_HUB_CACHE", home.join("hub"));
    cmd
}

fn ok(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn status(pg: &Postgres, endpoint: &str, home: &Path) -> Value {
    serde_json::from_str(&ok(weightreel(
        &["queue", "status", "--queue", &pg.url(), "--json"],
        endpoint,
        home,
    )))
    .unwrap()
}

/// `count` small BERT-shaped repos `org/model-NN` with distinct weights on `server`.
fn serve_models(server: &HubServer, dir: &Path, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let id = format!("org/model-{i:02}");
            let local = dir.join(format!("model-{i:02}"));
            write_arch(&local, "bert-base-uncased", GUIDE_DIMS, 1000 + i as u64);
            server.add_repo(
                &id,
                Repo::new(&id)
                    .small(
                        "config.json",
                        std::fs::read(local.join("config.json")).unwrap(),
                    )
                    .disk("model.safetensors", local.join("model.safetensors"), true),
            );
            id
        })
        .collect()
}

#[test]
fn queue_add_checks_settings_and_adds_each_job_once() {
    if services_disabled("queue_add_checks_settings_and_adds_each_job_once") {
        return;
    }
    let pg = Postgres::start();
    let tmp = tempfile::tempdir().unwrap();
    let (endpoint, home, url) = ("http://127.0.0.1:9", tmp.path(), pg.url());
    // Bad settings are refused with the encode command's own message; nothing is queued.
    let cases: &[(&str, &[&str], &str)] = &[
        ("misspelt mode", &["a/b", "--mode", "lossles"], "lossles"),
        ("unknown flag", &["a/b", "--colour"], "--colour"),
        ("worker's flag", &["a/b", "--store", "x"], "--store"),
        ("no model", &["--mode", "lossless"], "one or more models"),
        (
            "settings with --fingerprint-only",
            &["a/b", "--fingerprint-only", "--mode", "u8"],
            "fingerprint",
        ),
    ];
    for (name, words, needle) in cases {
        let mut args = vec!["queue", "add", "--queue", &url];
        args.extend_from_slice(words);
        let out = weightreel(&args, endpoint, home).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(needle) && err.lines().count() == 1,
            "{name}: {err}"
        );
    }
    assert_eq!(status(&pg, endpoint, home)["queued"], 0);

    // The queue's flags may come after the models; the same job twice is one job.
    let add = [
        "queue", "add", "org/a", "org/b", "--mode", "lossless", "--queue", &url,
    ];
    let out = ok(weightreel(&add, endpoint, home));
    assert!(
        out.starts_with("Queued 2 jobs (0 already in the queue)"),
        "{out}"
    );
    let out = ok(weightreel(&add, endpoint, home));
    assert!(
        out.starts_with("Queued 0 jobs (2 already in the queue)"),
        "{out}"
    );
    // Other settings are another job; models can come from a file.
    let list = tmp.path().join("models.txt");
    std::fs::write(&list, "# a comment\norg/a\n\norg/c\n").unwrap();
    let out = ok(weightreel(
        &[
            "queue",
            "add",
            "--from-file",
            path(&list),
            "--chunk-encoding",
            "--queue",
            &url,
        ],
        endpoint,
        home,
    ));
    assert!(out.starts_with("Queued 2 jobs"), "{out}");
    let s = status(&pg, endpoint, home);
    assert_eq!(
        (s["queued"].as_i64(), s["done"].as_i64()),
        (Some(4), Some(0)),
        "{s}"
    );
    assert_eq!(
        pg.query("SELECT string_agg(model || ' ' || args::text, '; ' ORDER BY id) FROM wr_jobs"),
        r#"org/a ["--mode", "lossless"]; org/b ["--mode", "lossless"]; org/a ["--chunk-encoding"]; org/c ["--chunk-encoding"]"#
    );

    // A queue that cannot be reached is one line naming it, without its password.
    let out = weightreel(
        &[
            "queue",
            "status",
            "--queue",
            "postgres://weightreel:SECRET@127.0.0.1:1/weightreel",
        ],
        endpoint,
        home,
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(
            "error: queue postgres://weightreel@127.0.0.1:1/weightreel: cannot connect"
        ),
        "{err}"
    );
    assert!(!err.contains("SECRET") && err.lines().count() == 1, "{err}");
}

fn spawn_worker(store: &Path, url: &str, endpoint: &str, home: &Path, log: &Path) -> Child {
    worker_command(store, url, endpoint, home, log)
        .spawn()
        .unwrap()
}

/// The command of a worker draining the queue at `url` into `store`, logging to `log`.
fn worker_command(store: &Path, url: &str, endpoint: &str, home: &Path, log: &Path) -> Command {
    let mut cmd = weightreel(
        &[
            "worker",
            "--queue",
            url,
            "--store",
            path(store),
            "--exit-when-empty",
            "--lease",
            "2",
            "--poll",
            "0.2",
        ],
        endpoint,
        home,
    );
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    cmd
}

fn wait_all(children: &mut [Child], limit: Duration) {
    let end = Instant::now() + limit;
    for child in children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "a worker failed: {status}");
                break;
            }
            assert!(Instant::now() < end, "workers did not finish in {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The ranking `search` gives for `model`: names and scores.
fn ranking(store: &Path, model: &str, endpoint: &str, home: &Path) -> Vec<(String, String)> {
    let json: Value = serde_json::from_str(&ok(weightreel(
        &[
            "search",
            model,
            "--store",
            path(store),
            "--top",
            "50",
            "--json",
        ],
        endpoint,
        home,
    )))
    .unwrap();
    json["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                format!("{:.9}", h["score"].as_f64().unwrap()),
            )
        })
        .collect()
}

/// A queue test's world: PostgreSQL, the Hub test server at a real link's latency serving
/// `count` models, and every model queued with `settings`.
struct World {
    pg: Postgres,
    server: HubServer,
    tmp: tempfile::TempDir,
    home: std::path::PathBuf,
    url: String,
    models: Vec<String>,
}

impl World {
    fn new(count: usize, settings: &[&str]) -> World {
        let pg = Postgres::start();
        let server = HubServer::start();
        // A real link's latency, so that jobs last long enough to be killed in the middle.
        server.set_delay(Duration::from_millis(40));
        let tmp = tempfile::tempdir().unwrap();
        let (home, url) = (tmp.path().join("home"), pg.url());
        let models = serve_models(&server, &tmp.path().join("models"), count);
        let mut add: Vec<&str> = vec!["queue", "add", "--queue", &url];
        add.extend(models.iter().map(String::as_str));
        add.extend_from_slice(settings);
        ok(weightreel(&add, server.url(), &home));
        World {
            pg,
            server,
            tmp,
            home,
            url,
            models,
        }
    }

    fn run(&self, args: &[&str]) -> String {
        ok(weightreel(args, self.server.url(), &self.home))
    }

    fn workers(&self, count: usize, store: &Path) -> Vec<Child> {
        (0..count)
            .map(|k| {
                let log = self.tmp.path().join(format!("worker-{k}.log"));
                spawn_worker(store, &self.url, self.server.url(), &self.home, &log)
            })
            .collect()
    }

    fn status(&self) -> Value {
        status(&self.pg, self.server.url(), &self.home)
    }

    /// Kill `worker` with SIGKILL while it holds a job, and return that job's id.
    fn kill_mid_job(&self, worker: &mut Child) -> String {
        let victim = worker.id();
        let end = Instant::now() + Duration::from_secs(60);
        let job = loop {
            let job = self.pg.query(&format!(
                "SELECT coalesce(min(id)::text, '') FROM wr_jobs WHERE state = 'running' AND worker LIKE '%:{victim}:%'"
            ));
            if !job.is_empty() {
                break job;
            }
            assert!(Instant::now() < end, "the worker never claimed a job");
            std::thread::sleep(Duration::from_millis(20));
        };
        worker.kill().unwrap();
        worker.wait().unwrap();
        // It died holding the job (a job takes about a second at this latency).
        let held = self.pg.query(&format!(
            "SELECT state || ' ' || worker FROM wr_jobs WHERE id = {job}"
        ));
        assert!(
            held.starts_with("running ") && held.contains(&format!(":{victim}:")),
            "job {job} was not mid-way when its worker was killed: {held}"
        );
        job
    }

    /// The first `count` workers' logs, one after another.
    fn logs(&self, count: usize) -> String {
        (0..count)
            .map(|k| {
                std::fs::read_to_string(self.tmp.path().join(format!("worker-{k}.log"))).unwrap()
            })
            .collect()
    }

    /// Every job done, none parked, each model stored once, and `check` finds nothing wrong.
    fn assert_every_model_stored_once(&self, store: &Path) {
        let s = self.status();
        let n = self.models.len() as i64;
        assert_eq!(
            (s["done"].as_i64(), s["parked"].as_i64()),
            (Some(n), Some(0)),
            "{s}"
        );
        assert_eq!(self.stored(store), self.models);
        let check = self.run(&["check", "--store", path(store)]);
        assert!(
            check.contains(&format!("{n} entries ok, 0 problems")),
            "{check}"
        );
    }

    /// The store's entry names, sorted.
    fn stored(&self, store: &Path) -> Vec<String> {
        let list: Value =
            serde_json::from_str(&self.run(&["list", "--store", path(store), "--json"])).unwrap();
        let mut names: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }
}

#[test]
fn four_workers_drain_forty_models_and_a_killed_workers_job_is_taken_over() {
    if services_disabled("four_workers_drain_forty_models_and_a_killed_workers_job_is_taken_over") {
        return;
    }
    let settings = ["--chunk-encoding", "--chunk-size", "2048"];
    let w = World::new(40, &settings);
    let store = w.tmp.path().join("shared-store");
    let mut workers = w.workers(4, &store);
    let killed_job = w.kill_mid_job(&mut workers[0]);
    wait_all(&mut workers[1..], Duration::from_secs(300));

    // Every job ran to a committed result; the killed one was taken over by another worker.
    let s = w.status();
    assert_eq!(
        (
            s["done"].as_i64(),
            s["queued"].as_i64(),
            s["running"].as_i64(),
            s["parked"].as_i64()
        ),
        (Some(40), Some(0), Some(0), Some(0)),
        "{s}"
    );
    let attempts = w.pg.query(&format!(
        "SELECT attempts FROM wr_jobs WHERE id = {killed_job}"
    ));
    assert!(attempts == "2" || attempts == "3", "{attempts}");
    // Each model is in the store exactly once, and the store is whole: no orphaned or missing
    // reel, no interrupted encode left behind.
    assert_eq!(w.stored(&store), w.models, "one entry per model");
    let check = w.run(&["check", "--store", path(&store)]);
    assert!(check.contains("40 entries ok, 0 problems"), "{check}");
    assert!(
        !check.contains("orphan") && !check.contains("interrupted"),
        "{check}"
    );

    // Search over the shared store answers as a store built by one process does.
    let single = w.tmp.path().join("single-store");
    let mut encode: Vec<&str> = vec!["encode", "--store", path(&single), "-q"];
    encode.extend(w.models.iter().map(String::as_str));
    encode.extend_from_slice(&settings);
    w.server.set_delay(Duration::ZERO);
    w.run(&encode);
    for query in ["org/model-07", "org/model-31"] {
        let shared = ranking(&store, query, w.server.url(), &w.home);
        // Every other model, ranked.
        assert_eq!(shared.len(), 39, "{shared:?}");
        assert!(shared.iter().all(|(name, _)| name != query), "{shared:?}");
        assert_eq!(
            shared,
            ranking(&single, query, w.server.url(), &w.home),
            "{query}"
        );
    }
}

#[test]
fn a_job_that_keeps_failing_is_parked_with_its_error() {
    if services_disabled("a_job_that_keeps_failing_is_parked_with_its_error") {
        return;
    }
    let pg = Postgres::start();
    let server = HubServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let (home, url) = (tmp.path().join("home"), pg.url());
    let models = serve_models(&server, &tmp.path().join("models"), 1);
    ok(weightreel(
        &["queue", "add", "org/not-there", &models[0], "--queue", &url],
        server.url(),
        &home,
    ));
    let store = tmp.path().join("store");
    let log = tmp.path().join("worker.log");
    let mut worker = [spawn_worker(&store, &url, server.url(), &home, &log)];
    wait_all(&mut worker, Duration::from_secs(120));
    let s = status(&pg, server.url(), &home);
    assert_eq!(
        (s["done"].as_i64(), s["parked"].as_i64()),
        (Some(1), Some(1)),
        "{s}"
    );
    let parked = &s["parked_jobs"][0];
    assert_eq!(parked["model"], "org/not-there");
    assert_eq!(parked["attempts"], 3, "{parked}");
    assert!(
        parked["error"].as_str().unwrap().contains("not-there"),
        "{parked}"
    );
    // The text form names it too, and the store holds only the model that worked.
    let text = ok(weightreel(
        &["queue", "status", "--queue", &url],
        server.url(),
        &home,
    ));
    assert!(
        text.starts_with("Jobs: 0 queued, 0 running, 1 done, 1 parked"),
        "{text}"
    );
    assert!(
        text.contains("parked  #1 org/not-there after 3 tries: "),
        "{text}"
    );
    let list: Value = serde_json::from_str(&ok(weightreel(
        &["list", "--store", path(&store), "--json"],
        server.url(),
        &home,
    )))
    .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn workers_ride_out_a_postgresql_restart() {
    if services_disabled("workers_ride_out_a_postgresql_restart") {
        return;
    }
    let w = World::new(12, &[]);
    let store = w.tmp.path().join("store");
    let mut workers = w.workers(2, &store);
    let end = Instant::now() + Duration::from_secs(120);
    while w
        .pg
        .query("SELECT count(*) FROM wr_jobs WHERE state = 'done'")
        .parse::<u32>()
        .unwrap()
        < 2
    {
        assert!(Instant::now() < end, "no job finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server goes away at once (as in a crash) and comes back on the same port.
    w.pg.restart();
    wait_all(&mut workers, Duration::from_secs(300));
    let log = w.logs(2);
    assert!(
        log.contains("reconnecting") && log.contains("queue connection back"),
        "{log}"
    );
    w.assert_every_model_stored_once(&store);
}

/// A worker losing its connection (a network cut, a proxy or an administrator ending it): every
/// connection the workers hold is terminated by the server, over and over, while they run.
/// They reconnect, and every job still ends done exactly once with one entry.
#[test]
fn workers_whose_connections_are_cut_reconnect_and_finish_every_job_once() {
    if services_disabled("workers_whose_connections_are_cut_reconnect") {
        return;
    }
    let w = World::new(10, &[]);
    let store = w.tmp.path().join("store");
    let mut workers = w.workers(2, &store);
    let done = || {
        w.pg.query("SELECT count(*) FROM wr_jobs WHERE state IN ('done', 'parked')")
            .parse::<u32>()
            .unwrap()
    };
    let end = Instant::now() + Duration::from_secs(240);
    let mut cuts = 0;
    while done() < 10 {
        assert!(Instant::now() < end, "the jobs did not end: {}", w.status());
        let cut = w.pg.query(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'weightreel' AND pid <> pg_backend_pid()",
        );
        cuts += cut.parse::<u32>().unwrap();
        std::thread::sleep(Duration::from_millis(700));
    }
    for (k, worker) in workers.iter_mut().enumerate() {
        let status = worker.wait().unwrap();
        assert!(status.success(), "worker {k}: {status}: {}", w.logs(2));
    }
    assert!(cuts >= 4, "only {cuts} connections were cut");
    let log = w.logs(2);
    assert!(log.contains("reconnecting"), "{log}");
    w.assert_every_model_stored_once(&store);
}

#[test]
fn fingerprint_only_jobs_on_one_worker_with_three_threads_make_a_searchable_census() {
    if services_disabled("fingerprint_only_jobs_on_one_worker_with_three_threads") {
        return;
    }
    let w = World::new(6, &["--fingerprint-only"]);
    let store = w.tmp.path().join("census");
    let log = w.tmp.path().join("worker.log");
    let mut worker = [weightreel(
        &[
            "worker",
            "--queue",
            &w.url,
            "--store",
            path(&store),
            "--concurrency",
            "3",
            "--exit-when-empty",
            "--poll",
            "0.2",
        ],
        w.server.url(),
        &w.home,
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap()];
    wait_all(&mut worker, Duration::from_secs(120));
    let s = w.status();
    assert_eq!(
        (s["done"].as_i64(), s["parked"].as_i64()),
        (Some(6), Some(0)),
        "{s}"
    );
    // The three threads each ran jobs.
    let text = std::fs::read_to_string(&log).unwrap();
    for k in 0..3 {
        assert!(
            text.contains(&format!(":{k}: job #")),
            "thread {k} ran nothing: {text}"
        );
    }
    // Fingerprints only: no entry, no reel, yet every model can be searched for.
    assert!(w.stored(&store).is_empty());
    let reels = std::fs::read_dir(store.join("reels")).map_or(0, |d| d.count());
    assert_eq!(reels, 0);
    let hits = ranking(&store, "org/model-03", w.server.url(), &w.home);
    let mut names: Vec<&str> = hits.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "org/model-00",
            "org/model-01",
            "org/model-02",
            "org/model-04",
            "org/model-05"
        ]
    );
}

#[test]
fn a_job_committed_by_a_worker_that_died_before_marking_it_done_is_not_encoded_again() {
    if services_disabled("a_job_committed_by_a_worker_that_died_before_marking_it_done") {
        return;
    }
    let w = World::new(1, &[]);
    let store = w.tmp.path().join("store");
    wait_all(&mut w.workers(1, &store), Duration::from_secs(120));
    let entries = || -> Value {
        serde_json::from_str(&w.run(&["list", "--store", path(&store), "--json"])).unwrap()
    };
    let before = entries();
    assert_eq!(before.as_array().unwrap().len(), 1, "{before}");
    // As a worker that died between the registry's commit and the queue's update leaves it:
    // running, its lease run out, no result.
    w.pg.query(
        "UPDATE wr_jobs SET state = 'running', worker = 'gone:1:0', finished = NULL, result = NULL,
                lease_until = now() - interval '1 second' WHERE id = 1 RETURNING id",
    );
    wait_all(&mut w.workers(1, &store), Duration::from_secs(120));
    assert_eq!(
        w.pg.query("SELECT state || ' ' || attempts || ' ' || (result->>'status') FROM wr_jobs WHERE id = 1"),
        "done 2 already committed"
    );
    // The entry is the one the first worker committed: not encoded a second time.
    assert_eq!(entries(), before);
}

/// Issue 14's shared store as a fleet uses it: a PostgreSQL registry (the queue's database) with
/// reels in S3 (s3s-fs; a shared directory when built without `s3`), four workers on two
/// "machines" (each with its own local work directory) draining forty models, one of them
/// killed with SIGKILL while it holds a job. Every model ends committed once, the bucket holds
/// exactly the entries' reels, and search over the shared registry answers as a single-machine
/// store does.
#[test]
fn workers_on_two_machines_share_a_postgresql_registry_and_s3_reels_through_a_sigkill() {
    let test = "workers_on_two_machines_share_a_postgresql_registry_and_s3_reels";
    if services_disabled(test) {
        return;
    }
    let settings = ["--chunk-encoding", "--chunk-size", "2048"];
    let w = World::new(40, &settings);
    #[cfg(feature = "s3")]
    let s3 = {
        let s3 = support::s3::S3Server::start();
        s3.create_bucket("fleet");
        s3
    };
    let machine_env = |m: usize| -> Vec<(String, String)> {
        let work = w.tmp.path().join(format!("machine-{m}-work"));
        let mut env = vec![("WEIGHTREEL_WORK".into(), work.display().to_string())];
        #[cfg(feature = "s3")]
        env.extend([
            ("WEIGHTREEL_REELS".into(), "s3://fleet/reels".into()),
            ("AWS_ACCESS_KEY_ID".into(), support::s3::ACCESS_KEY.into()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                support::s3::SECRET_KEY.into(),
            ),
            ("WEIGHTREEL_S3_ENDPOINT".into(), s3.endpoint()),
        ]);
        #[cfg(not(feature = "s3"))]
        env.push((
            "WEIGHTREEL_REELS".into(),
            w.tmp.path().join("shared-reels").display().to_string(),
        ));
        env
    };
    let store = Path::new(&w.url);
    let mut workers: Vec<Child> = (0..4)
        .map(|k| {
            let log = w.tmp.path().join(format!("worker-{k}.log"));
            let mut cmd = worker_command(store, &w.url, w.server.url(), &w.home, &log);
            cmd.envs(machine_env(k % 2));
            cmd.spawn().unwrap()
        })
        .collect();
    let killed_job = w.kill_mid_job(&mut workers[0]);
    wait_all(&mut workers[1..], Duration::from_secs(300));
    let s = w.status();
    assert_eq!(
        (s["done"].as_i64(), s["parked"].as_i64()),
        (Some(40), Some(0)),
        "{s}"
    );
    let attempts = w.pg.query(&format!(
        "SELECT attempts FROM wr_jobs WHERE id = {killed_job}"
    ));
    assert!(attempts == "2" || attempts == "3", "{attempts}");
    let run = |m: usize, args: &[&str]| {
        let mut cmd = weightreel(args, w.server.url(), &w.home);
        cmd.envs(machine_env(m));
        ok(cmd)
    };
    let list: Value =
        serde_json::from_str(&run(1, &["list", "--store", &w.url, "--json"])).unwrap();
    let mut names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, w.models, "one entry per model");
    // No orphaned or missing reel: check reads every entry's reel through the storage and
    // lists objects no entry names.
    let check = run(0, &["check", "--store", &w.url]);
    assert!(check.contains("40 entries ok, 0 problems"), "{check}");
    assert!(!check.contains("orphan"), "{check}");
    #[cfg(feature = "s3")]
    {
        let reels: Vec<String> = s3
            .files()
            .into_iter()
            .filter(|f| f.starts_with("fleet/reels/") && f.ends_with(".mkv"))
            .collect();
        assert_eq!(reels.len(), 40, "{reels:?}");
    }
    // The killed worker's interrupted encode stays on its machine only until gc.
    for m in 0..2 {
        run(m, &["gc", "--store", &w.url]);
        let work = w.tmp.path().join(format!("machine-{m}-work"));
        let left = std::fs::read_dir(&work).map_or(0, |d| d.count());
        assert_eq!(left, 0, "machine {m} left work behind");
    }
    // Search over the shared registry answers as a store built by one process does.
    let single = w.tmp.path().join("single-store");
    let mut encode: Vec<&str> = vec!["encode", "--store", path(&single), "-q"];
    encode.extend(w.models.iter().map(String::as_str));
    encode.extend_from_slice(&settings);
    w.server.set_delay(Duration::ZERO);
    w.run(&encode);
    let ranked = |store: &str, query: &str| -> Vec<(String, String)> {
        let json: Value = serde_json::from_str(&run(
            0,
            &["search", query, "--store", store, "--top", "50", "--json"],
        ))
        .unwrap();
        json["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_string(),
                    format!("{:.9}", h["score"].as_f64().unwrap()),
                )
            })
            .collect()
    };
    for query in ["org/model-03", "org/model-31"] {
        let over_postgres = ranked(&w.url, query);
        assert_eq!(over_postgres.len(), 39, "{over_postgres:?}");
        assert_eq!(over_postgres, ranked(path(&single), query), "{query}");
    }
}

#[test]
fn workers_into_a_postgresql_store_ride_out_a_postgresql_restart() {
    let test = "workers_into_a_postgresql_store_ride_out_a_postgresql_restart";
    if services_disabled(test) {
        return;
    }
    let w = World::new(12, &[]);
    let env = [
        ("WEIGHTREEL_REELS", w.tmp.path().join("shared-reels")),
        ("WEIGHTREEL_WORK", w.tmp.path().join("work")),
    ];
    let store = Path::new(&w.url);
    let mut workers: Vec<Child> = (0..2)
        .map(|k| {
            let log = w.tmp.path().join(format!("worker-{k}.log"));
            let mut cmd = worker_command(store, &w.url, w.server.url(), &w.home, &log);
            cmd.envs(env.clone());
            cmd.spawn().unwrap()
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(120);
    while w
        .pg
        .query("SELECT count(*) FROM wr_jobs WHERE state = 'done'")
        .parse::<u32>()
        .unwrap()
        < 2
    {
        assert!(Instant::now() < end, "no job finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server holding both the queue and the registry goes away at once and comes back:
    // a job caught in it fails its try (nothing of it visible) and runs again.
    w.pg.restart();
    wait_all(&mut workers, Duration::from_secs(300));
    let s = w.status();
    assert_eq!(
        (s["done"].as_i64(), s["parked"].as_i64()),
        (Some(12), Some(0)),
        "{s}"
    );
    let mut cmd = weightreel(
        &["list", "--store", &w.url, "--json"],
        w.server.url(),
        &w.home,
    );
    cmd.envs(env.clone());
    let list: Value = serde_json::from_str(&ok(cmd)).unwrap();
    let mut names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, w.models, "each model committed exactly once");
    assert_eq!(w.pg.query("SELECT count(*) FROM wr_receipts"), "12");
    let mut cmd = weightreel(&["check", "--store", &w.url], w.server.url(), &w.home);
    cmd.envs(env.clone());
    let check = ok(cmd);
    assert!(check.contains("12 entries ok, 0 problems"), "{check}");
}
