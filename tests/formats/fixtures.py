#!/usr/bin/env python3
"""Reference reads and fixture files for tests/formats.rs, without torch.

Reference reads write a .safetensors file of every tensor's values (in the source dtype; GGUF
quantized tensors dequantized to F32 by gguf.quants.dequantize), which the Rust tests compare
bit for bit with what weightreel decodes:
  ref-pth FILE OUT        a torch.save file, read with a restricted pickle.Unpickler and numpy
  ref-gguf FILE OUT       a GGUF file, read with gguf's GGUFReader
Fixture writers (torch-compatible files made with a custom Pickler, GGUF with gguf's writer):
  bin MODEL.safetensors OUT.bin          a torch zip checkpoint of the same tensors
  sharded MODEL.safetensors DIR          pytorch_model-0000{1,2}-of-00002.bin and the index
  views OUT.bin                          shared storages, offsets, a transposed view, dtypes,
                                         a {"state_dict": {"module.…"}} wrapper
  wrong-size OUT.bin / compressed OUT.bin   views.bin with storages 4 bytes short / deflated
  legacy OUT.pth [--wrong-size]          a legacy (pre-1.6) checkpoint
  gguf MODEL.safetensors OUT.gguf        MiniLM quantized to Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/F16/BF16
  gguf-k OUT.gguf                        K-quant and Q8_K blocks of random bytes (finite scales)
  evil OUT.bin KIND                      data.pkl naming os.system / builtins.eval / a
                                         __reduce__ payload
"""
import collections
import io
import json
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

STORAGES = {
    "DoubleStorage": ("F64", np.float64),
    "FloatStorage": ("F32", np.float32),
    "HalfStorage": ("F16", np.float16),
    "BFloat16Storage": ("BF16", np.uint16),
    "LongStorage": ("I64", np.int64),
    "IntStorage": ("I32", np.int32),
    "ShortStorage": ("I16", np.int16),
    "CharStorage": ("I8", np.int8),
    "ByteStorage": ("U8", np.uint8),
    "BoolStorage": ("BOOL", np.bool_),
}
BY_DTYPE = {v[0]: k for k, v in STORAGES.items()}
NUMPY = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
         "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8}


# ---------------------------------------------------------------- safetensors in and out

def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=NUMPY[info["dtype"]]).reshape(info["shape"])
        out[name] = (info["dtype"], arr)
    return out


def write_safetensors(path, tensors):
    header, blobs, at = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------- restricted reading of .pth

class StorageType:
    def __init__(self, name):
        self.name = name


class Storage:
    def __init__(self, kind, key, numel, view):
        self.dtype, self.np = STORAGES[kind]
        self.key, self.numel, self.view = str(key), numel, view
        self.array = None


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def values(self):
        arr = self.storage.array
        base = self.offset + (self.storage.view[1] if self.storage.view else 0)
        item = arr.itemsize
        if not self.size:
            return arr[base:base + 1].reshape(())
        return np.lib.stride_tricks.as_strided(
            arr[base:], shape=self.size, strides=[s * item for s in self.stride]).copy()


def rebuild_tensor(storage, offset, size, stride, *_):
    return Tensor(storage, offset, size, stride)


def rebuild_parameter(tensor, *_):
    return tensor


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return rebuild_parameter
        if module == "torch" and name in STORAGES:
            return StorageType(name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")

    def persistent_load(self, pid):
        view = pid[5] if len(pid) > 5 else None
        return Storage(pid[1].name, pid[2], pid[4], view)


def storages_in(obj, out):
    if isinstance(obj, Tensor):
        out.setdefault(obj.storage.key, []).append(obj.storage)
    elif isinstance(obj, dict):
        for v in obj.values():
            storages_in(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            storages_in(v, out)
    return out


WRAPPERS = ("state_dict", "model_state_dict", "model", "module", "net")


def flatten(obj, prefix=""):
    out = {}
    for k, v in obj.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Tensor):
            out[name] = v
        elif isinstance(v, dict):
            out.update(flatten(v, name))
    return out


def state_dict_tensors(root):
    for key in WRAPPERS:
        if isinstance(root.get(key), dict) and flatten(root[key]):
            root = root[key]
            break
    tensors = flatten(root)
    if tensors and all(n.startswith("module.") for n in tensors):
        tensors = {n[len("module."):]: t for n, t in tensors.items()}
    return tensors


def ref_pth(path, out):
    if zipfile.is_zipfile(path):
        z = zipfile.ZipFile(path)
        pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
        prefix = pkl[: -len("data.pkl")]
        root = RestrictedUnpickler(io.BytesIO(z.read(pkl))).load()
        for key, group in storages_in(root, {}).items():
            arr = np.frombuffer(z.read(f"{prefix}data/{key}"), dtype=group[0].np)
            for s in group:
                s.array = arr
    else:
        with open(path, "rb") as f:
            u = lambda: RestrictedUnpickler(f).load()
            assert u() == 0x1950A86A20F9469CFC6C
            assert u() == 1001
            u()
            root = u()
            keys = u()
            found = storages_in(root, {})
            for key in keys:
                numel = struct.unpack("<q", f.read(8))[0]
                group = found[key]
                arr = np.frombuffer(f.read(numel * np.dtype(group[0].np).itemsize), dtype=group[0].np)
                for s in group:
                    s.array = arr
    tensors = state_dict_tensors(root)
    write_safetensors(out, {n: (t.storage.dtype, t.values()) for n, t in tensors.items()})


# ---------------------------------------------------------------- writing torch-compatible files

def fake_torch():
    """Modules named torch and torch._utils whose globals pickle as torch's do."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for name in STORAGES:
        cls = type(name, (), {"__module__": "torch", "__qualname__": name})
        setattr(torch, name, cls)

    def _rebuild_tensor_v2(*a):
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    return torch, utils


TORCH, UTILS = fake_torch()


class OutStorage:
    def __init__(self, key, dtype, array):
        self.key, self.dtype, self.array = key, dtype, array


class OutTensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (UTILS._rebuild_tensor_v2,
                (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
                 collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    legacy = False

    def persistent_id(self, obj):
        if isinstance(obj, OutStorage):
            cls = getattr(TORCH, BY_DTYPE[obj.dtype])
            pid = ("storage", cls, obj.key, "cpu", obj.array.size)
            return pid + (None,) if self.legacy else pid
        return None


def contiguous(shape):
    stride, acc = [], 1
    for d in reversed(shape):
        stride.insert(0, acc)
        acc *= d
    return stride


def state_dict_of(tensors):
    """OrderedDict of OutTensors, one storage each, keys 0, 1, …"""
    sd, storages = collections.OrderedDict(), []
    for i, (name, (dtype, arr)) in enumerate(tensors.items()):
        s = OutStorage(str(i), dtype, np.ascontiguousarray(arr).reshape(-1))
        storages.append(s)
        sd[name] = OutTensor(s, 0, list(arr.shape), contiguous(list(arr.shape)))
    return sd, storages


def write_zip(path, obj, storages, corrupt_sizes=False, data_pkl=None, compress=False):
    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl if data_pkl is not None else buf.getvalue())
        z.writestr("archive/byteorder", b"little")
        seen = set()
        for s in storages:
            if s.key in seen:
                continue
            seen.add(s.key)
            raw = s.array.tobytes()
            z.writestr(f"archive/data/{s.key}", raw[:-4] if corrupt_sizes else raw,
                       compress_type=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
        z.writestr("archive/version", b"3\n")


def write_bin(model, out):
    sd, storages = state_dict_of(read_safetensors(model))
    write_zip(out, sd, storages)


def write_sharded(model, out_dir):
    tensors = list(read_safetensors(model).items())
    half = len(tensors) // 2
    weight_map = {}
    for i, part in enumerate((tensors[:half], tensors[half:])):
        name = f"pytorch_model-0000{i + 1}-of-00002.bin"
        sd, storages = state_dict_of(dict(part))
        write_zip(f"{out_dir}/{name}", sd, storages)
        weight_map.update({n: name for n, _ in part})
    with open(f"{out_dir}/pytorch_model.bin.index.json", "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


def views_state_dict():
    rng = np.random.default_rng(7)
    shared = OutStorage("0", "F32", rng.standard_normal(48).astype(np.float32))
    sd = collections.OrderedDict()
    # Two tensors viewing one storage, the second at an offset.
    sd["module.encoder.layer.0.attention.self.query.weight"] = OutTensor(shared, 0, [4, 6], [6, 1])
    sd["module.encoder.layer.0.attention.self.query.bias"] = OutTensor(shared, 24, [6], [1])
    # A transposed view of the same storage: not contiguous.
    sd["module.encoder.layer.0.attention.self.key.weight"] = OutTensor(shared, 0, [6, 4], [1, 6])
    storages = [shared]
    for i, (dtype, arr) in enumerate([
        ("F16", rng.standard_normal(40).astype(np.float16)),
        ("BF16", rng.integers(0, 1 << 16, 40, dtype=np.uint16) & 0x7F7F),
        ("F64", rng.standard_normal(10)),
        ("I8", rng.integers(-128, 127, 40, dtype=np.int8)),
        ("I16", rng.integers(-30000, 30000, 40, dtype=np.int16)),
        ("U8", rng.integers(0, 255, 40, dtype=np.uint8)),
    ]):
        s = OutStorage(str(i + 1), dtype, arr)
        storages.append(s)
        n = arr.size
        sd[f"module.extra.{dtype.lower()}.weight"] = OutTensor(s, 0, [n // 2, 2] if n % 2 == 0 else [n], [2, 1] if n % 2 == 0 else [1])
    return {"epoch": 3, "state_dict": sd, "optimizer": {"lr": 0.1}}, storages


def write_legacy(out, wrong_size=False):
    obj, storages = views_state_dict()
    with open(out, "wb") as f:
        for v in (0x1950A86A20F9469CFC6C, 1001,
                  {"protocol_version": 1001, "little_endian": True,
                   "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(v, f, protocol=2)
        p = TorchPickler(f, protocol=2)
        p.legacy = True
        p.dump(obj)
        pickle.dump([s.key for s in storages], f, protocol=2)
        for i, s in enumerate(storages):
            n = s.array.size + (1 if wrong_size and i == 1 else 0)
            f.write(struct.pack("<q", n))
            f.write(s.array.tobytes())


class Payload:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def write_evil(out, kind):
    import os
    if kind == "os.system":
        payload = pickle.dumps(collections.OrderedDict(x=Payload(os.system, "true")), protocol=2)
    elif kind == "builtins.eval":
        # Protocol 4 names it with STACK_GLOBAL as 'builtins' 'eval' (protocol 2 says
        # '__builtin__').
        payload = pickle.dumps({"x": Payload(eval, "1")}, protocol=4)
    else:  # a __reduce__ payload of an arbitrary class's method
        payload = pickle.dumps({"x": Payload(zipfile.ZipFile, "/etc/passwd")}, protocol=2)
    write_zip(out, {}, [], data_pkl=payload)


# ---------------------------------------------------------------- GGUF

def write_gguf(model, out):
    import gguf
    Q = gguf.GGMLQuantizationType
    cycle = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.F16, Q.BF16]
    w = gguf.GGUFWriter(out, "bert")
    w.add_context_length(512)
    i = 0
    for name, (dtype, arr) in read_safetensors(model).items():
        if dtype != "F32":
            continue
        arr = arr.astype(np.float32)
        if arr.ndim == 2 and arr.shape[-1] % 32 == 0:
            q = cycle[i % len(cycle)]
            i += 1
            w.add_tensor(name, gguf.quants.quantize(arr, q), raw_dtype=q)
        else:
            w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


K_TYPES = {  # type: (bytes per block, byte offsets of f16 scales)
    "Q2_K": (84, [80, 82]), "Q3_K": (110, [108]), "Q4_K": (144, [0, 2]),
    "Q5_K": (176, [0, 2]), "Q6_K": (210, [208]), "Q8_K": (292, []),
}


def write_gguf_k(out):
    import gguf
    rng = np.random.default_rng(11)
    w = gguf.GGUFWriter(out, "llama")
    for layer, (name, (size, scales)) in enumerate(K_TYPES.items()):
        blocks = rng.integers(0, 256, (8, size), dtype=np.uint8)
        for at in scales:
            d = (rng.standard_normal(8) * 0.05).astype(np.float16).view(np.uint8).reshape(8, 2)
            blocks[:, at:at + 2] = d
        if name == "Q8_K":
            blocks[:, 0:4] = (rng.standard_normal(8) * 0.01).astype(np.float32).view(np.uint8).reshape(8, 4)
        w.add_tensor(f"blk.{layer}.ffn_up.weight", blocks.reshape(2, 4 * size),
                     raw_dtype=gguf.GGMLQuantizationType[name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def ref_gguf(path, out, pattern=None):
    import gguf
    import re
    Q = gguf.GGMLQuantizationType
    r = gguf.GGUFReader(path)
    tensors = {}
    for t in r.tensors:
        if pattern and not re.search(pattern, t.name):
            continue
        shape = [int(d) for d in reversed(t.shape)]
        raw = np.asarray(t.data)
        if t.tensor_type == Q.F32:
            tensors[t.name] = ("F32", raw.view(np.float32).reshape(shape))
        elif t.tensor_type == Q.F16:
            tensors[t.name] = ("F16", raw.view(np.float16).reshape(shape))
        elif t.tensor_type == Q.BF16:
            tensors[t.name] = ("BF16", raw.view(np.uint16).reshape(shape))
        elif t.tensor_type == Q.Q8_K:
            b = raw.view(np.uint8).reshape(-1, 292)
            d = b[:, :4].copy().view(np.float32)
            q = b[:, 4:260].view(np.int8).astype(np.float32)
            tensors[t.name] = ("F32", (d * q).reshape(shape))
        else:
            tensors[t.name] = ("F32", gguf.quants.dequantize(raw, t.tensor_type).reshape(shape))
    write_safetensors(out, tensors)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "ref-pth": lambda: ref_pth(*args),
        "ref-gguf": lambda: ref_gguf(*args),
        "bin": lambda: write_bin(*args),
        "sharded": lambda: write_sharded(*args),
        "views": lambda: write_zip(args[0], *views_state_dict()),
        "legacy": lambda: write_legacy(args[0], "--wrong-size" in args),
        "wrong-size": lambda: write_zip(args[0], *views_state_dict(), corrupt_sizes=True),
        "compressed": lambda: write_zip(args[0], *views_state_dict(), compress=True),
        "gguf": lambda: write_gguf(*args),
        "gguf-k": lambda: write_gguf_k(*args),
        "evil": lambda: write_evil(*args),
    }[cmd]()
