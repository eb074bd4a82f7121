"""Fixtures: the real all-MiniLM-L6-v2, and the test suite's Hub server (a real HTTP server
with Range support, `examples/hub_server.rs`) serving the guide's repos."""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release" / "weightreel"


@pytest.fixture(scope="session")
def minilm() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "fetch-minilm.sh")],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """Start the Hub server; point HF_ENDPOINT at it and the HF cache at an empty directory."""
    work = tmp_path_factory.mktemp("hub")
    server = subprocess.Popen(
        [str(ROOT / "target" / "release" / "examples" / "hub_server"), str(work)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    url = server.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    old = {k: os.environ.get(k) for k in ("HF_ENDPOINT", "HF_HUB_CACHE", "HF_TOKEN")}
    os.environ["HF_ENDPOINT"] = url
    os.environ["HF_HUB_CACHE"] = str(work / "empty-cache")
    os.environ.pop("HF_TOKEN", None)
    yield url
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stdin.close()
    server.wait(timeout=10)


def cli(*args: str) -> str:
    """Run the weightreel binary; returns stdout, fails the test on a non-zero exit."""
    out = subprocess.run([str(BIN), *args], capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _services_disabled(test: str) -> bool:
    """As the Rust tests: skip only when WEIGHTREEL_NO_SERVICES=1 asks for it, and say so."""
    if os.environ.get("WEIGHTREEL_NO_SERVICES") == "1":
        pytest.skip(f"{test}: WEIGHTREEL_NO_SERVICES=1 (needs PostgreSQL)")
    return False


@pytest.fixture
def postgres():
    """A private PostgreSQL cluster (Debian's server binaries, as tests/support/postgres.rs):
    initdb into a temporary directory, started on a free port of 127.0.0.1, stopped after the
    test. Yields the URL of database `weightreel` (user `weightreel`, trust auth)."""
    import shutil
    import socket
    import tempfile

    _services_disabled("postgres fixture")
    root = pathlib.Path("/usr/lib/postgresql")
    bins = sorted(p / "bin" for p in root.iterdir() if (p / "bin" / "initdb").exists())
    assert bins, "no PostgreSQL server binaries under /usr/lib/postgresql (scripts/deps.sh)"
    bindir = bins[-1]
    # Not under pytest's own temporary root, which only root may enter.
    work = pathlib.Path(tempfile.mkdtemp(prefix="weightreel-pg-"))
    # PostgreSQL refuses to run as root: then the cluster runs as the package's `postgres` user.
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(work, "postgres", "postgres")

    def run(program, *args):
        cmd = [str(bindir / program), *args]
        if as_root:
            cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *cmd]
        return subprocess.run(cmd, cwd=work, capture_output=True, text=True)

    data = work / "data"
    out = run("initdb", "-D", str(data), "-A", "trust", "-U", "weightreel", "-E", "UTF8",
              "--no-sync")
    assert out.returncode == 0, out.stderr
    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        opts = f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off"
        if run("pg_ctl", "-D", str(data), "-l", str(work / "server.log"), "-o", opts, "-w",
               "-t", "30", "start").returncode == 0:
            break
    else:
        raise AssertionError((work / "server.log").read_text())
    out = run("psql", "-h", "127.0.0.1", "-p", str(port), "-U", "weightreel", "-d", "postgres",
              "-v", "ON_ERROR_STOP=1", "-Atc", "CREATE DATABASE weightreel")
    assert out.returncode == 0, out.stderr
    yield f"postgres://weightreel@127.0.0.1:{port}/weightreel"
    run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    shutil.rmtree(work, ignore_errors=True)
