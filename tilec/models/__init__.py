"""Model shapes for offline tuning: a Hugging Face-style config.json, or a built-in name
(``configs.json`` beside this file), turned into the linear-layer GEMM shapes and attention
geometry of one tensor-parallel rank.

    >>> from tilec.models import load_model
    >>> m = load_model("smollm2-135m")
    >>> [(l.name, l.N, l.K) for l in m.linears]
    [('qkv', 960, 576), ('o', 576, 576), ('gate_up', 3072, 576), ('down', 576, 1536)]
    >>> m.group, m.kv_heads, m.head_dim
    (3, 3, 64)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["ModelError", "Linear", "ModelShapes", "builtin_names", "load_model"]


class ModelError(ValueError):
    """A model config that cannot be read or does not describe a Llama-family model."""


@dataclass(frozen=True)
class Linear:
    name: str
    N: int      # output features (weight rows: smooth_gemm_t's W is [N, K])
    K: int      # input features


@dataclass(frozen=True)
class ModelShapes:
    name: str
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    tp: int = 1
    num_hidden_layers: int = 0

    @property
    def q_heads(self) -> int:
        """Query heads of one rank."""
        return self.num_attention_heads // self.tp

    @property
    def kv_heads(self) -> int:
        """KV heads of one rank (replicated when there are fewer KV heads than ranks)."""
        return max(1, self.num_key_value_heads // self.tp)

    @property
    def group(self) -> int:
        return self.q_heads // self.kv_heads

    @property
    def linears(self) -> list[Linear]:
        """Column-parallel QKV and GateUp (N split), row-parallel O and Down (K split)."""
        d, t = self.head_dim, self.tp
        return [Linear("qkv", (self.q_heads + 2 * self.kv_heads) * d, self.hidden_size),
                Linear("o", self.hidden_size, self.q_heads * d),
                Linear("gate_up", 2 * self.intermediate_size // t, self.hidden_size),
                Linear("down", self.hidden_size, self.intermediate_size // t)]

    def to_json(self) -> dict:
        return {"name": self.name, "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size,
                "num_attention_heads": self.num_attention_heads,
                "num_key_value_heads": self.num_key_value_heads, "head_dim": self.head_dim,
                "tp": self.tp, "num_hidden_layers": self.num_hidden_layers}


def _builtins() -> dict:
    p = Path(str(resources.files("tilec.models") / "configs.json"))
    return json.loads(p.read_text())["models"]


def builtin_names() -> list[str]:
    return sorted(_builtins())


def _int(cfg: dict, key: str, where: str, default=None) -> int:
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ModelError(f"{where}: '{key}' must be a positive integer, got {v!r}")
    return v


def from_config(cfg: dict, name: str, tp: int = 1, where: str | None = None) -> ModelShapes:
    where = where or name
    if not isinstance(cfg, dict):
        raise ModelError(f"{where}: expected a JSON object")
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise ModelError(f"{where}: tensor-parallel degree must be a positive integer, got {tp!r}")
    hidden = _int(cfg, "hidden_size", where)
    inter = _int(cfg, "intermediate_size", where)
    heads = _int(cfg, "num_attention_heads", where)
    kv = _int(cfg, "num_key_value_heads", where, heads)
    if hidden % heads and "head_dim" not in cfg:
        raise ModelError(f"{where}: hidden_size {hidden} is not a multiple of num_attention_heads "
                         f"{heads}; give head_dim")
    head_dim = _int(cfg, "head_dim", where, hidden // heads)
    if heads % kv:
        raise ModelError(f"{where}: num_attention_heads {heads} is not a multiple of "
                         f"num_key_value_heads {kv}")
    if heads % tp or inter % tp or (kv >= tp and kv % tp) or (kv < tp and tp % kv):
        raise ModelError(f"{where}: heads {heads}, KV heads {kv} and intermediate size {inter} "
                         f"do not split over tp={tp}")
    layers = cfg.get("num_hidden_layers", 0)
    return ModelShapes(name, hidden, inter, heads, kv, head_dim, tp,
                       layers if isinstance(layers, int) and not isinstance(layers, bool) else 0)


def load_model(spec: str, tp: int = 1) -> ModelShapes:
    """A built-in model name, or the path of a Hugging Face-style config.json."""
    models = _builtins()
    if spec in models:
        return from_config(models[spec], spec, tp)
    p = Path(spec)
    if p.is_dir():
        p = p / "config.json"
    if not p.exists():
        raise ModelError(f"{spec}: neither a built-in model ({', '.join(sorted(models))}) "
                         f"nor a config.json file")
    try:
        cfg = json.loads(p.read_text())
    except OSError as e:
        raise ModelError(f"{p}: cannot read: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{p}: not valid JSON: {e}") from None
    except RecursionError:
        raise ModelError(f"{p}: JSON nests too deeply") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{p}: expected a JSON object (a Hugging Face config.json), got {type(cfg).__name__}")
    name = cfg.get("_name_or_path") or cfg.get("model_type") or p.parent.name or p.stem
    name = name if isinstance(name, str) else p.stem
    return from_config(cfg, str(name), tp, str(p))
