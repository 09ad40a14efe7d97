"""Random hybrid attention batches (prefill / decode / verify) for tests and benchmarks.

A batch is described by a list of stage specs, one tuple per stage:

    ("prefill", num_tokens, context_len)
    ("decode", context_len)
    ("verify", num_tokens, context_len, tree)     # tree: None (chain), True (random tree)
                                                  # or a bool [S, S] mask

(the helpers prefill(), decode() and verify() build these tuples).  make_attention_case()
turns a spec into concrete arrays: Q for all tokens of the batch, a paged K/V cache whose
physical blocks are shuffled, a block table, and the Stage list of runtime.plan.  Every
cache slot that the batch must not read (unused blocks of the pool, slots past a sequence's
end) holds large garbage, so a kernel that reads one gets a visibly wrong answer.

Stage i uses block-table row i; its tokens follow those of stage i - 1 in Q.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import ml_dtypes
import numpy as np

__all__ = [
    "AttentionCase", "make_attention_case", "prefill", "decode", "verify", "random_tree",
    "normalize_spec", "standard_cases", "make_standard_cases", "as_numpy_dtype",
    "BF16", "F16", "F32",
]

F16 = np.dtype(np.float16)
BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.dtype(np.float32)
_DTYPE_NAMES = {"f16": F16, "float16": F16, "bf16": BF16, "bfloat16": BF16,
                "f32": F32, "float32": F32}


def as_numpy_dtype(dtype) -> np.dtype:
    """np.float16 / ml_dtypes.bfloat16 / np.float32, or the names f16 / bf16 / f32."""
    if isinstance(dtype, str):
        if dtype not in _DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}; expected f16, bf16 or f32")
        return _DTYPE_NAMES[dtype]
    dt = np.dtype(dtype)
    if dt not in (F16, BF16, F32):
        raise ValueError(f"attention cases use f16, bf16 or f32, not {dt}")
    return dt


# ---------------------------------------------------------------------------- specs
def prefill(num_tokens: int, context_len: int = 0) -> tuple:
    """A prefill (chunk) of num_tokens after context_len cached tokens (prefix reuse or
    earlier chunks)."""
    return ("prefill", num_tokens, context_len)


def decode(context_len: int) -> tuple:
    """One decode token after context_len cached tokens."""
    return ("decode", context_len)


def verify(num_tokens: int, context_len: int, tree: Union[None, bool, np.ndarray] = None
           ) -> tuple:
    """A speculative verify of num_tokens; tree None = chain (causal), True = random tree
    drawn by make_attention_case, or an explicit bool [S, S] mask."""
    return ("verify", num_tokens, context_len, tree)


def normalize_spec(spec: Sequence) -> Tuple[str, int, int, Any]:
    """(kind, num_tokens, context_len, tree) of one stage spec tuple."""
    if not isinstance(spec, (tuple, list)) or not spec:
        raise ValueError(f"stage spec must be a tuple like ('prefill', n, ctx), got {spec!r}")
    kind = spec[0]
    if kind == "prefill" and len(spec) in (2, 3):
        return ("prefill", int(spec[1]), int(spec[2]) if len(spec) == 3 else 0, None)
    if kind == "decode" and len(spec) == 2:
        return ("decode", 1, int(spec[1]), None)
    if kind == "verify" and len(spec) in (3, 4):
        return ("verify", int(spec[1]), int(spec[2]), spec[3] if len(spec) == 4 else None)
    raise ValueError(f"bad stage spec {spec!r}: expected ('prefill', num_tokens, context_len), "
                     f"('decode', context_len) or ('verify', num_tokens, context_len, tree)")


def random_tree(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random token tree of `size` nodes as a bool [S, S] ancestor mask.

    Node 0 is the root; node i > 0 gets a random parent among 0..i-1 (parents precede
    children).  mask[i, j] is true iff j is i or an ancestor of i."""
    if size < 1:
        raise ValueError(f"tree size must be >= 1, got {size}")
    mask = np.eye(size, dtype=bool)
    for i in range(1, size):
        parent = int(rng.integers(0, i))
        mask[i] |= mask[parent]
    return mask


# ---------------------------------------------------------------------------- cases
@dataclass
class AttentionCase:
    """A concrete hybrid batch.

    q:           [T, HQ, D] queries of all tokens of the batch (dtype)
    k_cache:     [NB, BS, HKV, D] paged keys (dtype)
    v_cache:     [NB, BS, HKV, D] paged values (dtype)
    block_table: int32 [NSEQ, MAXB] (sequence, logical block) -> physical block; unused 0
    stages:      list of runtime.plan.Stage, stage i on block-table row i
    scale:       softmax scale, 1 / sqrt(D)
    """

    q: np.ndarray
    k_cache: np.ndarray
    v_cache: np.ndarray
    block_table: np.ndarray
    stages: List[Any]
    scale: float
    name: str = ""
    spec: List[tuple] = field(default_factory=list, repr=False)

    @property
    def dtype(self) -> np.dtype:
        return self.q.dtype

    @property
    def num_tokens(self) -> int:
        return int(self.q.shape[0])

    @property
    def num_q_heads(self) -> int:
        return int(self.q.shape[1])

    @property
    def num_kv_heads(self) -> int:
        return int(self.k_cache.shape[2])

    @property
    def group(self) -> int:
        return self.num_q_heads // self.num_kv_heads

    @property
    def head_dim(self) -> int:
        return int(self.q.shape[2])

    @property
    def block_size(self) -> int:
        return int(self.k_cache.shape[1])

    @property
    def num_blocks(self) -> int:
        return int(self.k_cache.shape[0])

    def kv_lens(self) -> np.ndarray:
        """int32 [NSTAGE]: valid KV positions of each stage's sequence."""
        return np.array([s.context_len + s.num_tokens for s in self.stages], np.int32)

    def describe(self) -> str:
        kinds = {}
        for s in self.stages:
            k = s.kind + ("(tree)" if getattr(s, "tree", None) is not None else "")
            kinds[k] = kinds.get(k, 0) + 1
        mix = ", ".join(f"{n} {k}" for k, n in kinds.items())
        return (f"{self.name or 'case'}: T={self.num_tokens} HQ={self.num_q_heads} "
                f"HKV={self.num_kv_heads} D={self.head_dim} BS={self.block_size} "
                f"{self.dtype} [{mix}]")


def make_attention_case(rng, stages_spec: Sequence[Sequence], num_q_heads: int,
                        num_kv_heads: int, head_dim: int, block_size: int, dtype,
                        *, garbage: float = 100.0, extra_blocks: Optional[int] = None,
                        name: str = "") -> AttentionCase:
    """Build a random hybrid batch (see the module docstring for stages_spec).

    rng: numpy Generator (or an int seed).  Values of Q and of every valid K/V slot are
    N(0, 1); unread slots hold +-[garbage/2, garbage].  Physical blocks are a random
    permutation of the pool, which has `extra_blocks` unused blocks (default: a quarter of
    the used ones, at least 2).  Block-table entries past a sequence's last block are 0.
    """
    # Stage lives in the runtime; imported here so that importing this module stays light.
    from runtime.plan import Stage

    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    dt = as_numpy_dtype(dtype)
    if num_q_heads < 1 or num_kv_heads < 1 or num_q_heads % num_kv_heads:
        raise ValueError(f"num_q_heads ({num_q_heads}) must be a positive multiple of "
                         f"num_kv_heads ({num_kv_heads})")
    if head_dim < 1 or block_size < 1:
        raise ValueError("head_dim and block_size must be positive")
    specs = [normalize_spec(s) for s in stages_spec]
    if not specs:
        raise ValueError("a case needs at least one stage")

    stages = []
    q_start = 0
    for i, (kind, n, ctx, tree) in enumerate(specs):
        if kind == "verify" and tree is not None:
            if tree is True:
                tree = random_tree(rng, n)
            elif tree is False:
                tree = None
            else:
                tree = np.asarray(tree, dtype=bool)
        stages.append(Stage(kind, i, q_start, n, ctx, tree))
        q_start += n
    total = q_start

    kv_lens = np.array([s.context_len + s.num_tokens for s in stages], np.int64)
    nblk = -(-kv_lens // block_size)
    used = int(nblk.sum())
    if extra_blocks is None:
        extra_blocks = max(2, used // 4)
    pool = used + int(extra_blocks)
    maxb = int(nblk.max()) + 1            # one always-unused column
    perm = rng.permutation(pool).astype(np.int32)
    block_table = np.zeros((len(stages), maxb), np.int32)
    cursor = 0
    for i, nb in enumerate(nblk.tolist()):
        block_table[i, :nb] = perm[cursor:cursor + nb]
        cursor += nb

    shape = (pool, block_size, num_kv_heads, head_dim)

    def garbage_fill():
        mag = rng.uniform(0.5 * garbage, garbage, size=shape)
        return (mag * rng.choice(np.array([-1.0, 1.0]), size=shape)).astype(np.float32)

    k = garbage_fill()
    v = garbage_fill()
    # Valid slots: positions 0..KV_LEN-1 of every sequence.
    seq_of = np.repeat(np.arange(len(stages)), kv_lens)
    first = np.cumsum(kv_lens) - kv_lens
    pos = np.arange(int(kv_lens.sum())) - np.repeat(first, kv_lens)
    phys = block_table[seq_of, pos // block_size]
    slot = pos % block_size
    k[phys, slot] = rng.standard_normal((pos.size, num_kv_heads, head_dim))
    v[phys, slot] = rng.standard_normal((pos.size, num_kv_heads, head_dim))

    q = rng.standard_normal((total, num_q_heads, head_dim)).astype(np.float32)
    return AttentionCase(q=q.astype(dt), k_cache=k.astype(dt), v_cache=v.astype(dt),
                         block_table=block_table, stages=stages,
                         scale=1.0 / float(np.sqrt(head_dim)), name=name,
                         spec=[tuple(s) for s in stages_spec])


# ---------------------------------------------------------------------------- presets
def _case(stages_spec, hq, hkv, d, bs, dtype, quick=False):
    return dict(stages_spec=list(stages_spec), num_q_heads=hq, num_kv_heads=hkv,
                head_dim=d, block_size=bs, dtype=dtype), quick


_DECODE_CTX = [0, 1, 15, 16, 17, 31, 64, 100, 127, 128, 129, 200, 255, 256, 299, 7,
               42, 63, 90, 150, 211, 240, 3, 33]


def _standard():
    return [
        # name, (kwargs, in quick subset)
        ("prefill_prefix_g1_d64_f16",
         _case([prefill(77, 150), prefill(33, 0)], 4, 4, 64, 16, F16)),
        ("prefill_chunks_g4_d128_bf16",
         _case([prefill(130, 37), prefill(61, 0)], 8, 2, 128, 32, BF16)),
        ("prefill_small_g4_d128_f16",
         _case([prefill(19, 21), prefill(6, 0)], 8, 2, 128, 16, F16, quick=True)),
        ("decodes_g4_d128_bf16",
         _case([decode(c) for c in _DECODE_CTX], 8, 2, 128, 16, BF16)),
        ("decodes_g8_d64_f16",
         _case([decode(c) for c in _DECODE_CTX[:10]], 8, 1, 64, 16, F16, quick=True)),
        ("chain_verify_g8_d64_f16",
         _case([verify(5, 40), verify(7, 123), verify(2, 0), verify(13, 280)], 16, 2, 64, 16,
               F16)),
        ("tree_verify_g4_d128_f16",
         _case([verify(7, 60, True), verify(11, 200, True), verify(1, 5, True),
                verify(4, 0, True)], 8, 2, 128, 16, F16)),
        ("tree_verify_small_g1_d64_bf16",
         _case([verify(6, 10, True), verify(3, 0, True), verify(5, 17)], 2, 2, 64, 8, BF16,
               quick=True)),
        ("mixed_g4_d64_bf16",
         _case([prefill(45, 0), prefill(70, 37)] + [decode(c) for c in (3, 64, 129, 250)]
               + [verify(5, 80), verify(9, 33, True)], 8, 2, 64, 16, BF16)),
        ("mixed_g1_d128_f16",
         _case([prefill(53, 111), decode(0), decode(77), verify(6, 19), verify(8, 140, True),
                prefill(17, 0)], 2, 2, 128, 16, F16)),
        ("mixed_g8_d128_bf16",
         _case([prefill(37, 64), decode(12), decode(200), verify(4, 20), verify(10, 90, True)],
               16, 2, 128, 32, BF16)),
        ("mixed_small_g4_d64_f16",
         _case([prefill(11, 5), decode(0), decode(29), verify(3, 8), verify(5, 13, True)],
               4, 1, 64, 8, F16, quick=True)),
    ]


def standard_cases(quick: bool = False) -> List[Tuple[str, dict]]:
    """Named presets as (name, kwargs for make_attention_case without rng).

    Covers a prefill chunk with prefix reuse, many decodes, chain verify, tree verify and
    mixed batches; GQA groups 1, 4 and 8; head dims 64 and 128; f16 and bf16.  Token counts
    are ragged (not multiples of the tile sizes).  quick=True returns a small subset (every
    kind, tree verify, groups 1/4/8, both dtypes) for slow interpreters."""
    out = []
    for name, (kwargs, is_quick) in _standard():
        if quick and not is_quick:
            continue
        out.append((name, kwargs))
    return out


def make_standard_cases(seed: int = 0, quick: bool = False) -> List[AttentionCase]:
    """standard_cases() turned into AttentionCase objects, each from its own seeded rng."""
    cases = []
    for i, (name, kwargs) in enumerate(standard_cases(quick)):
        rng = np.random.default_rng([seed, i])
        cases.append(make_attention_case(rng, name=name, **kwargs))
    return cases
