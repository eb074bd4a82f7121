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
