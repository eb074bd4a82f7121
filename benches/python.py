"""Python-side throughput, for the README: `stream_model_parameters` over the whole
all-MiniLM-L6-v2 next to the same stream consumed in Rust, and `stream_encode_model` next to
the CLI's `encode` with the same settings (u16, chunk encoding, chunk size 8192). Median of 5.

    target/test-venv/bin/python benches/python.py MODEL_DIR
"""

import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from weightreel import StreamingHuggingFaceEncoder, _native

ROOT = pathlib.Path(__file__).resolve().parents[1]


def median(f, n=5):
    return statistics.median(f() for _ in range(n))


def main(model):
    enc = StreamingHuggingFaceEncoder(chunk_size=8192, enable_progress=False)

    def py_stream():
        t = time.perf_counter()
        n = 0
        for chunk, _, _ in enc.stream_model_parameters(model):
            n += chunk.size
        return n / (time.perf_counter() - t)

    def rust_stream():
        n, secs = _native._bench_stream(model, 8192)
        return n / secs

    def py_encode():
        with tempfile.TemporaryDirectory() as d:
            e = StreamingHuggingFaceEncoder(video_storage_dir=d, chunk_size=8192,
                                            enable_progress=False)
            t = time.perf_counter()
            e.stream_encode_model(model, chunk_encoding=True)
            return time.perf_counter() - t

    def cli_encode():
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            subprocess.run([str(ROOT / "target/release/weightreel"), "encode", model, "--store", d,
                            "--chunk-encoding", "--chunk-size", "8192", "-q"], check=True,
                           stdout=subprocess.DEVNULL)
            return time.perf_counter() - t

    py, rust = median(py_stream), median(rust_stream)
    pe, ce = median(py_encode, 3), median(cli_encode, 3)
    print("| what | Python | Rust/CLI | Python ÷ Rust |")
    print("|---|---|---|---|")
    print(f"| stream_model_parameters, whole MiniLM, chunks of 8192 | {py/1e6:.0f} M params/s | "
          f"{rust/1e6:.0f} M params/s | {py/rust:.2f} |")
    print(f"| stream_encode_model vs `encode`, u16 chunk 8192 | {pe:.2f} s | {ce:.2f} s | "
          f"{pe/ce:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1])
