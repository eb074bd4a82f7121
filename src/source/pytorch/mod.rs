//! PyTorch checkpoints (`torch.save`): `pytorch_model.bin`, `*.pth`, `*.pt`, read without torch
//! and without running the pickle's code.
//!
//! - The zip format (torch ≥ 1.6): an archive `<name>/data.pkl`, `<name>/byteorder`,
//!   `<name>/data/<key>` per storage, all stored uncompressed. [`zip`] reads the central
//!   directory from the file's end; each storage is then a byte range of the file.
//! - The legacy format (before 1.6): five pickles one after another — magic number, protocol
//!   version, system info, the object, the list of storage keys — then each storage as an
//!   8-byte element count and its bytes, in key order. The storages' offsets follow from the
//!   element counts the pickle gives, so only the pickles (at the file's start) are read.
//!
//! In both, [`pickle`] builds the object with an allow-list of globals; the state dict is then
//! flattened to tensor names (`{"state_dict": …}` and `{"model": …}` wrappers are unwrapped,
//! DataParallel's `module.` prefix is dropped), and each tensor becomes a byte range of its
//! storage. Non-contiguous views are listed as skipped, by name.

pub mod pickle;
pub mod zip;

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use safetensors::Dtype;

use self::pickle::{unpickle, PickleError, StorageRef, TensorRef, Value};
use super::bytes::ByteSource;
use super::model::SkippedTensor;
use super::table::{Encoding, FileFormat, FileTable, TableTensor};
use crate::error::{Error, Result};

/// The first read: the zip's `data.pkl` (its first entry) or a legacy file's pickles usually
/// fit.
const HEAD: u64 = 32 * 1024;
/// Largest pickle read (a state dict's pickle is about 200 bytes per tensor).
pub const MAX_PICKLE: u64 = 64 << 20;
/// Deepest nesting of dicts flattened into tensor names.
const MAX_DEPTH: usize = 32;
/// Keys whose dict is the state dict of a training checkpoint.
const WRAPPERS: [&str; 5] = ["state_dict", "model_state_dict", "model", "module", "net"];
/// The legacy format's magic number, as pickled (a 10-byte little-endian int).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Read the tensor table of a `torch.save` file.
pub fn read_pytorch(source: &dyn ByteSource) -> Result<FileTable> {
    let file = source.name();
    let mut head = vec![0u8; HEAD.min(source.len()) as usize];
    source.read_at(0, &mut head)?;
    if head.starts_with(b"PK\x03\x04") {
        read_zip(source, &head)
    } else if head.starts_with(b"\x80") {
        read_legacy(source, head)
    } else {
        Err(Error::header(
            file,
            "not a PyTorch checkpoint: it is neither a zip archive nor a pickle",
        ))
    }
}

fn pickle_error(file: &str, entry: &str, e: PickleError) -> Error {
    Error::header(file, format!("{entry}: {e}"))
}

fn read_zip(source: &dyn ByteSource, head: &[u8]) -> Result<FileTable> {
    let file = source.name();
    let archive = zip::read_archive(source)?;
    let pkl = archive
        .entries
        .keys()
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .min()
        .cloned()
        .ok_or_else(|| {
            Error::header(
                file,
                "zip archive has no data.pkl: not a torch.save checkpoint",
            )
        })?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let byteorder = format!("{prefix}byteorder");
    let has_byteorder = archive.entries.contains_key(&byteorder);
    let mut small = vec![pkl.as_str()];
    if has_byteorder {
        small.push(&byteorder);
    }
    let offsets = archive.data_offsets(source, &small)?;
    let read_entry = |name: &str, limit: u64| -> Result<Vec<u8>> {
        let entry = &archive.entries[name];
        if entry.size > limit {
            return Err(Error::header(
                file,
                format!(
                    "zip entry '{name}' is {} bytes, more than the {limit}-byte limit",
                    entry.size
                ),
            ));
        }
        let at = offsets[name];
        let end = at + entry.size;
        if end <= head.len() as u64 {
            return Ok(head[at as usize..end as usize].to_vec());
        }
        let mut buf = vec![0u8; entry.size as usize];
        source.read_at(at, &mut buf)?;
        Ok(buf)
    };
    if has_byteorder {
        let order = read_entry(&byteorder, 16)?;
        if order != b"little" {
            return Err(Error::header(
                file,
                format!(
                    "byteorder is '{}': weightreel reads little-endian checkpoints only",
                    String::from_utf8_lossy(&order)
                ),
            ));
        }
    }
    let pickle_bytes = read_entry(&pkl, MAX_PICKLE)?;
    let (root, _) = unpickle(&pickle_bytes).map_err(|e| pickle_error(file, &pkl, e))?;
    let tensors = flatten(&root).map_err(|e| Error::header(file, format!("{pkl}: {e}")))?;
    let mut keys: Vec<String> = tensors
        .iter()
        .map(|(_, t)| format!("{prefix}data/{}", t.storage.key))
        .collect();
    keys.sort();
    keys.dedup();
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let data = archive.data_offsets(source, &names)?;
    let mut storages: HashMap<String, (u64, u64)> = HashMap::new();
    for (_, t) in &tensors {
        let name = format!("{prefix}data/{}", t.storage.key);
        let entry = &archive.entries[&name];
        let expected = t.storage.numel.checked_mul(elem_bytes(t.storage.dtype));
        if expected != Some(entry.size) {
            return Err(Error::header(
                file,
                format!(
                    "storage '{name}' holds {} bytes but the pickle says {} elements of {:?}",
                    entry.size, t.storage.numel, t.storage.dtype
                ),
            ));
        }
        storages.insert(t.storage.key.clone(), (data[&name], entry.size));
    }
    let (tensors, skipped) = place(file, tensors, &storages)?;
    Ok(FileTable {
        format: FileFormat::PyTorchZip,
        header_bytes: pickle_bytes.len() as u64 + (source.len() - archive.central_start),
        metadata: BTreeMap::new(),
        tensors,
        skipped,
    })
}

/// The five pickles of a legacy file, and where the storages start.
struct LegacyPickles {
    magic: Value,
    protocol: Value,
    sys_info: Value,
    root: Value,
    keys: Value,
    end: u64,
}

fn parse_legacy(bytes: &[u8]) -> std::result::Result<LegacyPickles, PickleError> {
    let mut at = 0;
    let mut next = || -> std::result::Result<Value, PickleError> {
        let (v, used) = unpickle(&bytes[at..])?;
        at += used;
        Ok(v)
    };
    let magic = next()?;
    let protocol = next()?;
    let sys_info = next()?;
    let root = next()?;
    let keys = next()?;
    Ok(LegacyPickles {
        magic,
        protocol,
        sys_info,
        root,
        keys,
        end: at as u64,
    })
}

fn read_legacy(source: &dyn ByteSource, mut buf: Vec<u8>) -> Result<FileTable> {
    let file = source.name();
    let len = source.len();
    // The pickles have no length: read more (doubling) until they all parse.
    let pickles = loop {
        match parse_legacy(&buf) {
            Ok(p) => break p,
            Err(PickleError::Truncated) if (buf.len() as u64) < len.min(MAX_PICKLE) => {
                let have = buf.len() as u64;
                let want = (have * 2).min(len).min(MAX_PICKLE);
                let mut more = vec![0u8; (want - have) as usize];
                source.read_at(have, &mut more)?;
                buf.extend_from_slice(&more);
            }
            Err(e) => return Err(pickle_error(file, "legacy pickle", e)),
        }
    };
    let magic_ok = matches!(&pickles.magic, Value::BigInt(b) if b[..] == LEGACY_MAGIC);
    if !magic_ok {
        return Err(Error::header(
            file,
            "not a PyTorch checkpoint: a pickle without the legacy torch.save magic number",
        ));
    }
    match pickles.protocol {
        Value::Int(1001) => {}
        // Only an int is shown: a hostile value may be a cycle of lists.
        Value::Int(other) => {
            return Err(Error::header(
                file,
                format!("legacy torch.save protocol {other} is not 1001"),
            ))
        }
        _ => {
            return Err(Error::header(
                file,
                "legacy torch.save protocol is not an int",
            ))
        }
    }
    if let Value::Dict(info) = &pickles.sys_info {
        let big = info.borrow().iter().any(
            |(k, v)| matches!((k, v), (Value::Str(k), Value::Bool(false)) if k == "little_endian"),
        );
        if big {
            return Err(Error::header(
                file,
                "checkpoint was saved big-endian: weightreel reads little-endian checkpoints only",
            ));
        }
    }
    let keys: Vec<String> = match &pickles.keys {
        Value::List(items) => items
            .borrow()
            .iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s.clone()),
                _ => Err(Error::header(file, "legacy storage keys are not strings")),
            })
            .collect::<Result<_>>()?,
        _ => return Err(Error::header(file, "legacy storage keys are not a list")),
    };
    let tensors =
        flatten(&pickles.root).map_err(|e| Error::header(file, format!("legacy pickle: {e}")))?;
    let mut known: HashMap<String, Rc<StorageRef>> = HashMap::new();
    collect_storages(&pickles.root, 0, &mut known);
    let mut storages: HashMap<String, (u64, u64)> = HashMap::new();
    let mut at = pickles.end;
    let verify_all = source.concurrency() <= 1;
    for key in &keys {
        let storage = known.get(key).ok_or_else(|| {
            Error::header(file, format!("legacy storage '{key}' is listed but no tensor uses it, so its size is unknown"))
        })?;
        let bytes = storage
            .numel
            .checked_mul(elem_bytes(storage.dtype))
            .and_then(|b| b.checked_add(8))
            .filter(|b| at.checked_add(*b).is_some_and(|end| end <= len))
            .ok_or_else(|| {
                Error::header(
                    file,
                    format!("legacy storage '{key}' of {} {:?} elements at byte {at} runs past the end of the file ({len} bytes)", storage.numel, storage.dtype),
                )
            })?;
        if verify_all || at + 8 <= buf.len() as u64 {
            let count = if at + 8 <= buf.len() as u64 {
                u64::from_le_bytes(buf[at as usize..at as usize + 8].try_into().expect("8"))
            } else {
                let mut c = [0u8; 8];
                source.read_at(at, &mut c)?;
                u64::from_le_bytes(c)
            };
            if count != storage.numel {
                return Err(Error::header(
                    file,
                    format!("legacy storage '{key}' at byte {at} holds {count} elements but the pickle says {}", storage.numel),
                ));
            }
        }
        storages.insert(key.clone(), (at + 8, bytes - 8));
        at += bytes;
    }
    if at != len {
        return Err(Error::header(
            file,
            format!("legacy storages end at byte {at} but the file has {len} bytes: storage sizes do not match the file"),
        ));
    }
    let (tensors, skipped) = place(file, tensors, &storages)?;
    Ok(FileTable {
        format: FileFormat::PyTorchLegacy,
        header_bytes: pickles.end,
        metadata: BTreeMap::new(),
        tensors,
        skipped,
    })
}

fn elem_bytes(dtype: Dtype) -> u64 {
    (dtype.bitsize() / 8) as u64
}

/// Every storage the object names, by key (legacy storages may back tensors not kept).
fn collect_storages(v: &Value, depth: usize, out: &mut HashMap<String, Rc<StorageRef>>) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Tensor(t) => {
            out.entry(t.storage.key.clone())
                .or_insert_with(|| t.storage.clone());
        }
        Value::Storage(s) => {
            out.entry(s.key.clone()).or_insert_with(|| s.clone());
        }
        Value::Dict(d) => {
            for (_, v) in d.borrow().iter() {
                collect_storages(v, depth + 1, out);
            }
        }
        Value::List(l) => {
            for v in l.borrow().iter() {
                collect_storages(v, depth + 1, out);
            }
        }
        Value::Tuple(t) => {
            for v in t.iter() {
                collect_storages(v, depth + 1, out);
            }
        }
        _ => {}
    }
}

fn has_tensor(v: &Value, depth: usize) -> bool {
    depth <= MAX_DEPTH
        && match v {
            Value::Tensor(_) => true,
            Value::Dict(d) => d.borrow().iter().any(|(_, v)| has_tensor(v, depth + 1)),
            _ => false,
        }
}

/// The tensors of a checkpoint's object, by flattened name.
pub fn flatten(root: &Value) -> std::result::Result<Vec<(String, Rc<TensorRef>)>, String> {
    let Value::Dict(dict) = root else {
        return Err("the checkpoint is not a dict of tensors (a state dict)".into());
    };
    let wrapped = dict.borrow().iter().find_map(|(k, v)| match k {
        Value::Str(k) if WRAPPERS.contains(&k.as_str()) && has_tensor(v, 0) => Some(v.clone()),
        _ => None,
    });
    let mut out = Vec::new();
    walk(wrapped.as_ref().unwrap_or(root), "", 0, &mut out)?;
    if !out.is_empty() && out.iter().all(|(n, _)| n.starts_with("module.")) {
        for (n, _) in &mut out {
            n.drain(.."module.".len());
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (n, _) in &out {
        if !seen.insert(n.as_str()) {
            return Err(format!("tensor name '{n}' appears twice once flattened"));
        }
    }
    Ok(out)
}

fn walk(
    v: &Value,
    prefix: &str,
    depth: usize,
    out: &mut Vec<(String, Rc<TensorRef>)>,
) -> std::result::Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("dicts nest deeper than {MAX_DEPTH} at '{prefix}'"));
    }
    let Value::Dict(dict) = v else { return Ok(()) };
    for (k, v) in dict.borrow().iter() {
        let key = match k {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            _ => continue,
        };
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match v {
            Value::Tensor(t) => out.push((name, t.clone())),
            Value::Dict(_) => walk(v, &name, depth + 1, out)?,
            _ => {}
        }
    }
    Ok(())
}

/// Byte ranges of the tensors in their storages (`storages`: key → data offset and bytes).
fn place(
    file: &str,
    tensors: Vec<(String, Rc<TensorRef>)>,
    storages: &HashMap<String, (u64, u64)>,
) -> Result<(Vec<TableTensor>, Vec<SkippedTensor>)> {
    let mut placed = Vec::with_capacity(tensors.len());
    let mut skipped = Vec::new();
    for (name, t) in tensors {
        let dtype = t.storage.dtype;
        let shape: Vec<usize> = t.size.iter().map(|&d| d as usize).collect();
        let numel = t
            .size
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::tensor(file, &name, format!("shape {shape:?} overflows")))?;
        if !is_contiguous(&t.size, &t.stride) {
            skipped.push(SkippedTensor {
                name,
                stored_at: None,
                dtype: format!("{dtype:?}"),
                shape,
                reason: format!(
                    "non-contiguous view (strides {:?}); weightreel reads contiguous tensors",
                    t.stride
                ),
            });
            continue;
        }
        let (data, storage_bytes) = *storages.get(&t.storage.key).ok_or_else(|| {
            Error::tensor(
                file,
                &name,
                format!("its storage '{}' is not in the file", t.storage.key),
            )
        })?;
        let first = t.storage.view_offset.checked_add(t.offset);
        let end = first.and_then(|f| f.checked_add(numel));
        let eb = elem_bytes(dtype);
        if end.is_none_or(|e| {
            e > t.storage.numel || e.checked_mul(eb).is_none_or(|b| b > storage_bytes)
        }) {
            return Err(Error::tensor(
                file,
                &name,
                format!(
                    "elements {}..+{numel} run past its storage '{}' of {} elements",
                    first.unwrap_or(u64::MAX),
                    t.storage.key,
                    t.storage.numel
                ),
            ));
        }
        let first = first.expect("checked");
        placed.push(TableTensor {
            name,
            dtype,
            shape,
            offset: data + first * eb,
            byte_len: numel * eb,
            encoding: Encoding::Plain,
        });
    }
    placed.sort_by(|a, b| a.offset.cmp(&b.offset).then_with(|| a.name.cmp(&b.name)));
    Ok((placed, skipped))
}

/// Row-major contiguous: each stride is the product of the later sizes (dims of size 1 aside).
fn is_contiguous(size: &[u64], stride: &[u64]) -> bool {
    let mut expected = 1u64;
    for (&d, &s) in size.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}
