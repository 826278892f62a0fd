"""All small uniforms of a graph (op params, SymInts) live in a few arena buffers.

Each slot has a host mirror; writes mark a dirty byte range per page, and `flush` sends
each dirty range with one writeBuffer. A decode step that changes a handful of params
therefore costs one or two writes, not one per op.
"""
from __future__ import annotations

import numpy as np

from ..gpu.base import Buffer, GpuBackend

PAGE_BYTES = 16384


class UniformSlot:
    __slots__ = ("page", "offset", "size")

    def __init__(self, page: "_Page", offset: int, size: int):
        self.page = page
        self.offset = offset
        self.size = size

    @property
    def buffer(self) -> Buffer:
        return self.page.buffer

    def write(self, data: bytes) -> None:
        if len(data) > self.size:
            raise ValueError(f"uniform of {len(data)} bytes does not fit its {self.size}-byte slot")
        page = self.page
        o = self.offset
        if page.log is not None:
            page.log[id(self)] = self
        if page.mirror[o: o + len(data)] == data:
            return
        page.mirror[o: o + len(data)] = data
        page.mark_dirty(o, o + len(data))


class SharedSlot(UniformSlot):
    """A slot several ops write (UniformArena.shared). Within one step (epoch) they must write
    the same bytes: a disagreement would leave some op with another's params, so it raises."""

    __slots__ = ("arena", "epoch", "last")

    def __init__(self, arena, page, offset, size):
        super().__init__(page, offset, size)
        self.arena = arena
        self.epoch = -1
        self.last = b""

    def write(self, data: bytes) -> None:
        if self.epoch == self.arena.epoch:
            if data is not self.last and data != self.last:
                raise ValueError("ops sharing a uniform slot were given different params in one step")
            return
        self.epoch, self.last = self.arena.epoch, bytes(data)
        super().write(data)


class SlotBytes:
    """The bytes some slots hold now, put back into the page mirrors later with one numpy copy
    per page (a shape snapshot: hundreds of slots). `layout` (from `slot_layout`) says where."""

    def __init__(self, layout: list):
        self.parts = [(page, idx, page.view[idx], lo, hi) for page, idx, lo, hi in layout]

    def write(self) -> None:
        for page, idx, data, lo, hi in self.parts:
            page.view[idx] = data
            page.mark_dirty(lo, hi)


def slot_layout(slots) -> list:
    """[(page, byte indices, lo, hi)] of some slots, per page."""
    pages: dict = {}  # id(page) -> (page, offsets, sizes)
    for slot in slots:
        entry = pages.get(id(slot.page))
        if entry is None:
            entry = pages[id(slot.page)] = (slot.page, [], [])
        entry[1].append(slot.offset)
        entry[2].append(slot.size)
    layout = []
    for page, offsets, sizes in pages.values():
        sizes = np.array(sizes, np.intp)
        idx = np.repeat(np.array(offsets, np.intp) - (np.cumsum(sizes) - sizes), sizes)
        idx += np.arange(int(sizes.sum()), dtype=np.intp)
        layout.append((page, idx, int(idx.min()), int(idx.max()) + 1))
    return layout


class _Page:
    def __init__(self, buffer: Buffer):
        self.buffer = buffer
        self.mirror = bytearray(buffer.nbytes)
        self.view = np.frombuffer(self.mirror, np.uint8)  # the mirror for bulk writes
        self.used = 0
        self.lo = buffer.nbytes
        self.hi = 0
        self.log = None  # while the arena records: {id(slot): slot} of the slots written

    def mark_dirty(self, lo: int, hi: int) -> None:
        """Bytes lo..hi of the mirror changed: the next flush writes them."""
        if lo < self.lo:
            self.lo = lo
        if hi > self.hi:
            self.hi = hi


class UniformArena:
    def __init__(self, backend: GpuBackend):
        self.backend = backend
        self.align = max(16, backend.limits.min_uniform_offset_alignment)
        self.page_bytes = max(PAGE_BYTES, self.align)
        self.pages: list = []
        self._shared: dict = {}
        self.epoch = 0  # advanced by the graph at every step (see SharedSlot)
        self._log = None
        self._layouts: dict = {}  # ids of recorded slots -> slot_layout (see record)
        self.claims = None  # while set: every slot alloc makes is appended (Graph.build: slots per op)

    def alloc(self, size: int, label: str = "") -> UniformSlot:
        size = max(16, (size + 15) & ~15)
        if size > self.page_bytes:
            raise ValueError(f"uniform {label!r} of {size} bytes exceeds the arena page")
        page = self.pages[-1] if self.pages else None
        if page is None or page.used + size > self.page_bytes:
            page = _Page(self.backend.create_buffer(self.page_bytes, "uniform", f"uniforms{len(self.pages)}"))
            page.log = self._log
            self.pages.append(page)
        slot = UniformSlot(page, page.used, size)
        page.used += (size + self.align - 1) // self.align * self.align
        if self.claims is not None:
            self.claims.append(slot)
        return slot

    def shared(self, key, size: int, label: str = "") -> UniformSlot:
        """One slot for every caller with the same `key`: ops whose params are equal by
        construction (the attention of every layer of a model) write them once per step,
        the other writes find the bytes unchanged."""
        slot = self._shared.get(key)
        if slot is None:
            own = self.alloc(size, label)
            if self.claims:
                self.claims.remove(own)  # nobody's own slot
            slot = self._shared[key] = SharedSlot(self, own.page, own.offset, own.size)
        elif slot.size < max(16, (size + 15) & ~15):
            raise ValueError(f"shared uniform {label!r}: {size} bytes, the slot has {slot.size}")
        return slot

    def record(self, on: bool):
        """Start (on) or stop recording slot writes; stopping returns a SlotBytes of the slots
        written meanwhile (see Graph's shape snapshots)."""
        log = self.swap_log({} if on else None)
        if log is None or on:
            return None
        key = tuple(log)  # the same ops write the same slots at every full configure
        layout = self._layouts.get(key)
        if layout is None:
            if len(self._layouts) > 16:
                self._layouts.clear()
            layout = self._layouts[key] = slot_layout(log.values())
        return SlotBytes(layout)

    def log_writes(self, items) -> None:
        """Record [(id(slot), slot)] as written (their bytes went straight into the mirrors)."""
        if self._log is not None:
            self._log.update(items)

    def swap_log(self, log):
        """Record writes into `log` ({id(slot): slot}, or None: stop); returns the previous log."""
        old, self._log = self._log, log
        for page in self.pages:
            page.log = log
        return old

    def flush(self) -> int:
        """Write every dirty range; returns the number of writes made."""
        n = 0
        for page in self.pages:
            if page.hi > page.lo:
                lo = page.lo & ~3
                hi = (page.hi + 3) & ~3
                self.backend.write_buffer(page.buffer, lo, memoryview(page.mirror)[lo:hi])
                page.lo, page.hi = page.buffer.nbytes, 0
                n += 1
        return n

    def destroy(self) -> None:
        for page in self.pages:
            self.backend.destroy_buffer(page.buffer)
        self.pages = []
