"""A sorted multiset of keys, kept in blocks so that one update never moves the whole list.

The standard library has `bisect` but no sorted container. One flat list would make an
insertion move every later key (a memmove of the whole fleet per heartbeat). Blocks of at
most `2 * block` keys (`block` = 256 by default), with each block's largest key in
`_maxes`, bound that:

- `add`, `remove`: O(log n) to find the block, then O(block) inside it;
- `count_below`: O(log n + n / block);
- `first`, `last`: O(1); iterating: O(1) per key.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["BLOCK", "SortedKeys"]

BLOCK = 256


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


K = TypeVar("K", bound=_Ordered)


class SortedKeys(Generic[K]):
    """Keys in ascending order; equal keys may repeat."""

    __slots__ = ("_block", "_blocks", "_len", "_maxes")

    def __init__(self, keys: Iterable[K] = (), *, block: int = BLOCK) -> None:
        ordered = sorted(keys)
        self._block = block
        self._blocks: list[list[K]] = [
            ordered[i : i + block] for i in range(0, len(ordered), block)
        ]
        self._maxes: list[K] = [block[-1] for block in self._blocks]
        self._len = len(ordered)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[K]:
        return chain.from_iterable(self._blocks)

    def add(self, key: K) -> None:
        """Insert `key` after any equal keys."""
        self._len += 1
        if not self._blocks:
            self._blocks.append([key])
            self._maxes.append(key)
            return
        i = min(bisect_left(self._maxes, key), len(self._blocks) - 1)
        block = self._blocks[i]
        insort(block, key)
        self._maxes[i] = block[-1]
        half = self._block
        if len(block) > 2 * half:
            self._blocks[i : i + 1] = [block[:half], block[half:]]
            self._maxes[i : i + 1] = [block[half - 1], block[-1]]

    def remove(self, key: K) -> None:
        """Remove one occurrence of `key`.

        Raises:
            KeyError: `key` is not held.
        """
        i = bisect_left(self._maxes, key)
        if i == len(self._blocks):
            raise KeyError(key)
        block = self._blocks[i]
        j = bisect_left(block, key)
        if block[j] < key or key < block[j]:
            raise KeyError(key)
        del block[j]
        self._len -= 1
        if block:
            self._maxes[i] = block[-1]
        else:
            del self._blocks[i]
            del self._maxes[i]

    def count_below(self, key: K) -> int:
        """How many keys are less than `key`."""
        if not self._blocks or not self._blocks[0][0] < key:
            return 0
        i = bisect_left(self._maxes, key)
        if i == len(self._blocks):
            return self._len
        return sum(map(len, self._blocks[:i])) + bisect_left(self._blocks[i], key)

    def first(self) -> K | None:
        """The least key, None when empty."""
        return self._blocks[0][0] if self._blocks else None

    def last(self) -> K | None:
        """The greatest key, None when empty."""
        return self._maxes[-1] if self._maxes else None

    def descending(self) -> Iterator[K]:
        """Every key, greatest first."""
        return chain.from_iterable(map(reversed, reversed(self._blocks)))

    def descending_below(self, key: K) -> Iterator[K]:
        """The keys less than `key`, greatest first."""
        i = bisect_left(self._maxes, key)
        if i == len(self._blocks):
            return self.descending()
        head = reversed(self._blocks[i][: bisect_left(self._blocks[i], key)])
        return chain(head, chain.from_iterable(map(reversed, reversed(self._blocks[:i]))))
