//! Stage 1 of the pipeline: getting parameters out of a model without holding the model.
//!
//! - [`bytes`]: random-access byte sources (local `pread`, HTTP `Range`).
//! - [`table`]: what every format's reader produces, a file's tensors as byte ranges.
//! - [`header`]: the safetensors header, read and checked on its own.
//! - [`pytorch`]: `torch.save` files (zip and legacy), through a restricted unpickler.
//! - [`gguf`]: GGUF headers and tensor tables; [`dequant`] turns GGML blocks into f32.
//! - [`memory`]: a byte source over bytes in memory (fuzzing, tests).
//! - [`model`]: locating a model (file, directory, HF cache, Hub) and ordering its tensors.
//! - [`naming`]: the name a model is stored under (repo id, else directory or file name).
//! - [`convert`]: element types to f32.
//! - [`hub`]: the Hub client (feature `hub`).

pub mod bytes;
pub mod cache;
pub mod convert;
pub mod dequant;
pub mod gguf;
pub mod header;
#[cfg(feature = "hub")]
pub mod hub;
pub mod memory;
pub mod model;
pub mod naming;
pub mod pytorch;
pub mod table;

pub use bytes::{ByteSource, LocalFile, ReadStats};
pub use memory::MemorySource;
pub use model::{
    HubSettings, Model, ModelConfig, OpenOptions, Origin, SkippedTensor, TensorInfo, WeightFormat,
};
