"""Attention planning: token table, task table and task reordering for Meta-Attention.

One Meta-Attention launch serves a whole hybrid batch of prefill (P), decode (D) and
speculative-verify (V) stages.  Each stage is cut *logically* into tiles of query tokens
(nothing is moved or padded), and every (tile, KV head) pair becomes one row of the task
table that the kernel reads.  Tasks are then sorted by estimated cost and dealt to cores in
symmetrical round-robin (0, 1, .., n-1, n-1, .., 1, 0, 0, 1, ..) so that cores finish
together (XY-Serve, arXiv 2412.18106).

Task-table ABI (int32 [NTASK, TASK_COLS]); a tile row r of a task is the pair
(query token Q_START + r // G, query head KV_HEAD * G + r % G):

====  ========  =================================================================
col   name      meaning
====  ========  =================================================================
0     SEQ       row of block_table for this task's sequence
1     Q_START   index in Q (token axis) of the task's first query token
2     Q_ROWS    number of query tokens in this task (1 .. BM // G)
3     Q_POS     KV position of the task's first query token (token i at Q_POS + i)
4     KV_LEN    valid KV positions of the sequence (includes the stage's new tokens)
5     MASK      MASK_CAUSAL (0): key j visible to query at p iff j <= p and j < KV_LEN;
                MASK_TREE (1): see SPEC_LEN
6     TREE_OFF  offset of the stage's S x S mask in the flat int32 tree_mask array
7     SPEC_LEN  S for tree stages (spec tokens at KV_LEN - S .. KV_LEN - 1; keys before
                KV_LEN - S are all visible, spec keys per tree_mask row); 0 for causal
8     KV_HEAD   KV head index
9     STAGE     index of the stage in the input list
====  ========  =================================================================

This module is a lower layer of the runtime: it imports only numpy and the stdlib.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "COL_SEQ", "COL_Q_START", "COL_Q_ROWS", "COL_Q_POS", "COL_KV_LEN", "COL_MASK",
    "COL_TREE_OFF", "COL_SPEC_LEN", "COL_KV_HEAD", "COL_STAGE", "TASK_COLS", "COLUMNS",
    "MASK_CAUSAL", "MASK_TREE", "KINDS", "KIND_CODES", "DEFAULT_TILE_ROWS",
    "Stage", "TokenTable", "Plan",
    "tokens_per_task", "token_table", "build_tasks", "task_costs",
    "symmetric_round_robin_assign", "round_robin_assign", "core_loads", "balance",
    "reorder", "plan", "KvSplit", "split_kv", "SPLIT_ALIGN", "SPLIT_MIN_KEYS",
]

# ---------------------------------------------------------------------------- ABI
COL_SEQ = 0
COL_Q_START = 1
COL_Q_ROWS = 2
COL_Q_POS = 3
COL_KV_LEN = 4
COL_MASK = 5
COL_TREE_OFF = 6
COL_SPEC_LEN = 7
COL_KV_HEAD = 8
COL_STAGE = 9
TASK_COLS = 10
COLUMNS = ("SEQ", "Q_START", "Q_ROWS", "Q_POS", "KV_LEN", "MASK", "TREE_OFF", "SPEC_LEN",
           "KV_HEAD", "STAGE")

MASK_CAUSAL = 0
MASK_TREE = 1

KINDS = ("prefill", "decode", "verify")
KIND_CODES = {k: i for i, k in enumerate(KINDS)}

#: Tile rows (query rows = tokens x GQA group) per stage kind; the XY-Serve paper's choice.
DEFAULT_TILE_ROWS = {"prefill": 128, "verify": 64, "decode": 16}


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


_I32_MAX = 2**31 - 1

# The planner's per-stage matrix (int32, column-major [_X_COLS, NSTAGE]): the task-row
# template in columns 0..9, then extras.
_X_TILE_TOK = TASK_COLS       # query tokens per tile
_X_TOKENS = TASK_COLS + 1     # query tokens of the stage
_X_KIND = TASK_COLS + 2       # kind code
_X_NUM_TILES = TASK_COLS + 3  # ceil(tokens / tile tokens)
_X_TREE_VIS = TASK_COLS + 4   # KV_LEN for tree stages, else 0 (visible keys of any tile)
_X_COLS = TASK_COLS + 5


# ---------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class Stage:
    """One prefill / decode / verify stage of a hybrid batch.

    kind:        "prefill", "decode" or "verify"
    seq:         row of the block table holding this stage's sequence
    q_start:     index of the stage's first query token in Q
    num_tokens:  query tokens of this stage (1 for decode)
    context_len: tokens already in the KV cache before this stage (prefix reuse, earlier
                 prefill chunks); the stage's own tokens sit at positions
                 context_len .. context_len + num_tokens - 1
    tree:        for tree verify only, a bool [S, S] mask (S == num_tokens); tree[i, j] means
                 spec token i may see spec token j.  Every token sees itself (diagonal true)
                 and only earlier tokens (its ancestors): nothing above the diagonal.
                 None means causal (chain verify).
    """

    kind: str
    seq: int
    q_start: int
    num_tokens: int
    context_len: int
    tree: Optional[np.ndarray] = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.kind not in KIND_CODES:
            raise ValueError(f"stage kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("seq", "q_start", "num_tokens", "context_len"):
            v = getattr(self, name)
            if not _is_int(v):
                raise ValueError(f"{self.kind} stage: {name} must be an integer, got {v!r}")
            if v < 0:
                raise ValueError(f"{self.kind} stage: {name} must be >= 0, got {v}")
            object.__setattr__(self, name, int(v))
        if self.num_tokens < 1:
            raise ValueError(f"{self.kind} stage: num_tokens must be >= 1, got {self.num_tokens}")
        if self.kind == "decode" and self.num_tokens != 1:
            raise ValueError(f"decode stage must have num_tokens == 1, got {self.num_tokens}")
        tree = self.tree
        if tree is not None:
            if self.kind != "verify":
                raise ValueError(f"only verify stages take a tree mask, not {self.kind}")
            tree = np.asarray(tree)
            if tree.dtype != np.bool_:
                if not (np.issubdtype(tree.dtype, np.integer) and np.isin(tree, (0, 1)).all()):
                    raise ValueError(f"verify stage: tree mask must be boolean (or 0/1), "
                                     f"got dtype {tree.dtype}")
                tree = tree.astype(np.bool_)
            s = self.num_tokens
            if tree.shape != (s, s):
                raise ValueError(f"verify stage: tree mask shape {tree.shape} does not match "
                                 f"num_tokens {s} (expected ({s}, {s}))")
            if not tree.diagonal().all():
                bad = int(np.flatnonzero(~tree.diagonal())[0])
                raise ValueError(f"verify stage: tree mask diagonal must be true (spec token "
                                 f"{bad} does not see itself)")
            if np.triu(tree, 1).any():
                i, j = (int(a[0]) for a in np.nonzero(np.triu(tree, 1)))
                raise ValueError(f"verify stage: tree mask lets spec token {i} see later token "
                                 f"{j}; tokens must be ordered parents before children")
            tree = tree.copy()
            tree.flags.writeable = False
            object.__setattr__(self, "tree", tree)
        end = max(self.q_start, self.context_len) + self.num_tokens
        if end > _I32_MAX:
            raise ValueError(f"{self.kind} stage: positions exceed the int32 range of the task "
                             f"table (q_start/context_len + num_tokens = {end})")
        # Packed int32 row (bytes) used by the vectorised planner, and the flat int32 tree.
        row = [0] * _X_COLS
        row[COL_SEQ] = self.seq
        row[COL_Q_START] = self.q_start
        row[COL_Q_POS] = self.context_len
        row[COL_KV_LEN] = self.context_len + self.num_tokens
        row[_X_TOKENS] = self.num_tokens
        row[_X_KIND] = KIND_CODES[self.kind]
        if tree is not None:
            row[COL_MASK] = MASK_TREE
            row[COL_SPEC_LEN] = self.num_tokens
            row[_X_TREE_VIS] = self.context_len + self.num_tokens
        object.__setattr__(self, "_row", np.array(row, dtype=np.int32).tobytes())
        object.__setattr__(self, "_tree_bytes",
                           None if tree is None else tree.ravel().astype(np.int32).tobytes())

    # Derived quantities of the ABI.
    @property
    def q_pos(self) -> int:
        return self.context_len

    @property
    def kv_len(self) -> int:
        return self.context_len + self.num_tokens

    @property
    def is_tree(self) -> bool:
        return self.tree is not None

    @classmethod
    def prefill(cls, seq: int, q_start: int, num_tokens: int, context_len: int = 0) -> "Stage":
        return cls("prefill", seq, q_start, num_tokens, context_len)

    @classmethod
    def decode(cls, seq: int, q_start: int, context_len: int) -> "Stage":
        return cls("decode", seq, q_start, 1, context_len)

    @classmethod
    def verify(cls, seq: int, q_start: int, num_tokens: int, context_len: int,
               tree: Optional[np.ndarray] = None) -> "Stage":
        return cls("verify", seq, q_start, num_tokens, context_len, tree)


# ---------------------------------------------------------------------------- token table
class TokenTable:
    """Token table of a batch: one entry per stage, in input order.

    Array attributes (int32 [NSTAGE] unless noted; read-only views of one matrix):
    kind (KIND_CODES), seq, start (first token in Q), tokens, q_pos (= context_len),
    kv_len (context_len + tokens), tree (bool), spec_len (S for tree stages, else 0),
    tree_off (offset of the stage's mask in tree_mask), tile_tokens (query tokens per tile),
    tile_rows (tile_tokens * G), num_tiles (ceil(tokens / tile_tokens)).
    """

    __slots__ = ("_x", "group")

    def __init__(self, x: np.ndarray, group: int):
        self._x = x          # column-major: x[column] is one field of every stage
        self.group = group

    def __len__(self) -> int:
        return int(self._x.shape[1])

    def _col(self, c: int) -> np.ndarray:
        v = self._x[c]
        v.flags.writeable = False
        return v

    kind = property(lambda self: self._col(_X_KIND))
    seq = property(lambda self: self._col(COL_SEQ))
    start = property(lambda self: self._col(COL_Q_START))
    tokens = property(lambda self: self._col(_X_TOKENS))
    q_pos = property(lambda self: self._col(COL_Q_POS))
    kv_len = property(lambda self: self._col(COL_KV_LEN))
    spec_len = property(lambda self: self._col(COL_SPEC_LEN))
    tree_off = property(lambda self: self._col(COL_TREE_OFF))
    tile_tokens = property(lambda self: self._col(_X_TILE_TOK))
    num_tiles = property(lambda self: self._col(_X_NUM_TILES))

    @property
    def tree(self) -> np.ndarray:
        return self._x[COL_MASK] == MASK_TREE

    @property
    def tile_rows(self) -> np.ndarray:
        return self._x[_X_TILE_TOK] * self.group

    @property
    def total_tokens(self) -> int:
        return int(self._x[_X_TOKENS].sum())

    @property
    def total_tiles(self) -> int:
        return int(self._x[_X_NUM_TILES].sum())

    def gap(self) -> Optional[Tuple[int, int]]:
        """The first range [a, b) of Q tokens no stage covers, below the last stage's end, or
        None when the stages tile 0 .. total-1 (stages are already known not to overlap)."""
        start = self._x[COL_Q_START]
        end = start + self._x[_X_TOKENS]
        if start.size == 0 or (start[0] == 0 and (start[1:] == end[:-1]).all()):
            return None             # the usual layout: in order, back to back
        pos = 0
        for i in np.argsort(start, kind="stable").tolist():
            if int(start[i]) != pos:
                return pos, int(start[i])
            pos = int(end[i])
        return None

    def kinds(self) -> list:
        """Stage kinds as strings."""
        return [KINDS[k] for k in self._x[_X_KIND].tolist()]

    def __repr__(self) -> str:
        return (f"TokenTable({len(self)} stages, {self.total_tokens} tokens, "
                f"{self.total_tiles} tiles, G={self.group})")


def tokens_per_task(kind: str, group: int, bm: int,
                    tile_rows: Optional[Mapping[str, int]] = None) -> int:
    """Query tokens per task for a stage kind: max(1, tile_rows[kind] // G), capped at BM // G."""
    if kind not in KIND_CODES:
        raise ValueError(f"stage kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return int(_per_kind(group, bm, tile_rows)[KIND_CODES[kind]])


def _tile_rows(tile_rows: Optional[Mapping[str, int]]) -> dict:
    if tile_rows is None:
        return DEFAULT_TILE_ROWS
    rows = dict(DEFAULT_TILE_ROWS)
    for k, v in tile_rows.items():
        if k not in KIND_CODES:
            raise ValueError(f"tile_rows: unknown stage kind {k!r} (expected one of "
                             f"{', '.join(KINDS)})")
        if not _is_int(v) or v < 1:
            raise ValueError(f"tile_rows[{k!r}] must be a positive integer, got {v!r}")
        rows[k] = int(v)
    return rows


def _check_bm(group: int, bm: int) -> None:
    if not _is_int(group) or group < 1:
        raise ValueError(f"GQA group must be a positive integer, got {group!r}")
    if not _is_int(bm) or bm < 1:
        raise ValueError(f"BM must be a positive integer, got {bm!r}")
    if bm < group:
        raise ValueError(f"BM ({bm}) is smaller than the GQA group ({group}): a tile cannot "
                         f"hold all query heads of one token")
    if bm % group != 0:
        raise ValueError(f"BM ({bm}) must be a multiple of the GQA group ({group})")


def _stage_matrix(stages: Sequence[Stage]) -> np.ndarray:
    """Column-major int32 [_X_COLS, NSTAGE] matrix of the stages' packed rows."""
    try:
        buf = b"".join([s._row for s in stages])
    except (AttributeError, TypeError):
        bad = next(s for s in stages if not isinstance(s, Stage))
        raise ValueError(f"stages must be Stage objects, got {type(bad).__name__}") from None
    return np.frombuffer(buf, dtype=np.int32).reshape(-1, _X_COLS).T.copy()


def _check_batch(stages: Sequence[Stage], x: np.ndarray) -> None:
    """Stages must not share query tokens."""
    if x.shape[1] < 2:
        return
    start = x[COL_Q_START]
    end = start + x[_X_TOKENS]
    if (start[1:] >= end[:-1]).all():   # the usual case: ascending, disjoint
        return
    order = np.argsort(start, kind="stable")
    clash = np.flatnonzero(end[order[:-1]] > start[order[1:]])
    if clash.size:
        a, b = int(order[clash[0]]), int(order[clash[0] + 1])
        raise ValueError(f"stages {a} and {b} overlap in Q: tokens "
                         f"[{stages[a].q_start}, {stages[a].q_start + stages[a].num_tokens}) and "
                         f"[{stages[b].q_start}, {stages[b].q_start + stages[b].num_tokens})")


def _per_kind(group: int, bm: int, tile_rows) -> np.ndarray:
    if tile_rows is None:
        return _per_kind_default(group, bm)
    _check_bm(group, bm)
    trows = _tile_rows(tile_rows)
    cap = bm // group
    return np.array([min(max(1, trows[k] // group), cap) for k in KINDS], dtype=np.int32)


@functools.lru_cache(maxsize=64)
def _per_kind_default(group: int, bm: int) -> np.ndarray:
    _check_bm(group, bm)
    cap = bm // group
    out = np.array([min(max(1, DEFAULT_TILE_ROWS[k] // group), cap) for k in KINDS],
                   dtype=np.int32)
    out.flags.writeable = False
    return out


def _token_table(stages: Sequence[Stage], group: int, bm: int, tile_rows) -> TokenTable:
    per_kind = _per_kind(group, bm, tile_rows)
    x = _stage_matrix(stages)
    _check_batch(stages, x)
    x[COL_STAGE] = np.arange(x.shape[1])
    tile_tok = x[_X_TILE_TOK]
    per_kind.take(x[_X_KIND], out=tile_tok)
    num_tiles = x[_X_NUM_TILES]
    np.add(x[_X_TOKENS], tile_tok, out=num_tiles)
    num_tiles -= 1
    num_tiles //= tile_tok
    spec = x[COL_SPEC_LEN]
    if spec.any():
        sq = spec * spec
        tree_off = x[COL_TREE_OFF]
        sq.cumsum(out=tree_off)
        tree_off -= sq
    return TokenTable(x, group)


def token_table(stages: Sequence[Stage], group: int, bm: int,
                tile_rows: Optional[Mapping[str, int]] = None) -> TokenTable:
    """Token table of a batch: per stage start, tokens, KV length and tile size."""
    return _token_table(stages, group, bm, tile_rows)


# ---------------------------------------------------------------------------- tasks
def _tiles(stages: Sequence[Stage], tt: TokenTable, group: int, sort: bool):
    """Tile-level table (one row per tile, KV_HEAD = 0), tree mask and tile costs.

    All KV heads of a tile cost the same, so sorting tiles (stably) and then expanding each
    tile into its KV heads gives exactly the stable sort of the task table."""
    x = tt._x
    nst = x.shape[1]
    tree_idx = x[COL_MASK].nonzero()[0]
    if tree_idx.size:
        tree_mask = np.frombuffer(b"".join([stages[i]._tree_bytes for i in tree_idx.tolist()]),
                                  dtype=np.int32).copy()
    else:
        tree_mask = np.zeros(1, np.int32)

    # Tiles: each stage's column repeated num_tiles times, shifted by the tile's token offset.
    ntiles = x[_X_NUM_TILES]
    total = int(ntiles.sum())
    if total == nst:
        g = x.copy()
        q_rows = g[COL_Q_ROWS]
        q_rows[:] = g[_X_TOKENS]
    else:
        stage_of = np.arange(nst).repeat(ntiles)
        first = ntiles.cumsum()
        first -= ntiles
        g = x.take(stage_of, axis=1)
        off = np.arange(total, dtype=np.int32)
        off -= first.take(stage_of)
        off *= g[_X_TILE_TOK]
        g[COL_Q_START] += off
        g[COL_Q_POS] += off
        q_rows = g[COL_Q_ROWS]
        np.subtract(g[_X_TOKENS], off, out=q_rows)
        np.minimum(q_rows, g[_X_TILE_TOK], out=q_rows)
    # Visible keys: causal tiles see up to their last query, min(KV_LEN, Q_POS + Q_ROWS),
    # which is Q_POS + Q_ROWS since a tile lies inside its stage; tree tiles see KV_LEN,
    # stored as _X_TREE_VIS (>= Q_POS + Q_ROWS; 0 for causal stages).
    visible = g[COL_Q_POS] + q_rows
    np.maximum(visible, g[_X_TREE_VIS], out=visible)
    cost = np.multiply(q_rows, visible, dtype=np.int64)
    if group != 1:
        cost *= group
    if sort:
        order = (-cost).argsort(kind="stable")
        tiles = g[:TASK_COLS].take(order, axis=1).T
        return np.ascontiguousarray(tiles), tree_mask, cost.take(order)
    return np.ascontiguousarray(g[:TASK_COLS].T), tree_mask, cost


def _expand_heads(tiles: np.ndarray, num_kv_heads: int) -> np.ndarray:
    if num_kv_heads == 1:
        return tiles
    tasks = tiles.repeat(num_kv_heads, axis=0)
    tasks.reshape(tiles.shape[0], num_kv_heads, TASK_COLS)[:, :, COL_KV_HEAD] = \
        np.arange(num_kv_heads, dtype=np.int32)
    return tasks


def _check_heads(num_kv_heads: int) -> None:
    if not _is_int(num_kv_heads) or num_kv_heads < 1:
        raise ValueError(f"num_kv_heads must be a positive integer, got {num_kv_heads!r}")


def build_tasks(stages: Sequence[Stage], num_kv_heads: int, group: int, bm: int,
                tile_rows: Optional[Mapping[str, int]] = None
                ) -> Tuple[np.ndarray, np.ndarray]:
    """Cut every stage into tiles of tokens; one task per (tile, KV head).

    Returns (task_table int32 [NTASK, TASK_COLS], tree_mask int32 flat, >= 1 element).
    Tasks come in stage order, then tile order, then KV head (fastest).
    """
    _check_heads(num_kv_heads)
    tt = _token_table(stages, group, bm, tile_rows)
    tiles, tree_mask, _ = _tiles(stages, tt, group, sort=False)
    return _expand_heads(tiles, num_kv_heads), tree_mask


def task_costs(tasks: np.ndarray, group: int = 1) -> np.ndarray:
    """Estimated cost of each task: Q_ROWS * G * visible KV length (int64).

    Causal: keys up to the tile's last query, min(KV_LEN, Q_POS + Q_ROWS); tree: KV_LEN.
    With the default group=1 the costs are proportional to the true ones (enough to order).
    """
    tasks = np.asarray(tasks)
    q_rows = tasks[:, COL_Q_ROWS].astype(np.int64)
    kv_len = tasks[:, COL_KV_LEN].astype(np.int64)
    causal_len = np.minimum(kv_len, tasks[:, COL_Q_POS].astype(np.int64) + q_rows)
    visible = np.where(tasks[:, COL_MASK] == MASK_TREE, kv_len, causal_len)
    return q_rows * group * visible


# ---------------------------------------------------------------------------- reordering
_PATTERNS: dict = {}


def _pattern(num_cores: int, symmetric: bool, length: int) -> np.ndarray:
    """Cached read-only core pattern of at least `length` entries."""
    key = (num_cores, symmetric)
    pat = _PATTERNS.get(key)
    if pat is None or pat.shape[0] < length:
        if symmetric:
            period = np.concatenate([np.arange(num_cores, dtype=np.int32),
                                     np.arange(num_cores - 1, -1, -1, dtype=np.int32)])
        else:
            period = np.arange(num_cores, dtype=np.int32)
        n = max(length, 4096, 0 if pat is None else 2 * pat.shape[0])
        pat = np.tile(period, -(-n // period.shape[0]))
        pat.flags.writeable = False
        _PATTERNS[key] = pat
    return pat


def symmetric_round_robin_assign(num_tasks: int, num_cores: int) -> np.ndarray:
    """Cores for tasks in order: 0, 1, .., n-1, n-1, .., 1, 0, 0, 1, .. (int32)."""
    _check_cores(num_cores)
    return _pattern(num_cores, True, num_tasks)[:num_tasks].copy()


def round_robin_assign(num_tasks: int, num_cores: int) -> np.ndarray:
    """Plain round-robin: 0, 1, .., n-1, 0, 1, .. (int32)."""
    _check_cores(num_cores)
    return _pattern(num_cores, False, num_tasks)[:num_tasks].copy()


def _check_cores(num_cores: int) -> None:
    if not _is_int(num_cores) or num_cores < 1:
        raise ValueError(f"num_cores must be a positive integer, got {num_cores!r}")


def core_loads(costs: np.ndarray, assignment: np.ndarray, num_cores: int) -> np.ndarray:
    """Total cost per core (float64 [num_cores])."""
    return np.bincount(np.asarray(assignment), weights=np.asarray(costs, dtype=np.float64),
                       minlength=num_cores)[:num_cores]


def balance(costs: np.ndarray, assignment: np.ndarray, num_cores: int) -> float:
    """Max core load / mean core load (1.0 is perfect; 1.0 for an empty batch)."""
    loads = core_loads(costs, assignment, num_cores)
    total = loads.sum()
    if total <= 0:
        return 1.0
    return float(loads.max() * num_cores / total)


def _reorder(tasks: np.ndarray, num_cores: int, group: int):
    costs = task_costs(tasks, group)
    order = np.argsort(-costs, kind="stable")
    assignment = symmetric_round_robin_assign(tasks.shape[0], num_cores)
    return tasks[order], assignment, costs[order]


def reorder(tasks: np.ndarray, num_cores: int, group: int = 1
            ) -> Tuple[np.ndarray, np.ndarray]:
    """Sort tasks by descending estimated cost (stable) and deal them to cores in
    symmetrical round-robin.  Returns (ordered task table, core of each ordered task)."""
    ordered, assignment, _ = _reorder(np.asarray(tasks), num_cores, group)
    return ordered, assignment


# ---------------------------------------------------------------------------- plan
@dataclass
class Plan:
    """Everything one Meta-Attention launch needs for a batch (plan once, run every layer)."""

    task_table: np.ndarray   # int32 [NTASK, TASK_COLS], sorted by descending cost
    tree_mask: np.ndarray    # int32 flat, >= 1 element
    tokens: TokenTable       # per-stage token table
    assignment: np.ndarray   # int32 [NTASK]: core of each task of task_table (read-only)
    costs: np.ndarray        # int64 [NTASK]: estimated cost of each task of task_table
    balance: float           # max core load / mean core load
    num_cores: int
    num_kv_heads: int
    group: int
    bm: int
    split: Optional["KvSplit"] = None   # set by split_kv: run as chunks + merge instead

    @property
    def num_tasks(self) -> int:
        return int(self.task_table.shape[0])

    @property
    def num_tokens(self) -> int:
        """Query tokens covered (the Q rows the launch writes)."""
        return self.tokens.total_tokens

    def core_tasks(self) -> Tuple[np.ndarray, np.ndarray]:
        """CSR view of the assignment: (ptr int32 [num_cores + 1], task indices int32) so that
        core c runs task_table[idx[ptr[c]:ptr[c+1]]], in descending-cost order."""
        idx = np.argsort(self.assignment, kind="stable").astype(np.int32)
        counts = np.bincount(self.assignment, minlength=self.num_cores)
        ptr = np.zeros(self.num_cores + 1, np.int32)
        np.cumsum(counts, out=ptr[1:])
        return ptr, idx


def plan(stages: Sequence[Stage], num_kv_heads: int, group: int, bm: int, num_cores: int,
         tile_rows: Optional[Mapping[str, int]] = None) -> Plan:
    """Token table -> tile tasks -> cost-sorted symmetric round-robin over num_cores.

    Same result as reorder(build_tasks(...), num_cores, group), computed at tile level."""
    _check_cores(num_cores)
    _check_heads(num_kv_heads)
    tt = _token_table(stages, group, bm, tile_rows)
    tiles, tree_mask, tile_cost = _tiles(stages, tt, group, sort=True)
    tasks = _expand_heads(tiles, num_kv_heads)
    ntask = tasks.shape[0]
    assignment = _pattern(num_cores, True, ntask)[:ntask]   # read-only view
    costs = tile_cost.repeat(num_kv_heads) if num_kv_heads > 1 else tile_cost
    # Loads of a periodic assignment: fold the costs over one period 0..n-1, n-1..0.
    period = 2 * num_cores
    folded = np.zeros(-(-ntask // period) * period, np.int64)
    folded[:ntask] = costs
    per_slot = folded.reshape(-1, period).sum(axis=0)
    loads = per_slot[:num_cores] + per_slot[:num_cores - 1:-1]
    total = int(loads.sum())
    bal = float(loads.max()) * num_cores / total if total > 0 else 1.0
    return Plan(task_table=tasks, tree_mask=tree_mask, tokens=tt, assignment=assignment,
                costs=costs, balance=bal, num_cores=int(num_cores),
                num_kv_heads=int(num_kv_heads), group=int(group), bm=int(bm))


# ---------------------------------------------------------------------------- split-KV
#: Chunk starts are multiples of this (every BN a variant space has divides it), so each
#: chunk's KV tiles line up with the unsplit kernel's.
SPLIT_ALIGN = 128
#: Fewest keys a chunk gets: below this the merge costs more than the parallelism gains.
SPLIT_MIN_KEYS = 512


@dataclass
class KvSplit:
    """A plan's tasks cut into KV chunks (flash-decoding): meta_attention_split runs one
    program per part and attention_merge one per original task.

    tasks: int32 [NP, TASK_COLS] the task row of each part (copied from its task);
    kv:    int32 [NP, 2] the part's keys [start, stop) (clipped to the task's visible keys by
           the kernel); start a multiple of SPLIT_ALIGN;
    merge: int32 [NU, 2] per task of the plan: its first part and number of parts."""
    tasks: np.ndarray
    kv: np.ndarray
    merge: np.ndarray
    chunk: int

    @property
    def num_parts(self) -> int:
        return int(self.tasks.shape[0])


def split_kv(p: Plan, min_keys: int = SPLIT_MIN_KEYS) -> Optional[KvSplit]:
    """Cut the plan's tasks into KV chunks when they are too few to fill its cores, or None
    when splitting would not help (the cores are full, or no task has 2 chunks' worth of
    keys). The chunk size spreads the batch's visible keys over one wave of the cores (at most
    num_cores parts), a multiple of SPLIT_ALIGN and at least ``min_keys``."""
    n = p.num_tasks
    if n == 0 or n >= p.num_cores:
        return None
    t = p.task_table
    q_rows = t[:, COL_Q_ROWS].astype(np.int64)
    kv_len = t[:, COL_KV_LEN].astype(np.int64)
    vis = np.where(t[:, COL_MASK] == MASK_TREE, kv_len,
                   np.minimum(kv_len, t[:, COL_Q_POS].astype(np.int64) + q_rows))
    total = int(vis.sum())
    chunk = max(min_keys, -(-total // p.num_cores))
    chunk = -(-chunk // SPLIT_ALIGN) * SPLIT_ALIGN
    parts = np.maximum(1, -(-vis // chunk))
    while int(parts.sum()) > p.num_cores:     # rounding up spilled into a second wave
        chunk += SPLIT_ALIGN
        parts = np.maximum(1, -(-vis // chunk))
    if int(parts.max()) < 2:
        return None
    np_ = int(parts.sum())
    first = np.zeros(n, np.int64)
    np.cumsum(parts[:-1], out=first[1:])
    owner = np.repeat(np.arange(n), parts)
    k = np.arange(np_, dtype=np.int64) - first[owner]       # chunk index within its task
    kv = np.stack([k * chunk, (k + 1) * chunk], axis=1)
    merge = np.stack([first, parts], axis=1)
    if kv.max(initial=0) > _I32_MAX:
        raise ValueError(f"split_kv: a chunk bound {int(kv.max())} overflows int32")
    return KvSplit(tasks=np.ascontiguousarray(t[owner]), kv=kv.astype(np.int32),
                   merge=merge.astype(np.int32), chunk=chunk)
