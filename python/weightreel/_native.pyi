"""The Rust core of weightreel (see the package's docstrings for the public API)."""

from typing import Any, Iterator, List, Optional, Tuple

__version__: str

class Buffer:
    """Bytes numpy wraps without copying (``numpy.asarray(buffer)``)."""
    @property
    def __array_interface__(self) -> dict: ...
    @property
    def nbytes(self) -> int: ...

class TensorPiece:
    name: str
    shape: List[int]
    role: str
    layer: Optional[int]
    start: int
    count: int

class LayerInfo:
    @property
    def tensors(self) -> List[TensorPiece]: ...
    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> List[int]: ...

class Progress:
    model_name: str
    total_parameters: int
    model_parameters: int
    processed_parameters: int
    current_layer: str
    chunks_encoded: int
    encoding_time: float
    progress_percent: float

class ChunkStream(Iterator[Tuple[Buffer, LayerInfo, Progress]]):
    def __next__(self) -> Tuple[Buffer, LayerInfo, Progress]: ...
    def close(self) -> None: ...

def encode(model: str, storage_dir: str, chunk_size: int, target_layers: Optional[List[str]] = ..., max_total_params: Optional[int] = ..., chunk_encoding: bool = ..., mode: str = ..., progress: bool = ..., revision: str = ..., token: Optional[str] = ..., offline: bool = ...) -> str: ...
def list_models(storage_dir: str) -> str: ...
def statistics(storage_dir: str) -> str: ...
def inspect(model: str, target_layers: Optional[List[str]] = ..., max_total_params: Optional[int] = ..., revision: str = ..., token: Optional[str] = ..., offline: bool = ...) -> str: ...
def search_similar(storage_dir: str, model: str, top_k: int = ..., method: str = ..., revision: str = ..., token: Optional[str] = ..., offline: bool = ...) -> str: ...
def compare(storage_dir: str, a: str, b: str, revision: str = ..., token: Optional[str] = ..., offline: bool = ...) -> str: ...
def stream_parameters(model: str, chunk_size: int, target_layers: Optional[List[str]] = ..., max_total_params: Optional[int] = ..., revision: str = ..., token: Optional[str] = ..., offline: bool = ...) -> ChunkStream: ...
def decode(reel_or_name: str, storage_dir: str) -> List[Tuple[str, Buffer]]: ...
