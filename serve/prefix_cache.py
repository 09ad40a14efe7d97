"""Prefix reuse at token granularity: a radix tree over cached KV blocks (SGLang's idea, on
vLLM-style paged blocks).

The tree's nodes are KV blocks: a node holds the token ids whose KV its block stores (a full
block of ``block_size`` tokens, or fewer for a tail) and its children are keyed by their
tokens. A new request walks down the full blocks of its tokens, then finds, among the next
level's nodes, the one sharing the longest run of leading tokens with it; so the match may end
inside a block. Matched full blocks are shared (reference-counted in the block pool); a match
ending inside a block is copied on write: the engine copies the first tokens of that block's
KV into a fresh block the request owns and writes after.

Only KV that a finished step wrote enters the tree: a sequence's full blocks as soon as they
are computed (so requests arriving together share a system prompt), its tail block when it
finishes normally. An aborted or preempted request adds nothing more. The tree holds one
reference per node; a node no sequence uses is evictable, least recently used first, leaves
before their parents.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .block_pool import BlockPool

__all__ = ["PrefixCache", "Match"]


@dataclass(eq=False)
class _Node:
    tokens: tuple
    block: int
    parent: "_Node | None"
    children: dict = field(default_factory=dict)     # tokens tuple -> node
    last_use: int = 0


@dataclass
class Match:
    blocks: list[int]           # full blocks to share, in order
    partial_block: int | None   # block whose first ``partial`` tokens the request copies
    partial: int
    tokens: int                 # matched tokens in all: len(blocks) * block_size + partial


class PrefixCache:
    def __init__(self, pool: BlockPool):
        self.pool = pool
        self.bs = pool.block_size
        self.root = _Node((), -1, None)
        self._clock = itertools.count(1)
        self.num_nodes = 0
        self.queried_tokens = 0
        self.hit_tokens = 0

    # -------------------------------------------------------------- lookup
    def match(self, tokens: list[int], limit: int) -> Match:
        """The longest cached prefix of ``tokens[:limit]`` (blocks are not yet shared: see
        ``take``)."""
        bs = self.bs
        node, blocks, i = self.root, [], 0
        now = next(self._clock)
        while i + bs <= limit:
            child = node.children.get(tuple(tokens[i:i + bs]))
            if child is None:
                break
            child.last_use = now
            blocks.append(child.block)
            node, i = child, i + bs
        best, best_n = None, 0
        rest = tokens[i:min(i + bs, limit)]
        for key, child in node.children.items():        # the longest run inside the next block
            n = 0
            for a, b in zip(key, rest):
                if a != b:
                    break
                n += 1
            if n > best_n:
                best, best_n = child, n
        if best is not None:
            best.last_use = now
        return Match(blocks, best.block if best is not None else None, best_n, len(blocks) * bs + best_n)

    def take(self, m: Match) -> None:
        """A request starts using the shared blocks of ``m`` (counts the hit)."""
        self.pool.share(m.blocks)

    def count(self, queried: int, hit: int) -> None:
        self.queried_tokens += queried
        self.hit_tokens += hit

    # -------------------------------------------------------------- insertion
    def insert(self, tokens: list[int], blocks: list[int], num_tokens: int, tail: bool = False) -> int:
        """Record the KV of ``tokens[:num_tokens]`` held in ``blocks``: every full block, and
        with ``tail`` the last partial one. Blocks already cached under the same tokens stay as
        they are (the caller's copy is simply not added). Returns the full blocks covered."""
        bs = self.bs
        node = self.root
        now = next(self._clock)
        full = num_tokens // bs
        for j in range(full):
            key = tuple(tokens[j * bs:(j + 1) * bs])
            child = node.children.get(key)
            if child is None:
                child = _Node(key, blocks[j], node, last_use=now)
                node.children[key] = child
                self.pool.share([blocks[j]])
                self.num_nodes += 1
            child.last_use = now
            node = child
        n = num_tokens - full * bs
        if tail and n and len(blocks) > full:
            key = tuple(tokens[full * bs:num_tokens])
            if key not in node.children:
                node.children[key] = _Node(key, blocks[full], node, last_use=now)
                self.pool.share([blocks[full]])
                self.num_nodes += 1
        return full

    # -------------------------------------------------------------- eviction
    def evictable(self) -> int:
        """Blocks that eviction could free now (nodes nobody else holds, whole subtrees)."""
        return sum(1 for n in self._nodes() if self.pool.ref[n.block] == 1)

    def evict(self, n: int) -> int:
        """Free up to ``n`` blocks: least recently used leaves nobody else holds, repeatedly
        (a parent becomes a leaf once its children are gone). Returns blocks freed."""
        freed = 0
        while freed < n:
            leaves = [x for x in self._nodes() if not x.children and self.pool.ref[x.block] == 1]
            if not leaves:
                break
            leaves.sort(key=lambda x: x.last_use)
            for leaf in leaves:
                if freed >= n:
                    break
                del leaf.parent.children[leaf.tokens]
                self.pool.release([leaf.block])
                self.num_nodes -= 1
                freed += 1
        return freed

    def clear(self) -> None:
        """Drop every node (their blocks go back to the pool once no sequence holds them)."""
        for x in list(self._nodes()):
            self.pool.release([x.block])
        self.root.children.clear()
        self.num_nodes = 0

    def _nodes(self):
        stack = list(self.root.children.values())
        while stack:
            x = stack.pop()
            yield x
            stack.extend(x.children.values())

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.queried_tokens if self.queried_tokens else 0.0
