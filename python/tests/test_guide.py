"""The streaming guide's Python section, snippet by snippet, with only the import changed;
then what the package promises beyond it."""

import json
import pathlib

import numpy as np
import pytest

from weightreel import StreamingHuggingFaceEncoder
import weightreel

from conftest import cli


def test_basic_streaming_api(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # Initialize encoder
    encoder = StreamingHuggingFaceEncoder(
        video_storage_dir="my_streaming_models",
        chunk_size=8000,
        enable_progress=True
    )

    # Stream encode a model
    result = encoder.stream_encode_model(
        "distilbert-base-uncased",
        max_total_params=40000,
        chunk_encoding=False  # Batch encoding
    )

    print(f"Encoded {result['parameter_count']:,} parameters in {result['encoding_time']:.2f}s")
    print(f"Processing rate: {result['parameter_count'] / result['encoding_time']:.0f} params/sec")
    out = capsys.readouterr().out
    assert out.startswith("Encoded 40,000 parameters in ")
    assert result["encoding_method"] == "batch"
    assert result["chunks_encoded"] == 5
    assert result["model_name"] == "distilbert-base-uncased"
    assert result["metadata"]["max_params"] == 40000
    assert pathlib.Path(result["video_path"]).is_file()
    assert isinstance(result["model_id"], int)


def test_advanced_streaming_with_layer_selection(hub, tmp_path, capsys):
    encoder = StreamingHuggingFaceEncoder(
        video_storage_dir=str(tmp_path / "store"), chunk_size=8000, enable_progress=True
    )
    # Stream only attention layers
    result = encoder.stream_encode_model(
        "bert-base-uncased",
        target_layers=["attention"],
        max_total_params=30000,
        chunk_encoding=True  # Each chunk as separate frame
    )
    assert result["parameter_count"] == 30000
    assert result["encoding_method"] == "chunk"
    assert result["frames"] == 4
    assert result["metadata"]["layers"] == "attention"

    # Stream with custom progress tracking
    seen = 0
    for chunk, layer_info, progress in encoder.stream_model_parameters(
        "gpt2",
        target_layers=["mlp", "attention"],
        max_total_params=50000
    ):
        print(f"Processing {layer_info}: {progress.progress_percent:.1f}% complete")
        # Custom processing here
        seen += chunk.size
        assert chunk.dtype == np.float32
        assert progress.total_parameters == 50000
        assert progress.processed_parameters == seen
        assert all(t.role in ("mlp", "attention") for t in layer_info.tensors)
    assert seen == 50000
    assert progress.progress_percent == 100.0
    assert progress.chunks_encoded == 7
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7
    assert lines[-1].endswith(": 100.0% complete")
    assert lines[0].startswith("Processing h.0.")


def test_counts_equal_the_cli_and_stores_are_shared(minilm, tmp_path):
    py_store, cli_store = tmp_path / "py", tmp_path / "cli"
    encoder = StreamingHuggingFaceEncoder(video_storage_dir=str(py_store), chunk_size=5000,
                                          enable_progress=False)
    result = encoder.stream_encode_model(minilm, target_layers=["mlp"], max_total_params=23456)
    out = json.loads(cli("encode", minilm, "--store", str(cli_store), "--chunk-size", "5000",
                         "--chunk-encoding", "--layers", "mlp", "--max-params", "23456",
                         "--json", "-q"))
    totals = out[0]["entry"]["totals"]
    assert result["parameter_count"] == totals["params"] == 23456
    assert result["chunks_encoded"] == totals["chunks"] == 5
    assert result["frames"] == totals["frames"]
    # A store written from Python is read by the CLI, and the other way round.
    listed = json.loads(cli("list", "--store", str(py_store), "--json"))
    # Stored under the directory's name; the path is the entry's source.
    assert [e["name"] for e in listed] == ["all-MiniLM-L6-v2"]
    assert [e["source"] for e in listed] == [minilm]
    other = StreamingHuggingFaceEncoder(video_storage_dir=str(cli_store), enable_progress=False)
    assert len(other.list_encoded_models()) == 1
    stats = other.get_statistics()
    assert stats == json.loads(cli("stats", "--store", str(cli_store), "--json"))


def test_chunks_are_read_only_views_of_a_bounded_buffer(minilm):
    encoder = StreamingHuggingFaceEncoder(chunk_size=4096, enable_progress=False)
    for chunk, _, _ in encoder.stream_model_parameters(minilm, max_total_params=20000):
        assert not chunk.flags.owndata
        assert isinstance(chunk.base, weightreel._native.Buffer)
        assert chunk.base.nbytes == chunk.size * 4 <= 4096 * 4
        with pytest.raises(ValueError):
            chunk[0] = 1.0


def _rchar() -> int:
    for line in pathlib.Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


def test_leaving_the_loop_stops_reading(minilm):
    encoder = StreamingHuggingFaceEncoder(chunk_size=1024, enable_progress=False)
    before = _rchar()
    for chunk, _, _ in encoder.stream_model_parameters(minilm):
        break
    import time
    time.sleep(0.5)
    read = _rchar() - before
    # The whole model is 91 MB; the stream reads ahead at most 8 MiB.
    assert read < 20_000_000, read


def test_values_equal_the_file(minilm):
    # Reference read of the safetensors file, in the test.
    raw = pathlib.Path(minilm, "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    name = "embeddings.position_embeddings.weight"
    lo, hi = header[name]["data_offsets"]
    expected = np.frombuffer(raw[8 + n + lo:8 + n + hi], dtype="<f4")
    encoder = StreamingHuggingFaceEncoder(chunk_size=100_000, enable_progress=False)
    got = []
    for chunk, info, _ in encoder.stream_model_parameters(minilm, target_layers=["embedding"]):
        offset = 0
        for piece in info.tensors:
            if piece.name == name:
                got.append((piece.start, chunk[offset:offset + piece.count].copy()))
            offset += piece.count
    values = np.concatenate([v for _, v in sorted(got, key=lambda g: g[0])])
    assert np.array_equal(values, expected)


def _layer_norms(minilm: str) -> dict:
    """MiniLM's LayerNorm tensors, read from the file here: name -> (shape, bytes)."""
    raw = pathlib.Path(minilm, "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    out = {}
    for k, v in header.items():
        if k != "__metadata__" and "LayerNorm" in k:
            lo, hi = v["data_offsets"]
            out[k] = (v["shape"], raw[8 + n + lo:8 + n + hi])
    return out


def _assert_decodes_layer_norms(encoder, minilm: str) -> None:
    """The stored MiniLM (encoded with `--layers norm`, lossless) decodes bit-exact by name."""
    arrays = encoder.decode("all-MiniLM-L6-v2")
    norms = _layer_norms(minilm)
    assert sorted(arrays) == sorted(norms)
    for k, (_, data) in norms.items():
        assert arrays[k].tobytes() == data, k


def test_decode_is_bit_exact_in_lossless_mode(minilm, tmp_path):
    encoder = StreamingHuggingFaceEncoder(video_storage_dir=str(tmp_path), mode="lossless",
                                          enable_progress=False)
    result = encoder.stream_encode_model(minilm, target_layers=["norm"])
    arrays = encoder.decode(minilm)
    norms = _layer_norms(minilm)
    assert sorted(arrays) == sorted(norms)
    for k, (shape, data) in norms.items():
        assert arrays[k].dtype == np.float32
        assert list(arrays[k].shape) == shape, k
        assert arrays[k].tobytes() == data, k
    # By reel path too.
    assert sorted(encoder.decode(result["video_path"])) == sorted(norms)


def test_search_compare_and_inspect(hub, minilm, tmp_path):
    encoder = StreamingHuggingFaceEncoder(video_storage_dir=str(tmp_path), enable_progress=False)
    encoder.stream_encode_model(minilm, max_total_params=20000)
    encoder.stream_encode_model("gpt2", max_total_params=20000)
    hits = encoder.search_similar(minilm, top_k=5)
    assert [h["name"] for h in hits] == ["gpt2"]
    assert 0.0 <= hits[0]["score"] <= 0.25
    assert hits[0]["method"] == "hybrid"
    same = encoder.compare(minilm, minilm)
    assert same["exact"] == 1.0 and same["coverage"] == 1.0
    assert len(same["tensors"]) == 103
    report = encoder.inspect("gpt2", target_layers=["attention"], max_total_params=1000)
    assert report == json.loads(cli("inspect", "gpt2", "--layers", "attention",
                                    "--max-params", "1000", "--json"))


def test_errors_are_python_exceptions_with_the_cli_message(hub, tmp_path):
    encoder = StreamingHuggingFaceEncoder(video_storage_dir=str(tmp_path), enable_progress=False)
    with pytest.raises(ValueError, match=r"^invalid --mode 'bogus' \(expected u16, lossless, u8\)$"):
        StreamingHuggingFaceEncoder(mode="bogus").stream_encode_model("gpt2")
    with pytest.raises(ValueError, match=r"invalid chunk_size 0"):
        StreamingHuggingFaceEncoder(chunk_size=0)
    with pytest.raises(ValueError, match=r"^invalid --layers"):
        encoder.stream_encode_model("gpt2", target_layers=["nonsense"])
    with pytest.raises(FileNotFoundError):
        encoder.stream_encode_model(str(tmp_path / "no-such-model"))
    with pytest.raises(FileNotFoundError):
        encoder.stream_encode_model("nobody/no-such-repo")
    # The Hub answers a private repo without a token as a missing one (401, RepoNotFound).
    with pytest.raises(FileNotFoundError, match="HTTP 401.*token"):
        encoder.stream_encode_model("weightreel-test/private-model")
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(b"not a reel")
    with pytest.raises(OSError, match=r"^reel "):
        encoder.decode(str(bad))
    # Nothing was stored by any of these.
    assert encoder.list_encoded_models() == []


def test_a_store_with_its_reels_elsewhere_reads_from_python_as_from_the_cli(minilm, tmp_path,
                                                                             monkeypatch):
    monkeypatch.delenv("WEIGHTREEL_REELS", raising=False)
    store, shared = tmp_path / "store", tmp_path / "shared-reels"
    cli("encode", minilm, "--store", str(store), "--reels", f"file://{shared}",
        "--mode", "lossless", "--layers", "norm", "-q")
    assert list((store / "reels").glob("*.mkv")) == []
    # Python is told only the store: the reels are where the store recorded them.
    encoder = StreamingHuggingFaceEncoder(video_storage_dir=str(store), enable_progress=False)
    [entry] = encoder.list_encoded_models()
    reel = shared / entry["totals"]["reel_file"].removeprefix("reels/")
    assert reel.is_file()
    _assert_decodes_layer_norms(encoder, minilm)
    # An encode from Python goes to the same place.
    encoder.stream_encode_model(minilm, target_layers=["attention"], max_total_params=20000)
    assert len(list(shared.glob("*.mkv"))) == 2
    assert list((store / "reels").glob("*.mkv")) == []


def test_a_postgres_store_is_used_from_python_as_from_the_cli(minilm, postgres, tmp_path,
                                                              monkeypatch):
    shared = tmp_path / "shared-reels"
    monkeypatch.setenv("WEIGHTREEL_WORK", str(tmp_path / "work"))
    monkeypatch.delenv("WEIGHTREEL_REELS", raising=False)
    # The first encode, from the CLI, says where the reels go; the store records it.
    cli("encode", minilm, "--store", postgres, "--reels", f"file://{shared}",
        "--mode", "lossless", "--layers", "norm", "-q")
    # Python is given only the registry URL as its storage_dir.
    encoder = StreamingHuggingFaceEncoder(video_storage_dir=postgres, enable_progress=False)
    [entry] = encoder.list_encoded_models()
    assert entry["name"] == "all-MiniLM-L6-v2"
    _assert_decodes_layer_norms(encoder, minilm)
    # An encode from Python commits to the same registry, its reel beside the first.
    encoder.stream_encode_model(minilm, target_layers=["attention"], max_total_params=20000)
    listed = json.loads(cli("list", "--store", postgres, "--json"))
    assert len(listed) == 2
    assert len(list(shared.glob("*.mkv"))) == 2
    assert encoder.get_statistics()["encoded_models"] == 2
    # The password is never printed, from Python either.
    secret = postgres.replace("weightreel@", "weightreel:s3cret@").replace("/weightreel", "/nodb")
    with pytest.raises(Exception) as failure:
        StreamingHuggingFaceEncoder(video_storage_dir=secret,
                                    enable_progress=False).list_encoded_models()
    assert "s3cret" not in str(failure.value)
