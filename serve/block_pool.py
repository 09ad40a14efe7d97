"""The paged KV cache's blocks: a free list and reference counts (a block shared by several
sequences, e.g. a cached prefix, is freed when the last one lets go)."""
from __future__ import annotations

from collections import deque

__all__ = ["BlockPool", "OutOfBlocks"]


class OutOfBlocks(RuntimeError):
    """More blocks were asked for than are free; the scheduler prevents this by preempting."""


class BlockPool:
    def __init__(self, num_blocks: int, block_size: int):
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"a block pool needs blocks and a block size, got {num_blocks} x {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.ref = [0] * num_blocks
        self.free: deque[int] = deque(range(num_blocks))

    @property
    def num_free(self) -> int:
        return len(self.free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self.free)

    def allocate(self, n: int) -> list[int]:
        if n > len(self.free):
            raise OutOfBlocks(f"asked for {n} blocks, {len(self.free)} free of {self.num_blocks}")
        out = [self.free.popleft() for _ in range(n)]
        for b in out:
            self.ref[b] = 1
        return out

    def share(self, blocks: list[int]) -> None:
        """One more holder for each of ``blocks``."""
        for b in blocks:
            if self.ref[b] <= 0:
                raise ValueError(f"block {b} is free; only a held block can be shared")
            self.ref[b] += 1

    def release(self, blocks: list[int]) -> None:
        """One holder fewer for each block; a block nobody holds goes back to the free list."""
        for b in blocks:
            if self.ref[b] <= 0:
                raise ValueError(f"block {b} released more often than it was held")
            self.ref[b] -= 1
            if self.ref[b] == 0:
                self.free.append(b)
