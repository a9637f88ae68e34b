"""An initramfs archive: the "newc" cpio format the kernel unpacks at boot
(init/initramfs.c), written here so the lab needs no host ``cpio``.

Each member is a 110-byte ASCII header (magic ``070701`` and 13 hex fields),
the NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes; the
archive ends with a member named ``TRAILER!!!``. The result is gzip-compressed
(every Debian kernel has ``CONFIG_RD_GZIP``).
"""

from __future__ import annotations

import gzip
import io
import stat


class CpioWriter:
    """Members are written in the order added; parents must come first."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._ino = 1
        self._names: set[str] = set()

    def _member(self, name: str, mode: int, data: bytes = b"", nlink: int = 1, rdev: tuple[int, int] = (0, 0)) -> None:
        name = name.lstrip("/")
        if name in self._names:
            raise ValueError(f"initramfs: {name!r} added twice")
        self._names.add(name)
        raw = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(raw), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        self._buf.write(header + raw)
        self._buf.write(b"\0" * (-(len(header) + len(raw)) % 4))
        self._buf.write(data)
        self._buf.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._member(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._member(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._member(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        """A character device node (``/dev/console`` must exist before the
        kernel starts init, or init runs without standard streams)."""
        self._member(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def has(self, name: str) -> bool:
        return name.lstrip("/") in self._names

    def finish(self) -> bytes:
        """The gzip-compressed archive (deterministic: mtime 0)."""
        self._member("TRAILER!!!", 0, nlink=1)
        return gzip.compress(self._buf.getvalue(), compresslevel=6, mtime=0)
