"""The kernels the lab boots: Debian's stock kernels by short name, or the
user's own build.

A kernel is a bootable image (``vmlinuz``/``bzImage``), the directory of
its modules, and its ``.config``. Stock kernels are fetched once from
Debian's archive (``debian.py``) into the cache, keyed by the package's
SHA-256; a user's kernel is used where it lies.

Which model preset answers for a kernel is decided by its version alone
(``preset_for``): the eras are defined by the release that first carried
each change (docs/model.md §3).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zdfuzz.lab import debian
from zdfuzz.lab.cache import atomic_write, cache_dir
from zdfuzz.lab.errors import LabError

# Short name -> (suites to search, package-name pattern). Debian 12 carries
# both: 6.1 as its own kernel, 6.12 in bookworm-backports and, newest, in
# bookworm-security.
STOCK: dict[str, tuple[list[str], str]] = {
    "debian-6.12": (
        ["bookworm", "bookworm-updates", "bookworm-security", "bookworm-backports"],
        r"linux-image-6\.12\.\d+\+deb12-amd64-unsigned",
    ),
    "debian-6.1": (["bookworm", "bookworm-updates", "bookworm-security"], r"linux-image-6\.1\.0-\d+-amd64-unsigned"),
}

# First release of each era (docs/model.md §3): a kernel runs under the
# newest era whose first release it has reached.
ERAS: list[tuple[tuple[int, int], str]] = [
    ((5, 3), "e1"),
    ((5, 18), "e2"),
    ((6, 1), "e3"),
    ((6, 15), "e4"),
    ((6, 19), "e5"),
]


PRESETS_DIR = Path(__file__).with_name("presets")


def stock_preset(name: str) -> str | None:
    """The preset file for a stock kernel (its era plus the stable backports
    that change a modelled path, read in Debian's source), if there is one."""
    p = PRESETS_DIR / f"{name}.toml"
    return str(p) if p.is_file() else None


def parse_release(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        raise LabError(f"cannot read a kernel version from {release!r}")
    return int(m.group(1)), int(m.group(2))


def preset_for(release: str) -> str:
    """The model preset for a kernel release string such as ``6.12.113+deb12-amd64``."""
    v = parse_release(release)
    preset = None
    for first, name in ERAS:
        if v >= first:
            preset = name
    if preset is None:
        raise LabError(f"kernel {release} predates the eras the model covers (v5.3 and later)")
    return preset


def parse_config(text: str) -> dict[str, str]:
    """``CONFIG_X=y`` lines; options ``# ... is not set`` are absent."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, _, v = line.partition("=")
            out[k] = v.strip().strip('"')
    return out


def bzimage_release(path: Path) -> str:
    """The release string of an x86 bzImage: the setup header (``HdrS`` at
    0x202) points at the version string with ``kernel_version`` (0x20e),
    relative to 0x200 (Documentation/arch/x86/boot.rst)."""
    try:
        data = path.read_bytes()[:0x10000]
    except OSError as e:
        raise LabError(f"{path}: cannot read: {e}") from e
    if len(data) < 0x210 or data[0x202:0x206] != b"HdrS":
        raise LabError(f"{path}: not an x86 bzImage (no HdrS setup header)")
    (off,) = struct.unpack_from("<H", data, 0x20E)
    start = off + 0x200
    end = data.find(b"\0", start)
    if off == 0 or end < 0:
        raise LabError(f"{path}: the setup header has no kernel version string")
    return data[start:end].decode("ascii", "replace").split()[0]


@dataclass
class Kernel:
    name: str
    release: str
    image: Path
    modules: Path | None
    config: dict[str, str] | None
    source: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def preset(self) -> str:
        """The rules the model uses for this kernel: a stock kernel's preset
        file (``presets/debian-6.12.toml``), the lab kernel's (built from
        Debian's 6.12 source), else the era of its version."""
        name = self.meta.get("name", self.name)
        if name == "lab" and self.meta.get("identity", "").startswith("debian:"):
            name = f"debian-{'.'.join(map(str, parse_release(self.release)))}"
        return stock_preset(name) or preset_for(self.release)

    def option(self, opt: str) -> str | None:
        """``y``/``m``/value, or None when not set; raises if the config is unknown."""
        if self.config is None:
            raise LabError(f"kernel {self.name} has no known .config (pass --config)")
        return self.config.get(opt)

    def missing(self, options: list[str]) -> list[str]:
        """The options of ``options`` this kernel's config does not enable
        (empty when the config is unknown: the lab then tries anyway)."""
        if self.config is None:
            return []
        return [o for o in options if self.config.get(o) not in ("y", "m")]


def kernels_dir() -> Path:
    d = cache_dir() / "kernels"
    d.mkdir(parents=True, exist_ok=True)
    return d


def load_cached(d: Path) -> Kernel | None:
    meta_path = d / "kernel.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    boot = d / "boot"
    images = sorted(boot.glob("vmlinuz-*"))
    configs = sorted(boot.glob("config-*"))
    if not images:
        return None
    config = parse_config(configs[0].read_text()) if configs else None
    mods = d / "lib" / "modules"
    if not mods.is_dir():
        mods = d / "usr" / "lib" / "modules"
    return Kernel(
        name=meta.get("name", d.name),
        release=meta.get("release") or images[0].name.removeprefix("vmlinuz-"),
        image=images[0],
        modules=mods if mods.is_dir() else None,
        config=config,
        source=meta.get("package", ""),
        meta={k: str(v) for k, v in meta.items()},
    )


def cached() -> list[Kernel]:
    """Every stock kernel in the cache, newest fetch first."""
    out = []
    for d in sorted(kernels_dir().iterdir()):
        if d.is_dir() and (k := load_cached(d)) is not None:
            out.append(k)
    out.sort(key=lambda k: k.meta.get("fetched", ""), reverse=True)
    return out


def fetch_stock(name: str, progress: Callable[[str, int, int], None] | None = None) -> Kernel:
    """Download and unpack the newest package for a stock kernel name."""
    if name not in STOCK:
        raise LabError(f"unknown kernel {name!r}: the stock kernels are {', '.join(STOCK)}; or pass a bzImage path")
    suites, pattern = STOCK[name]
    pkg = debian.newest(suites, pattern)
    dest = kernels_dir() / pkg.sha256[:16]
    if (k := load_cached(dest)) is not None:
        return k
    data = debian.fetch(pkg.url, (lambda done, total: progress(pkg.name, done, total)) if progress else None, pkg.size)
    digest = hashlib.sha256(data).hexdigest()
    if digest != pkg.sha256:
        raise LabError(f"{pkg.url}: SHA-256 {digest} does not match the archive index ({pkg.sha256})")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    def keep(path: str) -> bool:
        return path.startswith(("boot/vmlinuz-", "boot/config-", "lib/modules/", "usr/lib/modules/"))

    debian.extract_deb(data, tmp, keep)
    images = sorted((tmp / "boot").glob("vmlinuz-*"))
    if not images:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LabError(f"{pkg.name} {pkg.version}: the package has no boot/vmlinuz-*")
    meta = {
        "name": name,
        "package": pkg.name,
        "version": pkg.version,
        "suite": pkg.suite,
        "sha256": pkg.sha256,
        "url": pkg.url,
        "release": images[0].name.removeprefix("vmlinuz-"),
        "fetched": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    atomic_write(tmp / "kernel.json", json.dumps(meta, indent=2).encode())
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    k = load_cached(dest)
    assert k is not None
    return k


def newest_lab() -> Kernel | None:
    """The most recent ``zdfuzz lab build``."""
    labs = [k for k in cached() if k.meta.get("name") == "lab"]
    return labs[0] if labs else None


def resolve(
    name: str,
    modules: str | None = None,
    config: str | None = None,
    fetch: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> Kernel:
    """A kernel by stock name (from the cache, else fetched), ``lab`` (the
    newest lab build), or an image path."""
    if name == "lab":
        k = newest_lab()
        if k is None:
            raise LabError("no lab kernel is built yet: run `zdfuzz lab build` (minutes; see docs/lab.md)")
        return k
    if name in STOCK:
        for k in cached():
            if k.meta.get("name") == name:
                return k
        if not fetch:
            raise LabError(f"kernel {name} is not cached; run `zdfuzz lab kernels --fetch {name}`")
        return fetch_stock(name, progress)
    path = Path(name)
    if not path.exists():
        raise LabError(
            f"unknown kernel {name!r}: not a stock kernel ({', '.join(STOCK)}) and no such file; "
            "pass a bzImage with --modules DIR"
        )
    if not path.is_file():
        raise LabError(f"{name}: not a regular file (pass the kernel image, e.g. arch/x86/boot/bzImage)")
    release = bzimage_release(path)
    mod_dir = Path(modules) if modules else None
    if mod_dir is not None and not mod_dir.is_dir():
        raise LabError(f"--modules {modules}: not a directory")
    cfg: dict[str, str] | None = None
    candidates = [Path(config)] if config else [path.parent.parent.parent.parent / ".config", path.parent / ".config"]
    if mod_dir is not None:
        candidates += [mod_dir / "build" / ".config", mod_dir / "config"]
    for c in candidates:
        if c.is_file():
            cfg = parse_config(c.read_text(errors="replace"))
            break
    else:
        if config:
            raise LabError(f"--config {config}: no such file")
    return Kernel(name=f"custom:{release}", release=release, image=path, modules=mod_dir, config=cfg, source=str(path))
