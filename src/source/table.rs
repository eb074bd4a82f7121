//! What every weight format's reader produces: one file's table of tensors, each a byte range of
//! the file plus how its bytes become values ([`Encoding`]). Everything after the source stage
//! (selection, stream, inspect) sees only this, so a PyTorch storage, a safetensors entry and a
//! GGUF block run are planned and read the same way.

use std::collections::BTreeMap;

use safetensors::Dtype;

use super::gguf::GgmlType;
use super::header::Header;
use super::model::SkippedTensor;

/// The container a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// A `.safetensors` file.
    Safetensors,
    /// A `torch.save` zip archive (torch ≥ 1.6).
    PyTorchZip,
    /// A `torch.save` file of the legacy format (before torch 1.6).
    PyTorchLegacy,
    /// A GGUF file of this version.
    Gguf(u32),
}

impl FileFormat {
    /// Short name: `safetensors`, `pytorch zip`, `pytorch legacy`, `gguf v3`.
    pub fn name(self) -> String {
        match self {
            FileFormat::Safetensors => "safetensors".into(),
            FileFormat::PyTorchZip => "pytorch zip".into(),
            FileFormat::PyTorchLegacy => "pytorch legacy".into(),
            FileFormat::Gguf(v) => format!("gguf v{v}"),
        }
    }
}

/// How a tensor's stored bytes become values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Encoding {
    /// Little-endian elements of the tensor's dtype, one after another.
    Plain,
    /// GGML quantization blocks of this type, dequantized to f32 (the tensor's dtype is F32).
    Blocks(GgmlType),
}

impl Encoding {
    /// Values per block and bytes per block: one element for plain data.
    pub fn block(self, dtype: Dtype) -> (u64, u64) {
        match self {
            Encoding::Plain => (1, (dtype.bitsize() / 8).max(1) as u64),
            Encoding::Blocks(t) => t.block(),
        }
    }

    /// The stored type's name: the dtype (`F32`, `BF16`) or the quantization (`Q4_1`).
    pub fn stored_type(self, dtype: Dtype) -> String {
        match self {
            Encoding::Plain => format!("{dtype:?}"),
            Encoding::Blocks(t) => t.name().to_string(),
        }
    }
}

/// One tensor of a file, checked by its reader: `byte_len` bytes at `offset` hold exactly its
/// values in `encoding`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableTensor {
    /// Name, flattened (`encoder.layer.0.attention.self.query.weight`, `blk.0.attn_q.weight`).
    pub name: String,
    /// The type the values are delivered in (F32 for dequantized blocks).
    pub dtype: Dtype,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Absolute byte offset of its first byte in the file.
    pub offset: u64,
    /// Bytes it occupies.
    pub byte_len: u64,
    /// How the bytes become values.
    pub encoding: Encoding,
}

/// One file's tensors, as read by its format's reader.
#[derive(Debug, Clone)]
pub struct FileTable {
    /// The container.
    pub format: FileFormat,
    /// Bytes of headers, tables and pickles (everything but tensor data).
    pub header_bytes: u64,
    /// Metadata worth showing: the safetensors `__metadata__`, GGUF's `general.*` and context
    /// length, the quantization mix.
    pub metadata: BTreeMap<String, String>,
    /// Tensors that can be streamed or skipped by name, in offset order.
    pub tensors: Vec<TableTensor>,
    /// Tensors the reader lists but cannot stream (an unknown quantization, a strided view).
    pub skipped: Vec<SkippedTensor>,
}

impl FileTable {
    /// Tensors in the file, streamable or not.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len() + self.skipped.len()
    }
}

impl From<Header> for FileTable {
    fn from(header: Header) -> FileTable {
        FileTable {
            format: FileFormat::Safetensors,
            header_bytes: header.json_len,
            metadata: header.metadata.unwrap_or_default().into_iter().collect(),
            tensors: header
                .tensors
                .into_iter()
                .map(|t| TableTensor {
                    name: t.name,
                    dtype: t.dtype,
                    shape: t.shape,
                    offset: t.offset,
                    byte_len: t.byte_len,
                    encoding: Encoding::Plain,
                })
                .collect(),
            skipped: Vec::new(),
        }
    }
}
