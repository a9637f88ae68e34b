"""``zdfuzz lab build``: a kernel built for the lab.

Debian's stock kernels lack DEVICE_PRIVATE, TEST_HMM, PCI_P2PDMA, KASAN and
DEBUG_VM, so two of the four device types cannot be checked on them and a
use-after-free shows only when it happens to fault. The lab kernel has them:
``make tinyconfig`` (the smallest kernel Kconfig can make) plus the fragment
``kconfig/lab.config``, so it builds in minutes on two cores rather than the
hour a distribution config takes.

The source is Debian's ``linux-source-6.12`` (fetched from the archive like
the stock kernels, no apt or root needed) or a kernel tree the user points
at — their patch under review. Objects go to ``~/.cache/zdfuzz/lab/build/``
(``make O=``: the user's tree is not written to; one object directory per
tree and fragment, so rebuilding after a patch compiles only what changed);
the finished kernel is cached by the source's identity (package hash, or git
commit plus uncommitted changes) and the fragment, and is then usable as
``--kernel lab``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zdfuzz.lab import debian, kernels
from zdfuzz.lab.cache import atomic_write, cache_dir
from zdfuzz.lab.errors import LabError

FRAGMENT = Path(__file__).with_name("kconfig") / "lab.config"
DEBIAN_SOURCE = (["bookworm", "bookworm-updates", "bookworm-security", "bookworm-backports"], r"linux-source-6\.12")


def fragment_options(text: str | None = None) -> dict[str, str]:
    """``CONFIG_X -> value`` from a fragment (``=n`` means "not set")."""
    out: dict[str, str] = {}
    for line in (text if text is not None else FRAGMENT.read_text()).splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("CONFIG_") and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def check_config(config: dict[str, str], wanted: dict[str, str]) -> list[str]:
    """The options of ``wanted`` that ``config`` (a parsed ``.config``) does
    not have as asked, each with what it has instead."""
    bad = []
    for opt, want in wanted.items():
        got = config.get(opt)
        if want == "n":
            if got not in (None, "n"):
                bad.append(f"{opt}={got} (wanted unset)")
        elif got != want:
            bad.append(f"{opt}={got or 'unset'} (wanted {want})")
    return bad


@dataclass
class Source:
    tree: Path
    identity: str  # what the build key is made from
    label: str


def _tree_version(tree: Path) -> str:
    try:
        mk = (tree / "Makefile").read_text(errors="replace")
    except OSError as e:
        raise LabError(f"{tree}: not a kernel tree (no Makefile): {e.strerror}") from e
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL) = (\d+)", mk, re.M))
    if "VERSION" not in fields or "PATCHLEVEL" not in fields:
        raise LabError(f"{tree}: not a kernel tree (its Makefile has no VERSION/PATCHLEVEL)")
    return f"{fields['VERSION']}.{fields['PATCHLEVEL']}.{fields.get('SUBLEVEL', '0')}"


def user_source(path: str) -> Source:
    """A kernel tree the user points at. Its identity is the git commit plus a
    hash of the uncommitted changes, or (outside git) of every file's size and
    modification time: a rebuild happens exactly when the tree changed."""
    tree = Path(path).resolve()
    if not tree.is_dir():
        raise LabError(f"--source {path}: not a directory")
    version = _tree_version(tree)
    if (tree / ".config").exists() or (tree / "include" / "config").exists():
        raise LabError(
            f"--source {path}: the tree has an in-tree build (.config); the lab builds out of tree "
            "(make O=...), which needs a clean source: run `make mrproper` there first"
        )
    h = hashlib.sha256()
    git = shutil.which("git")
    r = (
        subprocess.run([git, "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
        if git
        else None
    )
    if r is not None and r.returncode == 0:
        h.update(r.stdout.encode())
        diff = subprocess.run([git, "-C", str(tree), "diff", "HEAD"], capture_output=True, check=False)  # type: ignore[list-item]
        h.update(diff.stdout)
        label = f"{tree.name} {version} at {r.stdout.strip()[:12]}" + (" + changes" if diff.stdout else "")
    else:
        for p in sorted(tree.rglob("*")):
            if p.is_file() and not p.is_symlink():
                st = p.stat()
                h.update(f"{p.relative_to(tree)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        label = f"{tree.name} {version}"
    return Source(tree, f"tree:{h.hexdigest()}", label)


def debian_source(
    progress: Callable[[str], None] | None = None, download: Callable[[str, int, int], None] | None = None
) -> Source:
    """Debian's newest ``linux-source-6.12``, unpacked once into the cache."""
    pkg = debian.newest(*DEBIAN_SOURCE)
    dest = cache_dir() / "src" / pkg.sha256[:16]
    trees = sorted(dest.glob("linux-source-*")) if dest.is_dir() else []
    if trees and (trees[0] / "Makefile").is_file() and (dest / ".complete").exists():
        return Source(trees[0], f"debian:{pkg.sha256}", f"Debian {pkg.name} {pkg.version}")
    data = debian.fetch(pkg.url, (lambda d, t: download(pkg.name, d, t)) if download else None, pkg.size)
    if hashlib.sha256(data).hexdigest() != pkg.sha256:
        raise LabError(f"{pkg.url}: SHA-256 does not match the archive index")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    kept = debian.extract_deb(data, dest, lambda n: n.startswith("usr/src/linux-source") and n.endswith(".tar.xz"))
    if not kept:
        raise LabError(f"{pkg.name}: no usr/src/linux-source-*.tar.xz in the package")
    tarball = dest / kept[0]
    if progress:
        progress(f"unpacking {tarball.name}")
    tar = shutil.which("tar")
    if tar is None:
        raise LabError("unpacking the kernel source needs tar: apt-get install tar")
    r = subprocess.run([tar, "-xJf", str(tarball), "-C", str(dest)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise LabError(f"tar -xJf {tarball}: {r.stderr.strip()[-500:]}")
    tarball.unlink()
    shutil.rmtree(dest / "usr", ignore_errors=True)
    (dest / ".complete").touch()
    trees = sorted(dest.glob("linux-source-*"))
    return Source(trees[0], f"debian:{pkg.sha256}", f"Debian {pkg.name} {pkg.version}")


def build_key(src: Source, fragment: str) -> str:
    h = hashlib.sha256()
    h.update(src.identity.encode())
    h.update(fragment.encode())
    return h.hexdigest()[:20]


def _make(tree: Path, out: Path, *targets: str, jobs: int = 1, on_line: Callable[[str], None] | None = None) -> None:
    make = shutil.which("make")
    if make is None:
        raise LabError(
            "building a kernel needs make and a C toolchain: apt-get install build-essential "
            "flex bison bc libelf-dev libssl-dev"
        )
    cmd = [make, "-C", str(tree), f"O={out}", "ARCH=x86_64", f"-j{jobs}", *targets]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-40:]
        if on_line:
            on_line(line.rstrip())
    if proc.wait() != 0:
        missing = [t for t in ("flex", "bison", "bc", "gcc") if shutil.which(t) is None]
        hint = f" (missing host tools: {', '.join(missing)})" if missing else ""
        raise LabError(f"make {' '.join(targets)} failed{hint}:\n" + "\n".join(tail[-15:]))


def configure(src: Source, out: Path, fragment: str, on_line: Callable[[str], None] | None = None) -> list[str]:
    """tinyconfig + fragment + olddefconfig in ``out``; the fragment's
    options that Kconfig did not set as asked."""
    out.mkdir(parents=True, exist_ok=True)
    _make(src.tree, out, "tinyconfig", on_line=on_line)
    with (out / ".config").open("a") as f:
        f.write("\n# zdfuzz lab fragment\n" + fragment)
    _make(src.tree, out, "olddefconfig", on_line=on_line)
    return check_config(kernels.parse_config((out / ".config").read_text()), fragment_options(fragment))


def check_fragment(
    source: str | None = None,
    fragment_path: str | None = None,
    progress: Callable[[str], None] | None = None,
    download: Callable[[str, int, int], None] | None = None,
) -> tuple[Source, list[str]]:
    """Only configure (seconds, no compiling): the fragment's options that
    this tree's Kconfig does not set as asked."""
    fragment = Path(fragment_path).read_text() if fragment_path else FRAGMENT.read_text()
    src = user_source(source) if source else debian_source(progress, download)
    out = cache_dir() / "build" / ("check-" + build_key(src, fragment))
    try:
        return src, configure(src, out, fragment)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def build(
    source: str | None = None,
    jobs: int | None = None,
    fragment_path: str | None = None,
    progress: Callable[[str], None] | None = None,
    download: Callable[[str, int, int], None] | None = None,
    force: bool = False,
) -> kernels.Kernel:
    """Build (or find in the cache) the lab kernel; return it."""
    fragment = Path(fragment_path).read_text() if fragment_path else FRAGMENT.read_text()
    src = user_source(source) if source else debian_source(progress, download)
    key = build_key(src, fragment)
    dest = kernels.kernels_dir() / f"lab-{key}"
    if not force and (k := kernels.load_cached(dest)) is not None:
        return k
    # The object directory is keyed by the tree's location and the fragment,
    # not by its content: after an edit to the tree, make rebuilds only what
    # changed (minutes), while the finished kernel is keyed by content.
    out = cache_dir() / "build" / hashlib.sha256(f"{src.tree}\n{fragment}".encode()).hexdigest()[:20]
    jobs = jobs or os.cpu_count() or 1
    t0 = time.monotonic()
    if progress:
        progress(f"configuring {src.label} (tinyconfig + {FRAGMENT.name if not fragment_path else fragment_path})")
    bad = configure(src, out, fragment)
    if bad:
        raise LabError(
            "Kconfig did not accept the lab's configuration for this tree: "
            + "; ".join(bad)
            + " (an option's dependencies are missing from this kernel, or it was renamed)"
        )
    counter = {"n": 0}

    def on_line(line: str) -> None:
        if line.lstrip().startswith(("CC", "LD", "AR", "AS")):
            counter["n"] += 1
            if progress and counter["n"] % 25 == 0:
                progress(f"building {src.label}: {counter['n']} objects ({line.strip()[:60]})")

    _make(src.tree, out, "bzImage", "modules", jobs=jobs, on_line=on_line)
    mods = out / "mods"
    shutil.rmtree(mods, ignore_errors=True)
    _make(src.tree, out, "modules_install", f"INSTALL_MOD_PATH={mods}", "INSTALL_MOD_STRIP=1")
    release = (out / "include" / "config" / "kernel.release").read_text().strip()
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "boot").mkdir(parents=True)
    shutil.copy2(out / "arch" / "x86" / "boot" / "bzImage", tmp / "boot" / f"vmlinuz-{release}")
    shutil.copy2(out / ".config", tmp / "boot" / f"config-{release}")
    shutil.copytree(mods / "lib", tmp / "lib", symlinks=True)
    seconds = time.monotonic() - t0
    meta = {
        "name": "lab",
        "release": release,
        "source": src.label,
        "identity": src.identity,
        "key": key,
        "fetched": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds),
        "jobs": jobs,
    }
    atomic_write(tmp / "kernel.json", json.dumps(meta, indent=2).encode())
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    k = kernels.load_cached(dest)
    assert k is not None
    return k
