"""A raw reader of a known size that keeps its own position: the base of the readers that fetch bytes from
elsewhere (S3 ranges, the probe sandbox's pipe). Plain Python, so the sandboxed probe can import it without the
S3 client.
"""

from __future__ import annotations

import io


class SizedReader(io.RawIOBase):
    """A raw reader of `_size` bytes that keeps its own position (`_pos`): seeking only moves it, and a subclass's
    `readinto` reads from there. Seeking past the end is allowed (reads then return nothing), before the start is not.
    """

    _size: int
    _pos: int

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"cannot seek to {base + offset}, before the start of the file")
        self._pos = base + offset
        return self._pos
