//! A private PostgreSQL cluster for a test: `initdb` into a temporary directory, started on a
//! free port on 127.0.0.1, stopped (and its files removed) when dropped. The server binaries
//! come from Debian's `postgresql` package (scripts/deps.sh installs it). PostgreSQL refuses
//! to run as root, so as root the cluster runs as the `postgres` user the package creates.
//!
//! Tests that need it skip only when `WEIGHTREEL_NO_SERVICES=1` is set, and say so; without
//! that variable a missing PostgreSQL is a failure, never a silent skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_user: Option<String>,
}

/// True (with a note on stderr) when the environment asks to run without services.
pub fn services_disabled(test: &str) -> bool {
    if std::env::var("WEIGHTREEL_NO_SERVICES").is_ok_and(|v| v == "1") {
        eprintln!("{test}: skipped: WEIGHTREEL_NO_SERVICES=1 (needs a test service: PostgreSQL or the S3 server)");
        return true;
    }
    false
}

fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: install Debian's postgresql package (scripts/deps.sh does)",
                root.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// Create and start a cluster; database `weightreel`, user `weightreel`, trust auth.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: geteuid has no preconditions.
        let as_user = (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_string());
        if as_user.is_some() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the cluster directory to postgres failed");
        }
        let mut pg = Postgres {
            dir,
            bin: bin_dir(),
            port: 0,
            as_user,
        };
        let data = pg.data();
        let out = pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "weightreel",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A free port can be taken between the probe and the start: try a few.
        for _ in 0..5 {
            pg.port = free_port();
            if pg.pg_ctl_start() {
                let out = pg.psql("postgres", "CREATE DATABASE weightreel");
                assert!(
                    out.status.success(),
                    "createdb: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                return pg;
            }
        }
        panic!(
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(pg.log()).unwrap_or_default()
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn pg_ctl_start(&self) -> bool {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let (data, log) = (self.data(), self.log());
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
        .status
        .success()
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut cmd = match &self.as_user {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={user}"),
                    &format!("--regid={user}"),
                    "--init-groups",
                ])
                .arg(&path);
                c
            }
            None => Command::new(&path),
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// The URL of database `weightreel`.
    pub fn url(&self) -> String {
        format!("postgres://weightreel@127.0.0.1:{}/weightreel", self.port)
    }

    /// Run SQL with psql against `db`.
    pub fn psql(&self, db: &str, sql: &str) -> Output {
        let port = self.port.to_string();
        self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "weightreel",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
        )
    }

    /// One value from a query.
    pub fn query(&self, sql: &str) -> String {
        let out = self.psql("weightreel", sql);
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Stop the server at once, as a crash would (no shutdown checkpoint).
    fn stop_now(&self) -> Output {
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    /// Stop at once (the crash a restart test wants), then start again on the same port.
    pub fn restart(&self) {
        let out = self.stop_now();
        assert!(
            out.status.success(),
            "stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(self.pg_ctl_start(), "restart failed");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}
