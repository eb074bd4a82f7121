"""weightreel: stream Hugging Face model weights tensor by tensor into lossless video reels,
and find which stored models are related — the Rust library's Python face.

The streaming guide's API with its names and defaults::

    from weightreel import StreamingHuggingFaceEncoder

    encoder = StreamingHuggingFaceEncoder(video_storage_dir="my_streaming_models",
                                          chunk_size=8000, enable_progress=True)
    result = encoder.stream_encode_model("distilbert-base-uncased", max_total_params=40000,
                                         chunk_encoding=False)

Errors are the CLI's one-line messages: ``ValueError`` for bad arguments,
``FileNotFoundError`` for a missing model or store, ``PermissionError`` for HTTP 401/403,
``OSError`` for other I/O and HTTP failures; Ctrl-C raises ``KeyboardInterrupt`` and an
interrupted encode keeps its complete frames for a resume, as the CLI does.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import _native
from ._native import LayerInfo, Progress, TensorPiece

__all__ = [
    "StreamingHuggingFaceEncoder",
    "LayerInfo",
    "Progress",
    "TensorPiece",
    "DEFAULT_STORE_DIR",
    "DEFAULT_CHUNK_SIZE",
    "__version__",
]

__version__: str = _native.__version__

#: The store used when none is given (and ``$WEIGHTREEL_STORE`` is unset), as the CLI's.
DEFAULT_STORE_DIR = "weightreel_store"
#: Values per chunk, as the CLI's ``--chunk-size`` default.
DEFAULT_CHUNK_SIZE = 8192


def _store(path: Optional[str]) -> str:
    if path:
        return os.fspath(path)
    return os.environ.get("WEIGHTREEL_STORE") or DEFAULT_STORE_DIR


def _layers(target_layers: Optional[Sequence[str]]) -> Optional[List[str]]:
    if target_layers is None:
        return None
    if isinstance(target_layers, str):
        return [target_layers]
    return list(target_layers)


class StreamingHuggingFaceEncoder:
    """Streams models into a store of lossless reels (the guide's encoder).

    ``video_storage_dir`` is the store directory (created when first written); ``chunk_size``
    the values per chunk; ``enable_progress`` shows the CLI's progress on stderr. ``mode`` is
    ``"u16"`` (default), ``"lossless"`` or ``"u8"``; ``revision``, ``token`` and ``offline``
    are as the CLI's ``--revision``, ``--token`` (default ``$HF_TOKEN``) and ``--offline``.
    """

    def __init__(
        self,
        video_storage_dir: Optional[str] = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        enable_progress: bool = True,
        mode: str = "u16",
        revision: str = "main",
        token: Optional[str] = None,
        offline: bool = False,
    ) -> None:
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ValueError(
                f"invalid chunk_size {chunk_size!r} (expected a whole number >= 1)"
            )
        self.video_storage_dir = _store(video_storage_dir)
        self.chunk_size = chunk_size
        self.enable_progress = enable_progress
        self.mode = mode
        self.revision = revision
        self.token = token
        self.offline = offline

    def _hub(self) -> Dict[str, Any]:
        return {"revision": self.revision, "token": self.token, "offline": self.offline}

    def stream_encode_model(
        self,
        model_name: str,
        target_layers: Optional[Sequence[str]] = None,
        max_total_params: Optional[int] = None,
        chunk_encoding: bool = True,
    ) -> Dict[str, Any]:
        """Stream ``model_name`` (Hub repo id, directory, file or cache entry) into the store.

        Returns the CLI's figures: ``model_name``, ``model_id`` (registry id),
        ``parameter_count``, ``encoding_time`` (s), ``chunks_encoded``, ``frames``,
        ``encoding_method`` (``"chunk"`` or ``"batch"``, as run), ``metadata`` (the settings),
        ``encoded_timestamp``, ``video_path`` (the reel), ``processing_rate`` and more.
        """
        outcome = json.loads(
            _native.encode(
                model_name,
                self.video_storage_dir,
                self.chunk_size,
                _layers(target_layers),
                max_total_params,
                bool(chunk_encoding),
                self.mode,
                bool(self.enable_progress),
                **self._hub(),
            )
        )
        entry = outcome["entry"]
        totals = entry["totals"]
        settings = entry["settings"]
        return {
            "model_name": entry["name"],
            "model_id": outcome["id"],
            "parameter_count": totals["params"],
            "encoding_time": totals["encoding_secs"],
            "chunks_encoded": totals["chunks"],
            "frames": totals["frames"],
            "encoding_method": settings["method"],
            "metadata": settings,
            "encoded_timestamp": entry["created_at"],
            "video_path": outcome["reel"],
            "reel_path": outcome["reel"],
            "processing_rate": totals["params_per_sec"],
            "bytes_read": totals["bytes_read"],
            "peak_rss_bytes": totals["peak_rss_bytes"],
            "reel_bytes": totals["reel_bytes"],
            "source": entry["source"],
            "model_type": entry["model_type"],
            "replaced": outcome["replaced"],
        }

    def stream_model_parameters(
        self,
        model_name: str,
        target_layers: Optional[Sequence[str]] = None,
        max_total_params: Optional[int] = None,
    ) -> Iterator[Tuple[np.ndarray, LayerInfo, Progress]]:
        """Yield ``(chunk, layer_info, progress)`` for every ``chunk_size`` values selected.

        ``chunk`` is a read-only float32 array over the library's buffer (no copy);
        ``layer_info`` names the tensor(s) and shapes in it; ``progress`` has ``model_name``,
        ``total_parameters`` (values selected, exact from the headers), ``model_parameters``,
        ``processed_parameters``, ``current_layer``, ``chunks_encoded``, ``encoding_time`` and
        ``progress_percent``. Leaving the loop stops reading.
        """
        stream = _native.stream_parameters(
            model_name, self.chunk_size, _layers(target_layers), max_total_params, **self._hub()
        )
        try:
            for buffer, info, progress in stream:
                yield np.asarray(buffer), info, progress
        finally:
            stream.close()

    def list_encoded_models(self) -> List[Dict[str, Any]]:
        """The store's entries, as ``weightreel list --json``."""
        return json.loads(_native.list_models(self.video_storage_dir))

    def get_statistics(self) -> Dict[str, Any]:
        """The store's statistics, as ``weightreel stats --json``."""
        return json.loads(_native.statistics(self.video_storage_dir))

    def inspect(
        self,
        model_name: str,
        target_layers: Optional[Sequence[str]] = None,
        max_total_params: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Headers only: the tensors and what a selection would read (``inspect --json``)."""
        return json.loads(
            _native.inspect(model_name, _layers(target_layers), max_total_params, **self._hub())
        )

    def decode(self, reel_or_name: str) -> Dict[str, np.ndarray]:
        """A reel (path, or a stored model's name: its newest entry) back as arrays by tensor
        name, in their dtype (BF16 as float32, exactly); bit-exact for lossless reels."""
        out: Dict[str, np.ndarray] = {}
        for name, buffer in _native.decode(os.fspath(reel_or_name), self.video_storage_dir):
            out[name] = np.asarray(buffer)
        return out

    def search_similar(
        self, model: str, top_k: int = 10, method: str = "hybrid"
    ) -> List[Dict[str, Any]]:
        """The stored models most related to ``model`` (a stored name or any source), best
        first: ``name``, ``score``, ``method``, ``exact``, ``features``, ``coverage``, …"""
        result = json.loads(
            _native.search_similar(self.video_storage_dir, model, top_k, method, **self._hub())
        )
        return result["hits"]

    def compare(self, a: str, b: str) -> Dict[str, Any]:
        """Two models compared: scores and the per-tensor similarity and relative change."""
        return json.loads(_native.compare(self.video_storage_dir, a, b, **self._hub()))
