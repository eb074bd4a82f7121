//! Reading a GGUF file's header, metadata and tensor table (versions 2 and 3) without touching
//! tensor data.
//!
//! Layout (from ggml's `docs/gguf.md`), all little-endian: the magic `GGUF`, a `u32` version, a
//! `u64` tensor count and a `u64` metadata count; then the metadata key/values (a key is a `u64`
//! length and UTF-8 bytes, a value a `u32` type and its payload, arrays nested); then per tensor
//! its name, `u32` dimension count, `u64` dimensions (fastest first), `u32` GGML type and `u64`
//! offset into the data section, which starts at the next multiple of `general.alignment`
//! (default 32) after the table.
//!
//! The header has no length field, so it is read front to back through [`HeaderCursor`], whose
//! reads double in size: a remote file's header takes a few range requests even when its
//! tokenizer vocabulary is megabytes long. Quantized tensors become [`Encoding::Blocks`]: a
//! sub-range of their values is read as the whole blocks that cover it and dequantized by
//! [`super::dequant`].

use std::collections::{BTreeMap, HashSet};

use safetensors::Dtype;

use super::bytes::ByteSource;
use super::model::SkippedTensor;
use super::table::{Encoding, FileFormat, FileTable, TableTensor};
use crate::error::{Error, Result};

/// `GGUF` as a little-endian `u32`.
const MAGIC: &[u8; 4] = b"GGUF";
/// Longest string (key, value, tensor name) accepted: real vocabularies hold short tokens, and
/// chat templates are a few KB.
const MAX_STRING: u64 = 16 << 20;
/// Most tensors and metadata entries one file may list.
const MAX_ENTRIES: u64 = 1 << 20;
/// Deepest nesting of metadata arrays.
const MAX_ARRAY_DEPTH: u32 = 4;
/// Largest header (metadata and table) read.
const MAX_HEADER: u64 = 1 << 30;
/// The first read; each further one doubles, up to [`MAX_STEP`].
const FIRST_READ: u64 = 256 * 1024;
const MAX_STEP: u64 = 16 << 20;
/// Most dimensions of one tensor (ggml's `GGML_MAX_DIMS` is 4).
const MAX_DIMS: u32 = 8;

/// A GGML tensor type, by its id in the GGUF tensor table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[allow(non_camel_case_types, missing_docs)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// Values per super-block of the K-quants.
const QK_K: u64 = 256;

impl GgmlType {
    /// Every type, with its id, name, values per block and bytes per block (ggml's
    /// `GGML_QUANT_SIZES`).
    const TABLE: [(GgmlType, u32, &'static str, u64, u64); 32] = [
        (GgmlType::F32, 0, "F32", 1, 4),
        (GgmlType::F16, 1, "F16", 1, 2),
        (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
        (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
        (GgmlType::Q5_0, 6, "Q5_0", 32, 22),
        (GgmlType::Q5_1, 7, "Q5_1", 32, 24),
        (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
        (GgmlType::Q8_1, 9, "Q8_1", 32, 40),
        (GgmlType::Q2_K, 10, "Q2_K", QK_K, 84),
        (GgmlType::Q3_K, 11, "Q3_K", QK_K, 110),
        (GgmlType::Q4_K, 12, "Q4_K", QK_K, 144),
        (GgmlType::Q5_K, 13, "Q5_K", QK_K, 176),
        (GgmlType::Q6_K, 14, "Q6_K", QK_K, 210),
        (GgmlType::Q8_K, 15, "Q8_K", QK_K, 292),
        (GgmlType::IQ2_XXS, 16, "IQ2_XXS", QK_K, 66),
        (GgmlType::IQ2_XS, 17, "IQ2_XS", QK_K, 74),
        (GgmlType::IQ3_XXS, 18, "IQ3_XXS", QK_K, 98),
        (GgmlType::IQ1_S, 19, "IQ1_S", QK_K, 50),
        (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 18),
        (GgmlType::IQ3_S, 21, "IQ3_S", QK_K, 110),
        (GgmlType::IQ2_S, 22, "IQ2_S", QK_K, 82),
        (GgmlType::IQ4_XS, 23, "IQ4_XS", QK_K, 136),
        (GgmlType::I8, 24, "I8", 1, 1),
        (GgmlType::I16, 25, "I16", 1, 2),
        (GgmlType::I32, 26, "I32", 1, 4),
        (GgmlType::I64, 27, "I64", 1, 8),
        (GgmlType::F64, 28, "F64", 1, 8),
        (GgmlType::IQ1_M, 29, "IQ1_M", QK_K, 56),
        (GgmlType::BF16, 30, "BF16", 1, 2),
        (GgmlType::TQ1_0, 34, "TQ1_0", QK_K, 54),
        (GgmlType::TQ2_0, 35, "TQ2_0", QK_K, 66),
        (GgmlType::MXFP4, 39, "MXFP4", 32, 17),
    ];

    fn row(self) -> &'static (GgmlType, u32, &'static str, u64, u64) {
        GgmlType::TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every type is in the table")
    }

    /// The type with this id.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }

    /// Its name as ggml spells it (`Q4_K`).
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Values per block and bytes per block.
    pub fn block(self) -> (u64, u64) {
        let r = self.row();
        (r.3, r.4)
    }

    /// How weightreel reads it: as plain elements of a dtype, as dequantized blocks, or not.
    pub fn encoding(self) -> Option<(Dtype, Encoding)> {
        use GgmlType::*;
        Some(match self {
            F32 => (Dtype::F32, Encoding::Plain),
            F16 => (Dtype::F16, Encoding::Plain),
            BF16 => (Dtype::BF16, Encoding::Plain),
            F64 => (Dtype::F64, Encoding::Plain),
            I8 => (Dtype::I8, Encoding::Plain),
            I16 => (Dtype::I16, Encoding::Plain),
            I32 => (Dtype::I32, Encoding::Plain),
            I64 => (Dtype::I64, Encoding::Plain),
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K => {
                (Dtype::F32, Encoding::Blocks(self))
            }
            _ => return None,
        })
    }
}

/// Reads a header front to back from a [`ByteSource`], in reads that double in size; bytes
/// already parsed are dropped, so memory stays at about the last read.
pub struct HeaderCursor<'a> {
    source: &'a dyn ByteSource,
    buf: Vec<u8>,
    buf_start: u64,
    pos: u64,
    step: u64,
    limit: u64,
}

impl<'a> HeaderCursor<'a> {
    /// A cursor at byte 0 that refuses to read past `limit` bytes.
    pub fn new(source: &'a dyn ByteSource, first_read: u64, limit: u64) -> Self {
        HeaderCursor {
            source,
            buf: Vec::new(),
            buf_start: 0,
            pos: 0,
            step: first_read,
            limit: limit.min(source.len()),
        }
    }

    /// Where the next byte comes from.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next `n` bytes, or an error saying what was being read when the file (or the
    /// header limit) ended.
    pub fn take(&mut self, n: u64, what: &str) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.limit);
        let Some(end) = end else {
            let file_len = self.source.len();
            return Err(Error::header(
                self.source.name(),
                if self.limit < file_len {
                    format!(
                        "header is larger than the {}-byte limit (at {what})",
                        self.limit
                    )
                } else {
                    format!(
                        "file is truncated: {what} at byte {} needs {n} bytes but the file has {file_len}",
                        self.pos
                    )
                },
            ));
        };
        let have = self.buf_start + self.buf.len() as u64;
        if end > have {
            // Keep only the unparsed bytes, then read at least `step` more.
            let consumed = (self.pos - self.buf_start) as usize;
            self.buf.drain(..consumed.min(self.buf.len()));
            self.buf_start = self.pos;
            let have = self.buf_start + self.buf.len() as u64;
            let read_end = (have + (end - have).max(self.step)).min(self.limit);
            let mut more = vec![0u8; (read_end - have) as usize];
            self.source.read_at(have, &mut more)?;
            self.buf.extend_from_slice(&more);
            self.step = (self.step * 2).min(MAX_STEP);
        }
        let at = (self.pos - self.buf_start) as usize;
        self.pos = end;
        Ok(&self.buf[at..at + n as usize])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        if len > MAX_STRING {
            return Err(Error::header(
                self.source.name(),
                format!("{what} has length {len}, more than the {MAX_STRING}-byte limit"),
            ));
        }
        let name = self.source.name().to_string();
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::header(name, format!("{what} is not valid UTF-8")))
    }
}

/// A metadata value worth keeping: scalars, short strings; arrays by their length.
fn read_value(
    cursor: &mut HeaderCursor<'_>,
    value_type: u32,
    key: &str,
    depth: u32,
) -> Result<Option<String>> {
    let what = format!("metadata '{key}'");
    let fixed = |t: u32| -> Option<u64> {
        Some(match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            _ => return None,
        })
    };
    Ok(match value_type {
        0 => Some(cursor.take(1, &what)?[0].to_string()),
        1 => Some((cursor.take(1, &what)?[0] as i8).to_string()),
        2 => Some(u16::from_le_bytes(cursor.take(2, &what)?.try_into().expect("2")).to_string()),
        3 => Some(i16::from_le_bytes(cursor.take(2, &what)?.try_into().expect("2")).to_string()),
        4 => Some(cursor.u32(&what)?.to_string()),
        5 => Some((cursor.u32(&what)? as i32).to_string()),
        6 => Some(f32::from_bits(cursor.u32(&what)?).to_string()),
        7 => Some((cursor.take(1, &what)?[0] != 0).to_string()),
        8 => Some(cursor.string(&what)?),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(Error::header(
                    cursor.source.name(),
                    format!("{what}: arrays nest deeper than {MAX_ARRAY_DEPTH}"),
                ));
            }
            let item_type = cursor.u32(&what)?;
            let count = cursor.u64(&what)?;
            match fixed(item_type) {
                // Fixed-size items are skipped in one take (bounded by the file).
                Some(size) => {
                    let bytes = count.checked_mul(size).ok_or_else(|| {
                        Error::header(cursor.source.name(), format!("{what}: array overflows"))
                    })?;
                    skip(cursor, bytes, &what)?;
                }
                None => {
                    // Every string or array item takes at least 8 bytes, so a count the file
                    // cannot hold is refused before the loop.
                    let left = cursor.limit.saturating_sub(cursor.position());
                    if count > left / 8 {
                        return Err(Error::header(
                            cursor.source.name(),
                            format!("{what}: array of {count} items does not fit in the file"),
                        ));
                    }
                    for _ in 0..count {
                        read_value(cursor, item_type, key, depth + 1)?;
                    }
                }
            }
            Some(format!("[{count} items]"))
        }
        10 => Some(cursor.u64(&what)?.to_string()),
        11 => Some((cursor.u64(&what)? as i64).to_string()),
        12 => Some(f64::from_bits(cursor.u64(&what)?).to_string()),
        t => {
            return Err(Error::header(
                cursor.source.name(),
                format!("{what} has unknown value type {t}"),
            ))
        }
    })
}

/// Skip `n` bytes in reads of at most [`MAX_STEP`].
fn skip(cursor: &mut HeaderCursor<'_>, mut n: u64, what: &str) -> Result<()> {
    while n > 0 {
        let step = n.min(MAX_STEP);
        cursor.take(step, what)?;
        n -= step;
    }
    Ok(())
}

/// Metadata keys shown by `inspect` (besides `general.*` scalars): `{arch}.` plus these.
const ARCH_KEYS: [&str; 4] = [
    "context_length",
    "embedding_length",
    "block_count",
    "attention.head_count",
];

/// Read and check the header and tensor table of a GGUF file.
pub fn read_gguf(source: &dyn ByteSource) -> Result<FileTable> {
    let file = source.name().to_string();
    let mut cursor = HeaderCursor::new(source, FIRST_READ, MAX_HEADER);
    let magic = cursor.take(4, "the magic number")?;
    if magic != MAGIC {
        return Err(Error::header(
            &file,
            format!("not a GGUF file: it starts with {magic:02x?}, not 'GGUF'"),
        ));
    }
    let version = cursor.u32("the version")?;
    if version != 2 && version != 3 {
        return Err(Error::header(
            &file,
            format!("unsupported GGUF version {version} (expected 2 or 3)"),
        ));
    }
    let tensor_count = cursor.u64("the tensor count")?;
    let kv_count = cursor.u64("the metadata count")?;
    for (what, n) in [("tensors", tensor_count), ("metadata entries", kv_count)] {
        if n > MAX_ENTRIES {
            return Err(Error::header(
                &file,
                format!(
                    "header lists {n} {what}, more than the {MAX_ENTRIES} this weightreel reads"
                ),
            ));
        }
    }
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    let mut alignment: u64 = 32;
    for _ in 0..kv_count {
        let key = cursor.string("a metadata key")?;
        let value_type = cursor.u32("a metadata type")?;
        let value = read_value(&mut cursor, value_type, &key, 0)?;
        if key == "general.alignment" {
            let a = value.as_deref().and_then(|v| v.parse::<u64>().ok());
            match a {
                Some(a) if a > 0 && a.is_power_of_two() && value_type == 4 => alignment = a,
                _ => {
                    return Err(Error::header(
                        &file,
                        format!(
                            "general.alignment {} is not a power of two (u32)",
                            value.unwrap_or_default()
                        ),
                    ))
                }
            }
        }
        if let Some(v) = value.filter(|v| v.len() <= 256) {
            all.insert(key, v);
        }
    }
    let mut raw = Vec::with_capacity(tensor_count.min(4096) as usize);
    for _ in 0..tensor_count {
        let name = cursor.string("a tensor name")?;
        let n_dims = cursor.u32("a tensor's dimension count")?;
        if n_dims > MAX_DIMS {
            return Err(Error::tensor(
                &file,
                &name,
                format!("has {n_dims} dimensions, more than {MAX_DIMS}"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(cursor.u64("a tensor dimension")?);
        }
        let type_id = cursor.u32("a tensor type")?;
        let offset = cursor.u64("a tensor offset")?;
        raw.push((name, dims, type_id, offset));
    }
    let table_end = cursor.position();
    let data_start = table_end.div_ceil(alignment) * alignment;
    let file_len = source.len();
    let mut tensors = Vec::new();
    let mut skipped = Vec::new();
    let mut names = HashSet::new();
    let mut mix: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (name, dims, type_id, offset) in raw {
        if !names.insert(name.clone()) {
            return Err(Error::tensor(&file, &name, "is listed twice"));
        }
        let numel = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= usize::MAX as u64)
            .ok_or_else(|| Error::tensor(&file, &name, format!("dimensions {dims:?} overflow")))?;
        // ggml lists the fastest dimension first; row-major shapes list it last.
        let shape: Vec<usize> = dims.iter().rev().map(|&d| d as usize).collect();
        let Some(ggml) = GgmlType::from_id(type_id) else {
            skipped.push(SkippedTensor {
                name,
                stored_at: None,
                dtype: format!("type {type_id}"),
                shape,
                reason: format!("unknown GGML type id {type_id}"),
            });
            continue;
        };
        *mix.entry(ggml.name()).or_default() += 1;
        let (block_values, block_bytes) = ggml.block();
        let row = dims.first().copied().unwrap_or(1);
        if row % block_values != 0 {
            return Err(Error::tensor(
                &file,
                &name,
                format!(
                    "rows of {row} values are not a whole number of {} blocks ({block_values} values each)",
                    ggml.name()
                ),
            ));
        }
        if offset % alignment != 0 {
            return Err(Error::tensor(
                &file,
                &name,
                format!("data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        let byte_len = (numel / block_values)
            .checked_mul(block_bytes)
            .ok_or_else(|| Error::tensor(&file, &name, format!("dimensions {dims:?} overflow")))?;
        let begin = data_start.checked_add(offset);
        let end = begin.and_then(|b| b.checked_add(byte_len));
        match (begin, end) {
            (Some(begin), Some(end)) if end <= file_len => {
                let Some((dtype, encoding)) = ggml.encoding() else {
                    skipped.push(SkippedTensor {
                        name,
                        stored_at: None,
                        dtype: ggml.name().into(),
                        shape,
                        reason: format!("GGML type {} is not dequantized yet", ggml.name()),
                    });
                    continue;
                };
                tensors.push(TableTensor {
                    name,
                    dtype,
                    shape,
                    offset: begin,
                    byte_len,
                    encoding,
                });
            }
            _ => {
                return Err(Error::tensor(
                    &file,
                    &name,
                    format!(
                        "data at offset {offset} ({byte_len} bytes of {}) runs past the end of the file ({file_len} bytes)",
                        ggml.name()
                    ),
                ))
            }
        }
    }
    tensors.sort_by(|a, b| a.offset.cmp(&b.offset).then_with(|| a.name.cmp(&b.name)));
    for pair in tensors.windows(2) {
        if pair[1].offset < pair[0].offset + pair[0].byte_len {
            return Err(Error::tensor(
                &file,
                &pair[1].name,
                format!("data overlaps tensor '{}'", pair[0].name),
            ));
        }
    }
    let arch = all.get("general.architecture").cloned();
    let metadata: BTreeMap<String, String> = all
        .into_iter()
        .filter(|(k, v)| {
            let kept_general = k.starts_with("general.") && !v.starts_with('[');
            let kept_arch = arch.as_ref().is_some_and(|a| {
                k.strip_prefix(a.as_str())
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|rest| ARCH_KEYS.contains(&rest))
            });
            kept_general || kept_arch
        })
        .chain(std::iter::once((
            "quantization mix".to_string(),
            mix.iter()
                .map(|(t, n)| format!("{t} ×{n}"))
                .collect::<Vec<_>>()
                .join(", "),
        )))
        .collect();
    Ok(FileTable {
        format: FileFormat::Gguf(version),
        header_bytes: data_start,
        metadata,
        tensors,
        skipped,
    })
}
