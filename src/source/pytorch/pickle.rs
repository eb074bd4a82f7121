//! A restricted unpickler for `torch.save` checkpoints: it runs no code and builds only the few
//! things a state dict is made of.
//!
//! It reads the binary opcodes of pickle protocols 2 to 5 (what `torch.save` writes) into
//! [`Value`]s. A `GLOBAL` (or `STACK_GLOBAL`) names a callable; only those on [`ALLOWED`] are
//! accepted and anything else — `os.system`, `builtins.eval`, any `__reduce__` payload — is an
//! error naming it, before anything could be called. "Calling" an allowed global (`REDUCE`)
//! builds a value: an `OrderedDict` becomes a dict, `_rebuild_tensor_v2` a [`TensorRef`], a
//! persistent id (`BINPERSID`) a [`StorageRef`]. Limits on memo entries, stack depth and values
//! built keep a hostile pickle from taking more memory than its own size times a constant.
//!
//! `serde-pickle` reads plain pickles but has no persistent ids or `REDUCE`; candle's VM
//! inspired the shape, but this one is written for our allow-list and limits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use safetensors::Dtype;

/// Most memo entries.
pub const MAX_MEMO: usize = 1 << 20;
/// Most values on the stack, and most open `MARK`s.
pub const MAX_STACK: usize = 1 << 20;
/// Most values built in all (containers count their items).
pub const MAX_VALUES: usize = 1 << 24;

/// The globals a checkpoint may name, as `module.name`.
pub const ALLOWED: [&str; 20] = [
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch.Size",
    "torch.device",
    "_codecs.encode",
    "torch.DoubleStorage",
    "torch.FloatStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
    "torch.storage.UntypedStorage",
    "builtins.set",
];

/// The element type of a `torch.*Storage` class.
pub fn storage_dtype(global: &str) -> Option<Dtype> {
    Some(match global {
        "torch.DoubleStorage" => Dtype::F64,
        "torch.FloatStorage" => Dtype::F32,
        "torch.HalfStorage" => Dtype::F16,
        "torch.BFloat16Storage" => Dtype::BF16,
        "torch.LongStorage" => Dtype::I64,
        "torch.IntStorage" => Dtype::I32,
        "torch.ShortStorage" => Dtype::I16,
        "torch.CharStorage" => Dtype::I8,
        "torch.ByteStorage" | "torch.storage.UntypedStorage" => Dtype::U8,
        "torch.BoolStorage" => Dtype::BOOL,
        _ => return None,
    })
}

/// A storage named by a persistent id: `('storage', type, key, location, numel)` in zip
/// checkpoints, plus a view `(view_key, offset, numel)` or `None` in legacy ones.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// The storage's key: its entry name in a zip, its position in a legacy file.
    pub key: String,
    /// Element type.
    pub dtype: Dtype,
    /// Elements the storage holds.
    pub numel: u64,
    /// Legacy views: the element offset of this view in the root storage.
    pub view_offset: u64,
}

/// A tensor: a strided view of a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage it views.
    pub storage: Rc<StorageRef>,
    /// First element, in elements of the storage.
    pub offset: u64,
    /// Shape.
    pub size: Vec<u64>,
    /// Strides, in elements.
    pub stride: Vec<u64>,
}

/// A built value. Lists and dicts are shared (the memo and the stack may hold one list).
#[derive(Debug, Clone)]
pub enum Value {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int that fits in 64 bits.
    Int(i64),
    /// A longer int, as little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Rc<Vec<Value>>),
    /// A list.
    List(Rc<RefCell<Vec<Value>>>),
    /// A dict (or `OrderedDict`), in insertion order.
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// An allowed global, `module.name`, not yet called.
    Global(Rc<str>),
    /// A storage.
    Storage(Rc<StorageRef>),
    /// A tensor.
    Tensor(Rc<TensorRef>),
}

/// Why a pickle could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickleError {
    /// The bytes ended before `STOP`.
    Truncated,
    /// Anything else, described.
    Invalid(String),
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PickleError::Truncated => write!(f, "pickle ends before its STOP opcode"),
            PickleError::Invalid(m) => write!(f, "{m}"),
        }
    }
}

type PResult<T> = std::result::Result<T, PickleError>;

fn invalid<T>(message: impl Into<String>) -> PResult<T> {
    Err(PickleError::Invalid(message.into()))
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    built: usize,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(PickleError::Truncated)?;
        let bytes = self.data.get(self.pos..end).ok_or(PickleError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> PResult<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }

    fn u32(&mut self) -> PResult<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> PResult<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn line(&mut self) -> PResult<&'a str> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated)?;
        let line = std::str::from_utf8(&rest[..n])
            .map_err(|_| PickleError::Invalid("GLOBAL name is not UTF-8".into()))?;
        self.pos += n + 1;
        Ok(line)
    }

    fn count(&mut self, n: usize) -> PResult<()> {
        self.built = self.built.saturating_add(n.max(1));
        if self.built > MAX_VALUES {
            return invalid(format!("pickle builds more than {MAX_VALUES} values"));
        }
        Ok(())
    }

    fn push(&mut self, v: Value) -> PResult<()> {
        if self.stack.len() >= MAX_STACK {
            return invalid(format!("pickle stack grows past {MAX_STACK} values"));
        }
        self.count(1)?;
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> PResult<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return invalid("pickle pops past a MARK");
        }
        self.stack
            .pop()
            .ok_or_else(|| PickleError::Invalid("pickle pops an empty stack".into()))
    }

    fn top(&mut self) -> PResult<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| PickleError::Invalid("pickle stack is empty".into()))
    }

    fn pop_mark(&mut self) -> PResult<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| PickleError::Invalid("pickle has no MARK to pop to".into()))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn memo_put(&mut self, key: u32) -> PResult<()> {
        let v = self.top()?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return invalid(format!("pickle memo grows past {MAX_MEMO} entries"));
        }
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> PResult<()> {
        let v =
            self.memo.get(&key).cloned().ok_or_else(|| {
                PickleError::Invalid(format!("pickle reads memo {key}, never set"))
            })?;
        self.push(v)
    }

    fn global(&mut self, module: &str, name: &str) -> PResult<()> {
        let full = format!("{module}.{name}");
        if !ALLOWED.contains(&full.as_str()) {
            return invalid(format!(
                "pickle names the global '{full}', which weightreel does not allow (a checkpoint holds only tensors and containers)"
            ));
        }
        self.push(Value::Global(full.into()))
    }

    fn tuple(&mut self, items: Vec<Value>) -> PResult<()> {
        self.count(items.len())?;
        self.push(Value::Tuple(Rc::new(items)))
    }
}

fn as_int(v: &Value, what: &str) -> PResult<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Bool(b) => Ok(*b as i64),
        _ => invalid(format!("{what} is not an int")),
    }
}

fn as_count(v: &Value, what: &str) -> PResult<u64> {
    u64::try_from(as_int(v, what)?).or_else(|_| invalid(format!("{what} is negative")))
}

fn as_ints(v: &Value, what: &str) -> PResult<Vec<u64>> {
    match v {
        Value::Tuple(items) => items.iter().map(|i| as_count(i, what)).collect(),
        Value::List(items) => items.borrow().iter().map(|i| as_count(i, what)).collect(),
        _ => invalid(format!("{what} is not a tuple")),
    }
}

fn tuple_items(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::Tuple(items) => Some(items.as_ref().clone()),
        _ => None,
    }
}

/// A persistent id: `('storage', cls, key, location, numel[, view])`.
fn persistent_load(pid: &Value) -> PResult<Value> {
    let items = tuple_items(pid).unwrap_or_default();
    match items.first() {
        Some(Value::Str(s)) if s == "storage" && items.len() >= 5 => {}
        _ => return invalid("pickle has a persistent id that is not a ('storage', …) tuple"),
    }
    let dtype = match &items[1] {
        Value::Global(g) => storage_dtype(g)
            .ok_or_else(|| PickleError::Invalid(format!("'{g}' is not a storage type")))?,
        _ => return invalid("storage type is not a torch storage class"),
    };
    let key = match &items[2] {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        _ => return invalid("storage key is not a string"),
    };
    let numel = as_count(&items[4], "storage size")?;
    let view_offset = match items.get(5) {
        None | Some(Value::None) => 0,
        Some(view) => {
            let v = tuple_items(view).unwrap_or_default();
            if v.len() != 3 {
                return invalid("storage view is not a (key, offset, size) tuple");
            }
            as_count(&v[1], "storage view offset")?
        }
    };
    Ok(Value::Storage(Rc::new(StorageRef {
        key,
        dtype,
        numel,
        view_offset,
    })))
}

/// `callable(*args)` for an allowed global.
fn call(callable: &Value, args: &Value) -> PResult<Value> {
    let Value::Global(name) = callable else {
        return invalid("pickle calls something that is not a global");
    };
    let args = tuple_items(args).unwrap_or_default();
    match &**name {
        "collections.OrderedDict" | "builtins.set" => {
            Ok(Value::Dict(Rc::new(RefCell::new(Vec::new()))))
        }
        "torch._utils._rebuild_tensor" | "torch._utils._rebuild_tensor_v2" => {
            if args.len() < 4 {
                return invalid(format!("{name} takes at least 4 arguments"));
            }
            let Value::Storage(storage) = &args[0] else {
                return invalid(format!("{name}: first argument is not a storage"));
            };
            let size = as_ints(&args[2], "tensor size")?;
            let stride = as_ints(&args[3], "tensor stride")?;
            if size.len() != stride.len() {
                return invalid(format!(
                    "tensor size {size:?} and stride {stride:?} differ in length"
                ));
            }
            Ok(Value::Tensor(Rc::new(TensorRef {
                storage: storage.clone(),
                offset: as_count(&args[1], "storage offset")?,
                size,
                stride,
            })))
        }
        "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
            match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => invalid(format!("{name}: first argument is not a tensor")),
            }
        }
        "torch.Size" => Ok(args.first().cloned().unwrap_or(Value::Tuple(Rc::default()))),
        "torch.device" => Ok(args.first().cloned().unwrap_or(Value::None)),
        "_codecs.encode" => match args.first() {
            // Protocol 2 pickles bytes as _codecs.encode(text, 'latin1').
            Some(Value::Str(s)) => Ok(Value::Bytes(s.chars().map(|c| c as u32 as u8).collect())),
            _ => invalid("_codecs.encode: first argument is not a str"),
        },
        other => invalid(format!(
            "pickle calls '{other}', which is not callable here"
        )),
    }
}

fn set_items(target: &Value, items: Vec<Value>) -> PResult<()> {
    let Value::Dict(dict) = target else {
        return invalid("pickle sets items on something that is not a dict");
    };
    if !items.len().is_multiple_of(2) {
        return invalid("pickle SETITEMS has an odd number of values");
    }
    let mut dict = dict.borrow_mut();
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        dict.push((k, v));
    }
    Ok(())
}

fn append_items(target: &Value, items: Vec<Value>) -> PResult<()> {
    match target {
        Value::List(list) => {
            list.borrow_mut().extend(items);
            Ok(())
        }
        // set() built by builtins.set: its items are ignored (sets hold no tensors here).
        Value::Dict(_) => Ok(()),
        _ => invalid("pickle appends to something that is not a list"),
    }
}

/// Run the pickle at the start of `data`. Returns the value and the bytes it took (up to and
/// including `STOP`), so that pickles stored one after another can be read in turn.
pub fn unpickle(data: &[u8]) -> PResult<(Value, usize)> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        built: 0,
    };
    loop {
        let at = m.pos;
        let op = m.byte()?;
        match op {
            0x80 => {
                let proto = m.byte()?;
                if !(2..=5).contains(&proto) {
                    return invalid(format!("pickle protocol {proto} is not supported (2..=5)"));
                }
            }
            0x95 => {
                m.u64()?; // FRAME: a length hint only
            }
            b'.' => {
                let v = m.pop()?;
                return Ok((v, m.pos));
            }
            b'(' => {
                if m.marks.len() >= MAX_STACK {
                    return invalid("pickle opens too many MARKs");
                }
                m.marks.push(m.stack.len());
            }
            b'0' => {
                m.pop()?;
            }
            b'1' => {
                m.pop_mark()?;
            }
            b'2' => {
                let v = m.top()?.clone();
                m.push(v)?;
            }
            b'N' => m.push(Value::None)?,
            0x88 => m.push(Value::Bool(true))?,
            0x89 => m.push(Value::Bool(false))?,
            b'J' => {
                let v = m.u32()? as i32;
                m.push(Value::Int(v as i64))?
            }
            b'K' => {
                let v = m.byte()?;
                m.push(Value::Int(v as i64))?
            }
            b'M' => {
                let v = m.u16()?;
                m.push(Value::Int(v as i64))?
            }
            0x8a | 0x8b => {
                let n = if op == 0x8a {
                    m.byte()? as usize
                } else {
                    m.u32()? as usize
                };
                let bytes = m.take(n)?;
                if n <= 8 {
                    let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        [0xff; 8]
                    } else {
                        [0; 8]
                    };
                    buf[..n].copy_from_slice(bytes);
                    m.push(Value::Int(i64::from_le_bytes(buf)))?
                } else {
                    m.push(Value::BigInt(bytes.to_vec()))?
                }
            }
            b'G' => {
                let v = f64::from_be_bytes(m.take(8)?.try_into().expect("8"));
                m.push(Value::Float(v))?
            }
            b'X' | 0x8c | 0x8d => {
                let n = match op {
                    b'X' => m.u32()? as u64,
                    0x8c => m.byte()? as u64,
                    _ => m.u64()?,
                };
                let n = usize::try_from(n).map_err(|_| PickleError::Truncated)?;
                let bytes = m.take(n)?;
                let s = std::str::from_utf8(bytes).map_err(|_| {
                    PickleError::Invalid(format!("pickle string at byte {at} is not UTF-8"))
                })?;
                m.push(Value::Str(s.to_string()))?
            }
            b'T' | b'U' | b'B' | b'C' | 0x8e => {
                let n = match op {
                    b'T' | b'B' => m.u32()? as u64,
                    b'U' | b'C' => m.byte()? as u64,
                    _ => m.u64()?,
                };
                let n = usize::try_from(n).map_err(|_| PickleError::Truncated)?;
                let bytes = m.take(n)?.to_vec();
                m.push(Value::Bytes(bytes))?
            }
            b')' => m.tuple(Vec::new())?,
            b't' => {
                let items = m.pop_mark()?;
                m.tuple(items)?
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(m.pop()?);
                }
                items.reverse();
                m.tuple(items)?
            }
            b']' => m.push(Value::List(Rc::default()))?,
            b'l' => {
                let items = m.pop_mark()?;
                m.count(items.len())?;
                m.push(Value::List(Rc::new(RefCell::new(items))))?
            }
            b'a' => {
                let v = m.pop()?;
                let target = m.top()?.clone();
                append_items(&target, vec![v])?;
            }
            b'e' => {
                let items = m.pop_mark()?;
                m.count(items.len())?;
                let target = m.top()?.clone();
                append_items(&target, items)?;
            }
            b'}' => m.push(Value::Dict(Rc::default()))?,
            b'd' => {
                let items = m.pop_mark()?;
                m.count(items.len())?;
                let dict = Value::Dict(Rc::default());
                set_items(&dict, items)?;
                m.push(dict)?
            }
            b's' => {
                let v = m.pop()?;
                let k = m.pop()?;
                let target = m.top()?.clone();
                set_items(&target, vec![k, v])?;
            }
            b'u' => {
                let items = m.pop_mark()?;
                m.count(items.len())?;
                let target = m.top()?.clone();
                set_items(&target, items)?;
            }
            b'q' => {
                let k = m.byte()? as u32;
                m.memo_put(k)?
            }
            b'r' => {
                let k = m.u32()?;
                m.memo_put(k)?
            }
            0x94 => {
                let k = u32::try_from(m.memo.len())
                    .map_err(|_| PickleError::Invalid("memo overflows".into()))?;
                m.memo_put(k)?
            }
            b'h' => {
                let k = m.byte()? as u32;
                m.memo_get(k)?
            }
            b'j' => {
                let k = m.u32()?;
                m.memo_get(k)?
            }
            b'c' => {
                let module = m.line()?;
                let name = m.line()?;
                m.global(module, name)?
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => m.global(&module, &name)?,
                    _ => return invalid("STACK_GLOBAL takes two strings"),
                }
            }
            b'R' | 0x81 => {
                let args = m.pop()?;
                let callable = m.pop()?;
                let v = call(&callable, &args)?;
                m.push(v)?
            }
            b'b' => {
                // BUILD sets state on the object below; dicts and tensors keep theirs.
                m.pop()?;
                m.top()?;
            }
            b'Q' => {
                let pid = m.pop()?;
                let v = persistent_load(&pid)?;
                m.push(v)?
            }
            other => {
                return invalid(format!(
                    "pickle opcode 0x{other:02x} at byte {at} is not supported"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(bytes: &[u8]) -> String {
        unpickle(bytes).unwrap_err().to_string()
    }

    #[test]
    fn a_dict_of_ints_reads() {
        // {'a': 1} in protocol 2: PROTO 2, EMPTY_DICT, BINUNICODE 'a', BININT1 1, SETITEM, STOP
        let (v, used) = unpickle(b"\x80\x02}X\x01\x00\x00\x00aK\x01s.").unwrap();
        assert_eq!(used, 13);
        let Value::Dict(d) = v else { panic!() };
        assert!(matches!(&d.borrow()[0], (Value::Str(k), Value::Int(1)) if k == "a"));
    }

    #[test]
    fn os_system_is_refused_by_name() {
        let err = error(b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00id\x85R.");
        assert!(err.contains("'posix.system'"), "{err}");
    }

    #[test]
    fn truncated_input_is_truncated() {
        assert!(matches!(
            unpickle(b"\x80\x02}X\x01\x00"),
            Err(PickleError::Truncated)
        ));
    }

    #[test]
    fn reading_an_unset_memo_entry_is_an_error() {
        assert!(error(b"\x80\x02h\x05.").contains("memo 5"));
    }
}
