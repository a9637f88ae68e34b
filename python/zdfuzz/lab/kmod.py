"""Kernel modules for the lab guest: read ``.modinfo``, resolve dependencies.

Debian's ``linux-image-*`` packages ship modules without ``modules.dep`` (depmod
runs at install time), and the host may have no kmod at all, so the lab reads
each module's ``.modinfo`` ELF section itself: the NUL-separated ``key=value``
strings that ``modinfo`` prints (``depends=`` is the comma-separated list of
modules whose symbols it uses, what depmod turns into ``modules.dep``).
"""

from __future__ import annotations

import lzma
import struct
from dataclasses import dataclass
from pathlib import Path


class ModuleError(ValueError):
    """A module file that cannot be read or a dependency that is missing."""


def read_module(path: Path) -> bytes:
    """The ELF bytes of a module, decompressing ``.ko.xz`` (the guest's busybox
    ``insmod`` cannot)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        try:
            data = lzma.decompress(data)
        except lzma.LZMAError as e:
            raise ModuleError(f"{path}: not a valid .xz file: {e}") from e
    elif path.name.endswith(".zst"):
        raise ModuleError(f"{path}: zstd-compressed modules are not supported; decompress them first")
    return data


def modinfo(elf: bytes, where: str = "<module>") -> dict[str, list[str]]:
    """The ``.modinfo`` section of a 64-bit little-endian ELF relocatable."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ModuleError(f"{where}: not a 64-bit little-endian ELF file")
    try:
        (shoff,) = struct.unpack_from("<Q", elf, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
        sections = []
        for i in range(shnum):
            name, _typ, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize)
            sections.append((name, off, size))
        _n, stroff, strsize = sections[shstrndx]
        strtab = elf[stroff : stroff + strsize]
    except struct.error as e:
        raise ModuleError(f"{where}: truncated ELF header or section table") from e
    for name, off, size in sections:
        end = strtab.find(b"\0", name)
        if strtab[name:end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for entry in elf[off : off + size].split(b"\0"):
                key, sep, value = entry.decode("utf-8", "replace").partition("=")
                if sep:
                    info.setdefault(key, []).append(value)
            return info
    raise ModuleError(f"{where}: no .modinfo section (not a kernel module?)")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    depends: tuple[str, ...]


def index_modules(moddir: Path) -> dict[str, Path]:
    """Module name -> file, for every ``*.ko``, ``*.ko.xz`` under ``moddir``.
    Names use underscores, as the kernel does (``nd-e820`` is ``nd_e820``)."""
    index: dict[str, Path] = {}
    for p in sorted(moddir.rglob("*.ko*")):
        base = p.name.split(".ko")[0].replace("-", "_")
        index.setdefault(base, p)
    return index


def closure(wanted: list[str], index: dict[str, Path]) -> list[Module]:
    """``wanted`` and everything they depend on, in load order (dependencies first)."""
    order: list[Module] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        if name in chain:
            raise ModuleError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        path = index.get(name)
        if path is None:
            via = f" (needed by {chain[-1]})" if chain else ""
            raise ModuleError(f"module {name}{via} is not in this kernel's modules")
        info = modinfo(read_module(path), str(path))
        deps = tuple(d for d in ",".join(info.get("depends", [])).split(",") if d)
        for d in deps:
            visit(d, chain + (name,))
        seen.add(name)
        order.append(Module(name, path, deps))

    for w in wanted:
        visit(w, ())
    return order
