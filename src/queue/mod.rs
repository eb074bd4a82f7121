//! A job queue in PostgreSQL that many workers, on one machine or many, drain: `weightreel queue
//! add` puts models in, `weightreel worker` takes them out one at a time and encodes or
//! fingerprints them into the store, `weightreel queue status` shows the progress.
//!
//! Jobs are rows of `wr_jobs`. A worker *claims* the oldest claimable job with `SELECT … FOR
//! UPDATE SKIP LOCKED` (so workers never wait on each other's claims) and holds a *lease* on it
//! that a heartbeat extends while the job runs. A worker that dies (kill -9, a lost machine, a
//! lost connection) stops extending its lease; once the lease has run out the job is claimable
//! again, and the next worker resumes it (an encode continues from the parts its predecessor
//! made durable). A job that failed, or whose lease ran out, [`MAX_ATTEMPTS`] times is *parked*
//! with its last error instead of being tried forever. Every change of a job's state is one
//! statement, conditional on the worker still holding the job, so a worker whose lease was taken
//! over cannot complete or fail a job another worker now owns.
//!
//! The queue's schema is versioned ([`SCHEMA_VERSION`], table `wr_queue_schema`); migrations run
//! under an advisory lock when any client connects, so that several workers starting at once
//! migrate once.
//!
//! The queue knows nothing of what a job does: a job is a model, a [`JobKind`] and the
//! arguments of the command that runs it, which the command line checks when the job is added
//! and parses again when it runs.

use std::time::Duration;

use postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};

/// Version of the queue's schema this build creates and the newest it uses.
pub const SCHEMA_VERSION: i32 = 1;

/// Tries a job gets (runs that failed or lost their lease) before it is parked.
pub const MAX_ATTEMPTS: i32 = 3;

/// The schema, one migration per version, applied in order.
const MIGRATIONS: &[&str] = &["CREATE TABLE wr_jobs (
        id          BIGSERIAL PRIMARY KEY,
        model       TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('encode', 'fingerprint')),
        args        JSONB NOT NULL,
        state       TEXT NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'parked')),
        attempts    INT NOT NULL DEFAULT 0,
        worker      TEXT,
        lease_until TIMESTAMPTZ,
        error       TEXT,
        result      JSONB,
        created     TIMESTAMPTZ NOT NULL DEFAULT now(),
        started     TIMESTAMPTZ,
        finished    TIMESTAMPTZ,
        UNIQUE (model, kind, args)
    );
    CREATE INDEX wr_jobs_claimable ON wr_jobs (id) WHERE state IN ('queued', 'running');"];

/// Any number, the same in every client: the advisory lock migrations take.
const MIGRATION_LOCK: i64 = 0x7772_5f71_7565_7565; // "wr_queue"

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Encode the model into the store (which fingerprints it too).
    Encode,
    /// Only fingerprint it (reads a few hundred KB; stores no reel).
    Fingerprint,
}

impl JobKind {
    /// Its name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Encode => "encode",
            JobKind::Fingerprint => "fingerprint",
        }
    }

    fn parse(text: &str) -> Option<JobKind> {
        match text {
            "encode" => Some(JobKind::Encode),
            "fingerprint" => Some(JobKind::Fingerprint),
            _ => None,
        }
    }
}

/// A job to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The model, as the encode command takes it (a Hub repo id, a path).
    pub model: String,
    pub kind: JobKind,
    /// The command's settings, as arguments (`--mode lossless`, …).
    pub args: Vec<String>,
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub model: String,
    pub kind: JobKind,
    pub args: Vec<String>,
    /// This run's number, from 1.
    pub attempt: i32,
}

/// How a failed run ended for its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Back in the queue for another try.
    Retried,
    /// Out of tries: parked with its error.
    Parked,
    /// The worker no longer held the job (its lease ran out and another worker took it).
    LostLease,
}

/// Jobs by state, and the recent rate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueueStatus {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub parked: i64,
    /// Jobs finished in the last five minutes, per minute.
    pub done_per_minute: f64,
    /// The running jobs: id, model, worker, attempt.
    pub running_jobs: Vec<RunningJob>,
    /// The parked jobs with their errors.
    pub parked_jobs: Vec<ParkedJob>,
}

/// A job being worked on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunningJob {
    pub id: i64,
    pub model: String,
    pub worker: String,
    pub attempt: i32,
}

/// A job out of tries.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParkedJob {
    pub id: i64,
    pub model: String,
    pub attempts: i32,
    pub error: String,
}

/// A connection to a queue.
pub struct Queue {
    client: Client,
    /// The URL without its password, for messages.
    label: String,
}

/// `postgres://user@host:port/db` without the password, for messages.
pub fn redacted(url: &str) -> String {
    match url.parse::<Config>() {
        Ok(config) => {
            let host = config
                .get_hosts()
                .first()
                .map(|h| match h {
                    postgres::config::Host::Tcp(name) => name.clone(),
                    postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .unwrap_or_else(|| "localhost".into());
            let port = config.get_ports().first().copied().unwrap_or(5432);
            let user = config.get_user().unwrap_or("");
            let db = config.get_dbname().unwrap_or(user);
            let at = if user.is_empty() {
                String::new()
            } else {
                format!("{user}@")
            };
            format!("postgres://{at}{host}:{port}/{db}")
        }
        Err(_) => "the queue URL".into(),
    }
}

impl Queue {
    /// Connect to the PostgreSQL database at `url` (`postgres://user@host:port/db`), creating
    /// or migrating the queue's tables.
    pub fn connect(url: &str) -> Result<Queue> {
        let label = redacted(url);
        let mut config: Config = url.parse().map_err(|e| Error::Queue {
            url: label.clone(),
            problem: format!("not a PostgreSQL URL ({e}); expected postgres://user@host:port/db"),
            transient: false,
        })?;
        config.connect_timeout(Duration::from_secs(10));
        config.application_name("weightreel");
        let client = config.connect(NoTls).map_err(|e| Error::Queue {
            url: label.clone(),
            problem: format!("cannot connect: {}", describe(&e)),
            transient: transient(&e),
        })?;
        let mut queue = Queue { client, label };
        queue.migrate()?;
        Ok(queue)
    }

    fn err(&self, e: postgres::Error) -> Error {
        queue_err(&self.label, e)
    }

    fn migrate(&mut self) -> Result<()> {
        let mut tx = self
            .client
            .transaction()
            .map_err(|e| queue_err(&self.label, e))?;
        let label = self.label.clone();
        let run = |tx: &mut postgres::Transaction<'_>| -> std::result::Result<(), postgres::Error> {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS wr_queue_schema (version INT NOT NULL)")?;
            let version: i32 = tx
                .query_opt("SELECT version FROM wr_queue_schema", &[])?
                .map_or(0, |row| row.get(0));
            if version == 0 {
                tx.execute("INSERT INTO wr_queue_schema VALUES (0)", &[])?;
            }
            for (i, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
                tx.batch_execute(migration)?;
                tx.execute(
                    "UPDATE wr_queue_schema SET version = $1",
                    &[&(i as i32 + 1)],
                )?;
            }
            Ok(())
        };
        run(&mut tx).map_err(|e| queue_err(&label, e))?;
        let version: i32 = tx
            .query_one("SELECT version FROM wr_queue_schema", &[])
            .map_err(|e| queue_err(&label, e))?
            .get(0);
        if version > SCHEMA_VERSION {
            return Err(Error::Queue {
                url: label,
                problem: format!(
                    "its schema is version {version}, newer than this build's {SCHEMA_VERSION}: upgrade weightreel"
                ),
                transient: false,
            });
        }
        tx.commit().map_err(|e| queue_err(&label, e))
    }

    /// Add jobs; a job already queued (same model, kind and arguments, in any state) is not
    /// added twice. Returns how many were new.
    pub fn add(&mut self, jobs: &[NewJob]) -> Result<u64> {
        let mut tx = self
            .client
            .transaction()
            .map_err(|e| queue_err(&self.label, e))?;
        let mut added = 0;
        for job in jobs {
            let args = serde_json::to_value(&job.args).expect("strings serialize");
            added += tx
                .execute(
                    "INSERT INTO wr_jobs (model, kind, args) VALUES ($1, $2, $3)
                     ON CONFLICT (model, kind, args) DO NOTHING",
                    &[&job.model, &job.kind.as_str(), &args],
                )
                .map_err(|e| queue_err(&self.label, e))?;
        }
        tx.commit().map_err(|e| queue_err(&self.label, e))?;
        Ok(added)
    }

    /// Claim the oldest job that is queued or whose lease has run out, for `lease`. Jobs whose
    /// lease ran out after their last try are parked on the way.
    pub fn claim(&mut self, worker: &str, lease: Duration) -> Result<Option<Job>> {
        let lease_secs = lease.as_secs_f64();
        self.client
            .execute(
                "UPDATE wr_jobs SET state = 'parked', worker = NULL, lease_until = NULL,
                        error = coalesce(error || '; ', '') || 'its worker stopped answering '
                                || attempts || ' times (killed, or its machine or connection lost)'
                 WHERE state = 'running' AND lease_until < now() AND attempts >= $1",
                &[&MAX_ATTEMPTS],
            )
            .map_err(|e| self.err(e))?;
        let row = self
            .client
            .query_opt(
                "UPDATE wr_jobs SET state = 'running', attempts = attempts + 1, worker = $1,
                        lease_until = now() + make_interval(secs => $2), started = now()
                 WHERE id = (
                     SELECT id FROM wr_jobs
                     WHERE state = 'queued' OR (state = 'running' AND lease_until < now())
                     ORDER BY id
                     FOR UPDATE SKIP LOCKED
                     LIMIT 1)
                 RETURNING id, model, kind, args, attempts",
                &[&worker, &lease_secs],
            )
            .map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = row.get(2);
        let args: serde_json::Value = row.get(3);
        Ok(Some(Job {
            id: row.get(0),
            model: row.get(1),
            kind: JobKind::parse(&kind).ok_or_else(|| Error::Queue {
                url: self.label.clone(),
                problem: format!("job {} has an unknown kind '{kind}'", row.get::<_, i64>(0)),
                transient: false,
            })?,
            args: serde_json::from_value(args).map_err(|e| Error::Queue {
                url: self.label.clone(),
                problem: format!("job {} has malformed arguments: {e}", row.get::<_, i64>(0)),
                transient: false,
            })?,
            attempt: row.get(4),
        }))
    }

    /// Extend `worker`'s lease on job `id`; false when the worker no longer holds it.
    pub fn heartbeat(&mut self, id: i64, worker: &str, lease: Duration) -> Result<bool> {
        let n = self
            .client
            .execute(
                "UPDATE wr_jobs SET lease_until = now() + make_interval(secs => $3)
                 WHERE id = $1 AND worker = $2 AND state = 'running'",
                &[&id, &worker, &lease.as_secs_f64()],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Mark job `id` done with its result; false when `worker` no longer held it.
    pub fn complete(&mut self, id: i64, worker: &str, result: &serde_json::Value) -> Result<bool> {
        let n = self
            .client
            .execute(
                "UPDATE wr_jobs SET state = 'done', finished = now(), result = $3,
                        worker = NULL, lease_until = NULL, error = NULL
                 WHERE id = $1 AND worker = $2 AND state = 'running'",
                &[&id, &worker, result],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Record a failed run of job `id`: back in the queue, or parked after [`MAX_ATTEMPTS`].
    /// `permanent` failures (the model does not exist, its settings are refused) park at once.
    pub fn fail(
        &mut self,
        id: i64,
        worker: &str,
        error: &str,
        permanent: bool,
    ) -> Result<AfterFailure> {
        let row = self
            .client
            .query_opt(
                "UPDATE wr_jobs SET
                        state = CASE WHEN $4 OR attempts >= $5 THEN 'parked' ELSE 'queued' END,
                        error = $3, worker = NULL, lease_until = NULL
                 WHERE id = $1 AND worker = $2 AND state = 'running'
                 RETURNING state",
                &[&id, &worker, &error, &permanent, &MAX_ATTEMPTS],
            )
            .map_err(|e| self.err(e))?;
        Ok(match row {
            None => AfterFailure::LostLease,
            Some(row) if row.get::<_, String>(0) == "parked" => AfterFailure::Parked,
            Some(_) => AfterFailure::Retried,
        })
    }

    /// Give back a job unfinished (the worker was asked to stop): queued again, this try not
    /// counted.
    pub fn release(&mut self, id: i64, worker: &str) -> Result<()> {
        self.client
            .execute(
                "UPDATE wr_jobs SET state = 'queued', attempts = greatest(attempts - 1, 0),
                        worker = NULL, lease_until = NULL
                 WHERE id = $1 AND worker = $2 AND state = 'running'",
                &[&id, &worker],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Jobs by state, the running and parked ones, and the rate over the last five minutes.
    pub fn status(&mut self) -> Result<QueueStatus> {
        let mut status = QueueStatus {
            queued: 0,
            running: 0,
            done: 0,
            parked: 0,
            done_per_minute: 0.0,
            running_jobs: Vec::new(),
            parked_jobs: Vec::new(),
        };
        let rows = self
            .client
            .query("SELECT state, count(*) FROM wr_jobs GROUP BY state", &[])
            .map_err(|e| self.err(e))?;
        for row in rows {
            let n: i64 = row.get(1);
            match row.get::<_, &str>(0) {
                "queued" => status.queued = n,
                "running" => status.running = n,
                "done" => status.done = n,
                _ => status.parked = n,
            }
        }
        let recent: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM wr_jobs
                 WHERE state = 'done' AND finished > now() - interval '5 minutes'",
                &[],
            )
            .map_err(|e| self.err(e))?
            .get(0);
        status.done_per_minute = recent as f64 / 5.0;
        for row in self
            .client
            .query(
                "SELECT id, model, worker, attempts FROM wr_jobs WHERE state = 'running' ORDER BY id",
                &[],
            )
            .map_err(|e| self.err(e))?
        {
            status.running_jobs.push(RunningJob {
                id: row.get(0),
                model: row.get(1),
                worker: row.get::<_, Option<String>>(2).unwrap_or_default(),
                attempt: row.get(3),
            });
        }
        for row in self
            .client
            .query(
                "SELECT id, model, attempts, coalesce(error, '') FROM wr_jobs
                 WHERE state = 'parked' ORDER BY id",
                &[],
            )
            .map_err(|e| self.err(e))?
        {
            status.parked_jobs.push(ParkedJob {
                id: row.get(0),
                model: row.get(1),
                attempts: row.get(2),
                error: row.get(3),
            });
        }
        Ok(status)
    }
}

fn queue_err(label: &str, e: postgres::Error) -> Error {
    Error::Queue {
        url: label.to_string(),
        problem: describe(&e),
        transient: transient(&e),
    }
}

/// A failure that another try may not meet: the connection (no answer from the server), or
/// the server saying it is shutting down, starting or out of connections (SQLSTATE classes 08
/// and 57, and 53300).
pub(crate) fn transient(e: &postgres::Error) -> bool {
    match e.as_db_error() {
        None => true,
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57") || code == "53300"
        }
    }
}

/// The server's message when there is one (postgres::Error's Display says only "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        for (url, want) in [
            (
                "postgres://alice:s3cret@db.example:6543/weights",
                "postgres://alice@db.example:6543/weights",
            ),
            (
                "postgres://bob@localhost/queue",
                "postgres://bob@localhost:5432/queue",
            ),
            (
                "postgresql://127.0.0.1:5433/x",
                "postgres://127.0.0.1:5433/x",
            ),
            ("not a url", "the queue URL"),
        ] {
            let shown = redacted(url);
            assert_eq!(shown, want, "{url}");
            assert!(!shown.contains("s3cret"));
        }
    }

    #[test]
    fn job_kinds_round_trip() {
        for kind in [JobKind::Encode, JobKind::Fingerprint] {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(JobKind::parse("decode"), None);
    }
}
