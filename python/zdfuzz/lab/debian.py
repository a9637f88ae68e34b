"""Stock kernels from Debian's archive, fetched without apt.

The lab needs a kernel image, its ``/boot/config-*`` and its modules, all in
one ``linux-image-*-unsigned`` package. Rather than ``apt-get download``
(which needs the suite in the host's apt sources and a prior ``apt-get
update``), the lab reads the suite's ``Packages.xz`` index from
deb.debian.org, picks the newest matching package, downloads it, checks its
SHA-256 against the index, and unpacks the ``.deb`` itself (an ``ar``
archive whose ``data.tar.xz`` holds the files). No root, no apt, no dpkg.
"""

from __future__ import annotations

import io
import lzma
import re
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from zdfuzz.lab.errors import LabError

MIRROR = "https://deb.debian.org/debian"
SECURITY = "https://deb.debian.org/debian-security"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    filename: str
    sha256: str
    size: int
    suite: str
    archive: str = MIRROR

    @property
    def url(self) -> str:
        return f"{self.archive}/{self.filename}"


def _order(c: str) -> int:
    # dpkg's lexical order: '~' sorts before everything, even the end of the
    # string; letters before non-letters.
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def compare_versions(a: str, b: str) -> int:
    """Debian version comparison (epoch, upstream, revision), as dpkg does it:
    negative if a < b, 0 if equal, positive if a > b."""

    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        upstream, _, rev = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(epoch or 0), upstream, rev

    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return ea - eb
    return _compare_part(ua, ub) or _compare_part(ra, rb)


def parse_packages(text: str, suite: str, archive: str = MIRROR) -> Iterator[Package]:
    """The stanzas of a ``Packages`` index."""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        if {"Package", "Version", "Filename", "SHA256", "Size"} <= fields.keys():
            yield Package(
                fields["Package"],
                fields["Version"],
                fields["Filename"],
                fields["SHA256"],
                int(fields["Size"]),
                suite,
                archive,
            )


def fetch(url: str, progress: Callable[[int, int], None] | None = None, expected_size: int = 0) -> bytes:
    """GET ``url`` whole (kernel packages are ~100 MB: fine in memory)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            total = int(r.headers.get("Content-Length") or expected_size or 0)
            buf = io.BytesIO()
            while chunk := r.read(1 << 20):
                buf.write(chunk)
                if progress:
                    progress(buf.tell(), total)
            return buf.getvalue()
    except (urllib.error.URLError, OSError) as e:
        raise LabError(f"cannot download {url}: {e} (is the network reachable?)") from e


def archive_of(suite: str) -> str:
    """Security updates live in their own archive (``debian-security``)."""
    return SECURITY if suite.endswith("-security") else MIRROR


def newest(suites: list[str], pattern: str) -> Package:
    """The newest package whose name matches ``pattern`` in any of ``suites``
    (amd64, main)."""
    best: Package | None = None
    rx = re.compile(pattern)
    for suite in suites:
        archive = archive_of(suite)
        raw = fetch(f"{archive}/dists/{suite}/main/binary-amd64/Packages.xz")
        try:
            text = lzma.decompress(raw).decode("utf-8", "replace")
        except lzma.LZMAError as e:
            raise LabError(f"{suite}: the Packages index is not valid xz: {e}") from e
        for p in parse_packages(text, suite, archive):
            if rx.fullmatch(p.name) and (best is None or compare_versions(p.version, best.version) > 0):
                best = p
    if best is None:
        raise LabError(f"no package matching {pattern} in {', '.join(suites)} on deb.debian.org")
    return best


def ar_members(deb: bytes) -> dict[str, bytes]:
    """The members of an ``ar`` archive (the ``.deb`` container)."""
    if not deb.startswith(b"!<arch>\n"):
        raise LabError("not a .deb file (no ar header)")
    out: dict[str, bytes] = {}
    pos = 8
    while pos + 60 <= len(deb):
        header = deb[pos : pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError as e:
            raise LabError("corrupt .deb: bad ar member size") from e
        pos += 60
        out[name] = deb[pos : pos + size]
        pos += size + (size & 1)
    return out


def extract_deb(deb: bytes, dest: Path, keep: Callable[[str], bool]) -> list[str]:
    """Unpack the members of the package's data archive for which ``keep``
    is true into ``dest`` (paths relative, without the leading ``./``).
    Symlinks and special files are skipped; paths cannot escape ``dest``."""
    members = ar_members(deb)
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise LabError("corrupt .deb: no data.tar member")
    if data_name.endswith(".zst"):
        raise LabError("this .deb uses zstd compression, which the lab cannot unpack")
    kept: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(members[data_name]), mode="r:*") as tar:
        for m in tar:
            name = m.name.removeprefix("./")
            if not m.isfile() or not keep(name):
                continue
            target = (dest / name).resolve()
            if not str(target).startswith(str(dest.resolve()) + "/"):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            f = tar.extractfile(m)
            if f is None:
                continue
            target.write_bytes(f.read())
            kept.append(name)
    return kept
