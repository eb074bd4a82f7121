//! `weightreel queue add|status` and `weightreel worker`: the command line's face over
//! [`weightreel::queue`]. A job's settings are the encode command's own flags, checked with the
//! encode command's parser when the job is added and parsed by it again when a worker runs it.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches};

use weightreel::encode::{encode, store_fingerprint, EncodeOutcome};
use weightreel::error::{Error, Result};
use weightreel::queue::{AfterFailure, Job, JobKind, NewJob, Queue, QueueStatus};
use weightreel::source::Model;
use weightreel::store::Store;
use weightreel::text::printable;

use crate::{Cli, Command};

/// The queue's URL: `--queue`, else `$WEIGHTREEL_QUEUE`.
pub fn queue_url(flag: Option<&str>) -> Result<String> {
    flag.map(str::to_string)
        .or_else(|| {
            std::env::var("WEIGHTREEL_QUEUE")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .ok_or_else(|| {
            Error::invalid(
                "--queue",
                "(none)",
                "a PostgreSQL URL such as postgres://user@host:5432/db, or $WEIGHTREEL_QUEUE",
            )
        })
}

/// Flags a job may not carry: the worker decides where results go and how it reports.
const WORKER_FLAGS: &[&str] = &[
    "--storage-dir",
    "--store",
    "--json",
    "--quiet",
    "-q",
    "--preview",
];

/// Split `words` (models and encode flags, in any order, as typed after `queue add`) into the
/// models and the flags, checking the flags with the encode command's parser.
pub fn split_job_words(words: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    if let Some(flag) = words.iter().find(|w| {
        WORKER_FLAGS
            .iter()
            .any(|f| *w == f || w.starts_with(&format!("{f}=")))
    }) {
        return Err(Error::invalid(
            "job flag",
            flag,
            "encode settings only: where results go (--store) and how a worker reports are the worker's",
        ));
    }
    // A placeholder model at the end lets the parser check flags when every model comes from
    // a file; it is never queued.
    const PLACEHOLDER: &str = "\u{1}(models from --from-file)";
    let argv: Vec<String> = ["weightreel", "encode"]
        .iter()
        .map(|s| s.to_string())
        .chain(words.iter().cloned())
        .chain([PLACEHOLDER.to_string()])
        .collect();
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .map_err(|e| Error::invalid("queue add arguments", words.join(" "), first_line(&e)))?;
    let encode = matches
        .subcommand_matches("encode")
        .expect("the encode subcommand was given");
    // Positions of the models in `argv`, so that a flag's value that looks like a model stays
    // with its flag.
    // clap counts a subcommand's indices from the subcommand's name: argv's index 1.
    let model_at: Vec<usize> = encode
        .indices_of("models")
        .map(|i| i.map(|k| k + 1).collect())
        .unwrap_or_default();
    let values: Vec<&String> = encode
        .get_many::<String>("models")
        .map(|v| v.collect())
        .unwrap_or_default();
    let placed = model_at.len() == values.len()
        && model_at
            .iter()
            .zip(&values)
            .all(|(&i, v)| argv.get(i) == Some(*v));
    if !placed {
        return Err(Error::invalid(
            "queue add arguments",
            words.join(" "),
            "models and settings that can be told apart (put the models first)",
        ));
    }
    let (mut models, mut flags) = (Vec::new(), Vec::new());
    for (i, word) in argv.iter().enumerate().skip(2) {
        if word == PLACEHOLDER {
            continue;
        }
        if model_at.contains(&i) {
            models.push(word.clone());
        } else {
            flags.push(word.clone());
        }
    }
    // The settings must make valid encode options too (ranges, regexes, roles).
    let cli = Cli::from_arg_matches(&matches)
        .map_err(|e| Error::invalid("queue add arguments", words.join(" "), first_line(&e)))?;
    if let Some(Command::Encode { select, encode, .. }) = cli.command {
        encode.options(&select)?.validate()?;
    }
    Ok((models, flags))
}

fn first_line(e: &clap::Error) -> String {
    e.render()
        .to_string()
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("not understood")
        .trim_start_matches("error: ")
        .to_string()
}

/// `queue add`'s own flags, wherever they stand among the models and encode flags (clap
/// stops at the first model and hands the rest over as words).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AddFlags {
    pub queue: Option<String>,
    pub from_file: Option<std::path::PathBuf>,
    pub fingerprint_only: bool,
    pub json: bool,
}

/// Take `queue add`'s own flags out of `words`, into `flags`.
pub fn take_add_flags(words: &mut Vec<String>, flags: &mut AddFlags) -> Result<()> {
    let mut rest = Vec::with_capacity(words.len());
    let mut it = std::mem::take(words).into_iter();
    while let Some(word) = it.next() {
        let (name, inline) = match word.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (word.clone(), None),
        };
        let mut value = |flag: &str| -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| Error::invalid(flag, "(missing)", "a value"))
        };
        match name.as_str() {
            "--queue" => flags.queue = Some(value("--queue")?),
            "--from-file" => flags.from_file = Some(value("--from-file")?.into()),
            "--fingerprint-only" => flags.fingerprint_only = true,
            "--json" => flags.json = true,
            _ => rest.push(word),
        }
    }
    *words = rest;
    Ok(())
}

/// `weightreel queue add`.
pub fn run_queue_add(mut words: Vec<String>, mut flags: AddFlags) -> Result<()> {
    take_add_flags(&mut words, &mut flags)?;
    let url = queue_url(flags.queue.as_deref())?;
    let url = url.as_str();
    let (from_file, fingerprint_only, json) = (
        flags.from_file.as_deref(),
        flags.fingerprint_only,
        flags.json,
    );
    let (mut models, flags) = split_job_words(&words)?;
    if let Some(path) = from_file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        models.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    if models.is_empty() {
        return Err(Error::invalid(
            "queue add",
            "(no model)",
            "one or more models, or --from-file FILE with one per line",
        ));
    }
    if fingerprint_only && !flags.is_empty() {
        return Err(Error::invalid(
            "--fingerprint-only with",
            flags.join(" "),
            "no encode settings: a fingerprint does not depend on them",
        ));
    }
    let kind = if fingerprint_only {
        JobKind::Fingerprint
    } else {
        JobKind::Encode
    };
    let jobs: Vec<NewJob> = models
        .iter()
        .map(|m| NewJob {
            model: m.clone(),
            kind,
            args: flags.clone(),
        })
        .collect();
    let mut queue = Queue::connect(url)?;
    let added = queue.add(&jobs)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"added": added, "already_queued": jobs.len() as u64 - added})
        );
    } else {
        println!(
            "Queued {added} job{} ({} already in the queue) on {}",
            if added == 1 { "" } else { "s" },
            jobs.len() as u64 - added,
            weightreel::queue::redacted(url)
        );
    }
    Ok(())
}

/// `weightreel queue status`.
pub fn run_queue_status(url: &str, json: bool) -> Result<()> {
    let status = Queue::connect(url)?.status()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serializes")
        );
    } else {
        print!("{}", status_text(&status));
    }
    Ok(())
}

fn status_text(s: &QueueStatus) -> String {
    let mut out = format!(
        "Jobs: {} queued, {} running, {} done, {} parked ({:.1} done per minute over the last 5 minutes)\n",
        s.queued, s.running, s.done, s.parked, s.done_per_minute
    );
    for job in &s.running_jobs {
        out.push_str(&format!(
            "  running #{} {} on {} (try {})\n",
            job.id,
            printable(&job.model),
            printable(&job.worker),
            job.attempt
        ));
    }
    for job in &s.parked_jobs {
        out.push_str(&format!(
            "  parked  #{} {} after {} tries: {}\n",
            job.id,
            printable(&job.model),
            job.attempts,
            printable(&job.error)
        ));
    }
    out
}

/// Settings of `weightreel worker`.
pub struct WorkerArgs<'a> {
    pub url: &'a str,
    pub store: &'a Path,
    /// Where the reels go (`--reels`; `None`: the store's `reels/`).
    pub reels: Option<weightreel::store::objects::ReelLocation>,
    pub concurrency: usize,
    pub exit_when_empty: bool,
    pub lease: Duration,
    pub poll: Duration,
}

/// What one worker thread did.
#[derive(Default)]
struct Tally {
    done: u64,
    failed: u64,
}

/// `weightreel worker`: `concurrency` threads, each claiming and running one job at a time.
/// Ctrl-C stops every thread after its current frame and gives its job back.
pub fn run_worker(args: &WorkerArgs<'_>, cancel: Arc<AtomicBool>) -> Result<ExitCode> {
    let host = hostname();
    let pid = std::process::id();
    // Fail here, once, on a bad URL or store, rather than in every thread; a queue that is
    // restarting or a connection cut is waited for (see `Reconnecting`).
    drop(Reconnecting::new(args.url, &format!("{host}:{pid}"))?);
    drop(Store::open(args.store)?.with_reels(args.reels.as_ref())?);
    eprintln!(
        "worker {host}:{pid}: {} thread{} on {}, store {}",
        args.concurrency,
        if args.concurrency == 1 { "" } else { "s" },
        weightreel::queue::redacted(args.url),
        weightreel::store::shown(args.store)
    );
    let tally = Mutex::new(Tally::default());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for k in 0..args.concurrency {
            let name = format!("{host}:{pid}:{k}");
            let (tally, first_error, cancel) = (&tally, &first_error, &cancel);
            scope.spawn(move || {
                if let Err(e) = work_loop(args, &name, cancel, tally) {
                    eprintln!("error: worker {name}: {}", printable(&e.to_string()));
                    first_error.lock().expect("not poisoned").get_or_insert(e);
                    // One thread losing the queue stops the others at their next job.
                    cancel.store(true, Ordering::SeqCst);
                }
            });
        }
    });
    let tally = tally.into_inner().expect("not poisoned");
    eprintln!(
        "worker {host}:{pid}: {} done, {} failed",
        tally.done, tally.failed
    );
    if let Some(e) = first_error.into_inner().expect("not poisoned") {
        return Err(e);
    }
    if cancel.load(Ordering::SeqCst) {
        return Ok(ExitCode::from(crate::EXIT_INTERRUPTED));
    }
    Ok(ExitCode::SUCCESS)
}

fn work_loop(
    args: &WorkerArgs<'_>,
    name: &str,
    cancel: &AtomicBool,
    tally: &Mutex<Tally>,
) -> Result<()> {
    let mut queue = Reconnecting::new(args.url, name)?;
    // The heartbeats' own connection (a job's heartbeat runs beside the job's queue requests),
    // made once per worker thread rather than once per job.
    let mut beats = Reconnecting::new(args.url, name)?;
    while !cancel.load(Ordering::SeqCst) {
        let Some(job) = queue.run(|q| q.claim(name, args.lease))? else {
            if args.exit_when_empty {
                let s = queue.run(|q| q.status())?;
                // Jobs running elsewhere may still come back (their worker may die).
                if s.queued == 0 && s.running == 0 {
                    return Ok(());
                }
            }
            sleep_unless(cancel, args.poll);
            continue;
        };
        eprintln!(
            "worker {name}: job #{} {} {} (try {})",
            job.id,
            job.kind.as_str(),
            printable(&job.model),
            job.attempt
        );
        // `stop_job` is the one flag the library sees: the heartbeat sets it when the lease
        // is lost or Ctrl-C came (`cancel`); `job_done` ends the heartbeat.
        let flags = JobFlags {
            stop_all: cancel,
            stop_job: AtomicBool::new(false),
            job_done: AtomicBool::new(false),
            lost: AtomicBool::new(false),
        };
        let started = Instant::now();
        let result = std::thread::scope(|scope| {
            let beat = scope.spawn(|| heartbeat(args, &mut beats, name, job.id, &flags));
            let receipt = job_receipt(args.url, job.id);
            let result = run_job(args, &job, &receipt, &flags.stop_job);
            flags.job_done.store(true, Ordering::SeqCst);
            let beat = beat.join().expect("heartbeat thread");
            (result, beat)
        });
        let lost = flags.lost;
        let (result, beat) = result;
        if let Err(e) = beat {
            // The heartbeat's connection failed: the job's lease will run out and another
            // worker will take it; this worker's queue connection decides below.
            eprintln!("worker {name}: heartbeat: {}", printable(&e.to_string()));
        }
        if lost.load(Ordering::SeqCst) {
            eprintln!(
                "worker {name}: job #{}: lease lost (another worker took it over); its result is not recorded here",
                job.id
            );
            continue;
        }
        match result {
            Ok(Some(summary)) => {
                if queue.run(|q| q.complete(job.id, name, &summary))? {
                    tally.lock().expect("not poisoned").done += 1;
                    eprintln!(
                        "worker {name}: job #{} done in {:.2}s",
                        job.id,
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            Ok(None) | Err(Error::Interrupted) => {
                // Stopped by Ctrl-C: give it back untried.
                queue.run(|q| q.release(job.id, name))?;
                eprintln!("worker {name}: job #{} given back", job.id);
            }
            Err(e) => {
                let text = e.to_string();
                let permanent = matches!(e, Error::Invalid { .. });
                let after = queue.run(|q| q.fail(job.id, name, &text, permanent))?;
                tally.lock().expect("not poisoned").failed += 1;
                let what = match after {
                    AfterFailure::Retried => "will be retried",
                    AfterFailure::Parked => "parked",
                    AfterFailure::LostLease => "lease lost",
                };
                eprintln!(
                    "worker {name}: job #{} failed ({what}): {}",
                    job.id,
                    printable(&text)
                );
            }
        }
    }
    Ok(())
}

/// The flags of one running job.
struct JobFlags<'a> {
    /// Ctrl-C: every job stops after its current frame.
    stop_all: &'a AtomicBool,
    /// What the job's encode or fingerprint watches.
    stop_job: AtomicBool,
    /// The job returned; the heartbeat ends.
    job_done: AtomicBool,
    /// The lease was found taken over.
    lost: AtomicBool,
}

/// Extend the lease every third of it until the job ends, and stop the job when the lease is
/// lost or Ctrl-C came.
fn heartbeat(
    args: &WorkerArgs<'_>,
    queue: &mut Reconnecting<'_>,
    name: &str,
    id: i64,
    flags: &JobFlags<'_>,
) -> Result<()> {
    let every = args.lease / 3;
    let mut last = Instant::now();
    while !flags.job_done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50).min(every));
        if flags.stop_all.load(Ordering::SeqCst) {
            flags.stop_job.store(true, Ordering::SeqCst);
        }
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        if !queue.run(|q| q.heartbeat(id, name, args.lease))? {
            // Another worker owns the job now: it must stop.
            flags.lost.store(true, Ordering::SeqCst);
            flags.stop_job.store(true, Ordering::SeqCst);
            return Ok(());
        }
    }
    Ok(())
}

/// The receipt an encode job's entry is committed with: the queue (without its password) and
/// the job's id.
fn job_receipt(url: &str, id: i64) -> String {
    format!("{}#{id}", weightreel::queue::redacted(url))
}

/// Run one job, stopping after the current frame when `stop` is set; `Ok(None)` when it was
/// stopped before it finished.
fn run_job(
    args: &WorkerArgs<'_>,
    job: &Job,
    receipt: &str,
    stop: &AtomicBool,
) -> Result<Option<serde_json::Value>> {
    let mut store = Store::open(args.store)?.with_reels(args.reels.as_ref())?;
    match job.kind {
        JobKind::Fingerprint => {
            let model = Model::open(&job.model, &default_open()?)?;
            let (fp, cost) = store_fingerprint(&mut store, &model, stop)?;
            Ok(Some(serde_json::json!({
                "tensors": fp.tensors.len(),
                "read_bytes": cost.stream.data.bytes,
                "read_requests": cost.stream.data.requests,
            })))
        }
        JobKind::Encode => {
            // A worker that committed this job's entry and died before marking the job done
            // left the entry's receipt: the job is done, not to be encoded again.
            if let Some(entry) = store.receipt(receipt)? {
                return Ok(Some(serde_json::json!({
                    "status": "already committed",
                    "entry_id": entry,
                })));
            }
            let argv: Vec<String> = ["weightreel", "encode", job.model.as_str()]
                .iter()
                .map(|s| s.to_string())
                .chain(job.args.iter().cloned())
                .chain(["--quiet".to_string()])
                .collect();
            let cli = <Cli as clap::Parser>::try_parse_from(&argv)
                .map_err(|e| Error::invalid("job arguments", job.args.join(" "), first_line(&e)))?;
            let Some(Command::Encode {
                source,
                select,
                encode: encode_args,
                ..
            }) = cli.command
            else {
                unreachable!("the argument list starts with encode");
            };
            let mut options = encode_args.options(&select)?;
            options.receipt = Some(receipt.to_string());
            options.validate()?;
            let model = Model::open(&job.model, &source.options()?)?;
            let outcome = encode(&mut store, &model, &options, stop)?;
            match outcome {
                EncodeOutcome::Interrupted { .. } => Ok(None),
                completed => Ok(Some(
                    serde_json::to_value(&completed).expect("outcomes serialize"),
                )),
            }
        }
    }
}

fn default_open() -> Result<weightreel::source::OpenOptions> {
    let hub = weightreel::source::HubSettings::from_env()?;
    hub.validate()?;
    Ok(weightreel::source::OpenOptions {
        hub,
        ..weightreel::source::OpenOptions::default()
    }
    .with_env())
}

/// How long a worker keeps trying to get its queue back (PostgreSQL restarting, a network
/// outage) before it gives up. Its jobs' leases run out meanwhile, so other workers, or this
/// one once back, take them over.
const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// A queue connection that is made again when a request fails, with backoff, for up to
/// [`RECONNECT_FOR`]. Every queue request is one statement conditional on the worker still
/// holding its job, so repeating one after a reconnect is safe.
struct Reconnecting<'a> {
    url: &'a str,
    name: &'a str,
    queue: Option<Queue>,
    /// A connection was lost and not yet made again (for the "back" message).
    lost: bool,
}

impl<'a> Reconnecting<'a> {
    /// Connect, retrying as [`Reconnecting::run`] does: a worker starting while PostgreSQL
    /// restarts, or whose first connection is cut, waits for it rather than exiting.
    fn new(url: &'a str, name: &'a str) -> Result<Reconnecting<'a>> {
        let mut queue = Reconnecting {
            url,
            name,
            queue: None,
            lost: false,
        };
        queue.run(|_| Ok(()))?;
        Ok(queue)
    }

    fn run<T>(&mut self, mut request: impl FnMut(&mut Queue) -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            let outcome = match self.queue.as_mut() {
                Some(queue) => request(queue),
                None => Queue::connect(self.url).and_then(|queue| {
                    if std::mem::take(&mut self.lost) {
                        eprintln!("worker {}: queue connection back", self.name);
                    }
                    request(self.queue.insert(queue))
                }),
            };
            match outcome {
                Err(
                    e @ Error::Queue {
                        transient: true, ..
                    },
                ) => {
                    if started.elapsed() > RECONNECT_FOR {
                        return Err(e);
                    }
                    if self.queue.take().is_some() || !self.lost {
                        self.lost = true;
                        eprintln!(
                            "worker {}: {}; reconnecting for up to {}s",
                            self.name,
                            printable(&e.to_string()),
                            RECONNECT_FOR.as_secs()
                        );
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }
}

fn sleep_unless(cancel: &AtomicBool, total: Duration) {
    let end = Instant::now() + total;
    while Instant::now() < end && !cancel.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
