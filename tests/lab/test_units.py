"""The lab's host-side pieces, without a VM: kernel versions and configs,
Debian's archive index and .deb files, module metadata, the initramfs
format, static-binary detection."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import struct
import sys
import tarfile
from pathlib import Path

import pytest

from zdfuzz.lab import debian, guest, kernels, kmod
from zdfuzz.lab.cpio import CpioWriter
from zdfuzz.lab.errors import LabError

# -- kernels ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "release,preset",
    [
        ("5.10.0-28-amd64", "e1"),
        ("5.17.15", "e1"),
        ("5.18.0", "e2"),
        ("6.0.19", "e2"),
        ("6.1.0-57-amd64", "e3"),
        ("6.12.117+deb12-amd64", "e3"),
        ("6.14.11", "e3"),
        ("6.15.0-rc1", "e4"),
        ("6.18.2", "e4"),
        ("6.19.0", "e5"),
        ("7.1.0", "e5"),
    ],
)
def test_a_kernel_runs_under_the_era_of_its_version(release: str, preset: str) -> None:
    assert kernels.preset_for(release) == preset


def test_kernels_before_the_eras_and_nonsense_versions_are_refused() -> None:
    with pytest.raises(LabError, match="predates"):
        kernels.preset_for("4.19.0")
    with pytest.raises(LabError, match="cannot read a kernel version"):
        kernels.preset_for("linux")


def test_config_parsing_and_missing_options() -> None:
    cfg = kernels.parse_config('CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D="x y"\n')
    assert cfg == {"CONFIG_A": "y", "CONFIG_B": "m", "CONFIG_D": "x y"}
    k = kernels.Kernel("k", "6.12.0", Path("/nonexistent"), None, cfg)
    assert k.missing(["CONFIG_A", "CONFIG_B", "CONFIG_C", "CONFIG_D"]) == ["CONFIG_C", "CONFIG_D"]
    assert kernels.Kernel("k", "6.12.0", Path("/x"), None, None).missing(["CONFIG_C"]) == []


def fake_bzimage(path: Path, version: bytes) -> None:
    data = bytearray(0x1000)
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x20E, 0x400)  # string at 0x600
    data[0x600 : 0x600 + len(version) + 1] = version + b"\0"
    path.write_bytes(bytes(data))


def test_a_user_kernel_is_read_from_its_bzimage_header(tmp_path: Path) -> None:
    img = tmp_path / "bzImage"
    fake_bzimage(img, b"6.16.0-rc3-mine (me@host) #7 SMP PREEMPT")
    (tmp_path / ".config").write_text("CONFIG_DEV_DAX=m\n")
    mods = tmp_path / "mods"
    mods.mkdir()
    k = kernels.resolve(str(img), str(mods), str(tmp_path / ".config"))
    assert (k.release, k.preset, k.name) == ("6.16.0-rc3-mine", "e4", "custom:6.16.0-rc3-mine")
    assert k.config == {"CONFIG_DEV_DAX": "m"} and k.modules == mods


def test_user_kernel_mistakes_are_named(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="unknown kernel 'debian-9'"):
        kernels.resolve("debian-9")
    not_bz = tmp_path / "vmlinux"
    not_bz.write_bytes(b"\x7fELF" + bytes(600))
    with pytest.raises(LabError, match="not an x86 bzImage"):
        kernels.resolve(str(not_bz))
    with pytest.raises(LabError, match="not a regular file"):
        kernels.resolve(str(tmp_path))
    img = tmp_path / "bzImage"
    fake_bzimage(img, b"6.12.0")
    with pytest.raises(LabError, match="--modules"):
        kernels.resolve(str(img), str(tmp_path / "nope"))


# -- Debian's archive --------------------------------------------------------------------


@pytest.mark.parametrize(
    "a,b,sign",
    [
        ("6.12.117-1~deb12u1", "6.12.95-1~bpo12+1", 1),
        ("1.0~rc1", "1.0", -1),
        ("1:0.9", "2.0", 1),
        ("6.1.192-3", "6.1.192-3", 0),
        ("6.1.0-57", "6.1.0-9", 1),
        ("2.0a", "2.0", 1),
        ("2.0", "2.0+1", -1),
    ],
)
def test_debian_version_order(a: str, b: str, sign: int) -> None:
    c = debian.compare_versions(a, b)
    assert (c > 0) - (c < 0) == sign
    c2 = debian.compare_versions(b, a)
    assert (c2 > 0) - (c2 < 0) == -sign


def test_the_packages_index_yields_complete_stanzas() -> None:
    text = (
        "Package: linux-image-6.12.95+deb12-amd64-unsigned\nVersion: 6.12.95-1\nFilename: pool/a.deb\n"
        "SHA256: aa\nSize: 10\nDescription: x\n continued\n\nPackage: broken\nVersion: 1\n\n"
    )
    [p] = list(debian.parse_packages(text, "bookworm-security", debian.SECURITY))
    assert p.name == "linux-image-6.12.95+deb12-amd64-unsigned" and p.size == 10
    assert p.url == "https://deb.debian.org/debian-security/pool/a.deb"


def make_deb(files: dict[str, bytes]) -> bytes:
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("./boot/evil")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", lzma.compress(b"")), ("data.tar.xz", tbuf.getvalue())]
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data
        if len(data) % 2:
            out += b"\n"
    return out


def test_a_deb_is_unpacked_without_dpkg_and_only_what_is_kept(tmp_path: Path) -> None:
    deb = make_deb(
        {
            "boot/vmlinuz-6.12.0": b"kernel",
            "boot/config-6.12.0": b"CONFIG_X=y\n",
            "lib/modules/6.12.0/kernel/a.ko.xz": b"m",
            "usr/share/doc/x": b"doc",
            "../escape": b"no",
        }
    )
    kept = debian.extract_deb(deb, tmp_path, lambda n: n.startswith(("boot/", "lib/modules/", "../")))
    assert sorted(kept) == ["boot/config-6.12.0", "boot/vmlinuz-6.12.0", "lib/modules/6.12.0/kernel/a.ko.xz"]
    assert (tmp_path / "boot" / "vmlinuz-6.12.0").read_bytes() == b"kernel"
    assert not (tmp_path / "usr").exists() and not (tmp_path / "boot" / "evil").exists()
    assert not (tmp_path.parent / "escape").exists()
    with pytest.raises(LabError, match="not a .deb"):
        debian.extract_deb(b"PK\x03\x04", tmp_path, lambda n: True)


# -- modules ----------------------------------------------------------------------------


def fake_module(modinfo: bytes) -> bytes:
    """A minimal ELF64 relocatable with a .modinfo section."""
    shstr = b"\0.modinfo\0.shstrtab\0"
    body_off = 64
    modinfo_off, shstr_off = body_off, body_off + len(modinfo)
    shoff = shstr_off + len(shstr)
    shoff += -shoff % 8
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2)
    sections = [
        struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        struct.pack("<IIQQQQIIQQ", 1, 1, 2, 0, modinfo_off, len(modinfo), 0, 0, 1, 0),
        struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0),
    ]
    blob = header + modinfo + shstr
    blob += bytes(shoff - len(blob))
    return blob + b"".join(sections)


def test_modinfo_and_dependency_order(tmp_path: Path) -> None:
    mods = tmp_path / "lib" / "modules" / "6.12.0" / "kernel"
    mods.mkdir(parents=True)
    (mods / "ext4.ko.xz").write_bytes(lzma.compress(fake_module(b"license=GPL\0depends=jbd2,mbcache\0")))
    (mods / "jbd2.ko").write_bytes(fake_module(b"depends=\0"))
    (mods / "mbcache.ko").write_bytes(fake_module(b"depends=\0"))
    (mods / "nd-e820.ko").write_bytes(fake_module(b"depends=libnvdimm\0"))
    index = kmod.index_modules(tmp_path)
    assert set(index) == {"ext4", "jbd2", "mbcache", "nd_e820"}
    order = [m.name for m in kmod.closure(["ext4"], index)]
    assert order == ["jbd2", "mbcache", "ext4"]
    assert kmod.modinfo(kmod.read_module(index["ext4"]))["license"] == ["GPL"]
    with pytest.raises(kmod.ModuleError, match="libnvdimm \\(needed by nd_e820\\)"):
        kmod.closure(["nd-e820"], index)
    (mods / "bad.ko").write_bytes(b"not elf")
    with pytest.raises(kmod.ModuleError, match="not a 64-bit"):
        kmod.closure(["bad"], kmod.index_modules(tmp_path))


# -- the initramfs -----------------------------------------------------------------------


def read_newc(archive: bytes) -> dict[str, tuple[int, bytes, int]]:
    raw = gzip.decompress(archive)
    out: dict[str, tuple[int, bytes, int]] = {}
    pos = 0
    while True:
        h = raw[pos : pos + 110]
        assert h[:6] == b"070701"
        f = [int(h[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize, mode, rdevmajor = f[11], f[6], f[1], f[9]
        name = raw[pos + 110 : pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        data = raw[pos : pos + filesize]
        pos += filesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, data, rdevmajor)


def test_the_initramfs_is_newc_cpio_the_kernel_can_unpack() -> None:
    w = CpioWriter()
    w.directory("dev")
    w.chardev("dev/console", 5, 1)
    w.file("init", b"\x7fELF...", 0o755)
    w.symlink("bin/sh", "busybox")
    members = read_newc(w.finish())
    assert members["init"] == (0o100755, b"\x7fELF...", 0)
    assert members["dev/console"][0] == 0o020600 and members["dev/console"][2] == 5
    assert members["bin/sh"][1] == b"busybox"
    with pytest.raises(ValueError, match="added twice"):
        w2 = CpioWriter()
        w2.file("a", b"")
        w2.file("/a", b"")


def test_static_and_dynamic_executables_are_told_apart(tmp_path: Path) -> None:
    assert not guest.elf_is_static(Path(sys.executable).resolve())
    not_elf = tmp_path / "x"
    not_elf.write_bytes(b"#!/bin/sh\n")
    assert not guest.elf_is_static(not_elf)


def test_a_missing_host_tool_names_its_debian_package() -> None:
    with pytest.raises(LabError, match="apt-get install some-package"):
        guest.which("zdfuzz-no-such-tool", "some-package")


# -- the command line and faults -------------------------------------------------------


def test_missing_qemu_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        LabError, match="qemu-system-x86_64 is not installed on this host: apt-get install qemu-system-x86"
    ):
        guest.qemu_binary()


def test_a_kernel_without_an_option_skips_the_scenario_and_names_it() -> None:
    from zdfuzz.lab import scenario
    from zdfuzz.lab.run import skip_reason

    sc = scenario.load(scenario.find("f1-devdax-unbind-iouring"))
    cfg = {
        o: "y"
        for o in (
            "CONFIG_ZONE_DEVICE",
            "CONFIG_LIBNVDIMM",
            "CONFIG_X86_PMEM_LEGACY",
            "CONFIG_DEV_DAX",
            "CONFIG_DEV_DAX_PMEM",
        )
    }
    k = kernels.Kernel("k", "6.12.0", Path("/x"), None, cfg)
    assert skip_reason(sc, k) == "kernel 6.12.0 lacks CONFIG_IO_URING (its .config)"
    cfg["CONFIG_IO_URING"] = "y"
    assert skip_reason(sc, k) is None
    old = kernels.Kernel("k", "5.2.0", Path("/x"), None, cfg)
    sc.min_kernel = (6, 2)
    assert skip_reason(sc, old) == "needs kernel >= 6.2"


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from zdfuzz.cli import main

    runner = CliRunner()
    r = runner.invoke(main, ["lab", "run", "f1-devdax-unbind-iouring", "--kernel", "debian-9"])
    assert r.exit_code == 2 and "unknown kernel 'debian-9'" in r.output and "Traceback" not in r.output
    bad = tmp_path / "bad.lab"
    bad.write_text("scenario x\nactors A\nA frobnicate\n")
    r = runner.invoke(main, ["lab", "run", str(bad), "--kernel", "debian-6.12"])
    assert r.exit_code == 2 and f"{bad}:3: unknown operation 'frobnicate'" in r.output
    r = runner.invoke(main, ["lab", "run", "no-such-scenario", "--kernel", "debian-6.12"])
    assert r.exit_code == 2 and "no such scenario file or built-in scenario" in r.output
    r = runner.invoke(main, ["lab", "check", "--kernel", "debian-6.12", "--only", "zzz"])
    assert r.exit_code == 2 and "no built-in scenario matches 'zzz'" in r.output


def test_check_source_builds_the_users_tree_then_checks_that_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """`lab check --source DIR`: one command for a patched tree — the lab
    kernel is built (or found in the cache) from DIR and the suite runs on
    exactly that kernel, not on whichever lab kernel is newest."""
    from click.testing import CliRunner

    from zdfuzz.cli import main
    from zdfuzz.lab import build as lab_build
    from zdfuzz.lab import cli as lab_cli

    built = kernels.Kernel("lab", "6.12.0-mine", Path("/cache/lab-x/boot/bzImage"), None, {})
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(lab_build, "build", lambda source, *a: calls.append(("build", source)) or built)

    def fake_run_many(paths, kernel_name, *a, built=None, **kw):  # type: ignore[no-untyped-def]
        calls.append(("run", kernel_name, built, len(paths)))

    monkeypatch.setattr(lab_cli, "_run_many", fake_run_many)
    r = CliRunner().invoke(main, ["lab", "check", "--source", "/src/linux", "--only", "hmm"])
    assert r.exit_code == 0, r.output
    assert calls[0] == ("build", "/src/linux")
    assert calls[1][2] is built and calls[1][3] >= 3
    r = CliRunner().invoke(main, ["lab", "check"])
    assert r.exit_code == 2 and "give --kernel K, or --source DIR" in r.output
    r = CliRunner().invoke(main, ["lab", "check", "--kernel", "lab", "--source", "/src/linux"])
    assert r.exit_code == 2


def test_cli_model_prints_the_prediction_and_a_replayable_program() -> None:
    from click.testing import CliRunner

    import zdfuzz
    from zdfuzz.cli import main

    r = CliRunner().invoke(main, ["lab", "model", "fsdax-truncate-mapped-vmsplice"])
    assert r.exit_code == 0, r.output
    assert "verdict: clean" in r.output
    program = r.output[r.output.index("rules e3") :]
    assert zdfuzz.Program.parse(program).to_text().startswith("rules e3")
    r = CliRunner().invoke(main, ["lab", "model", "fsdax-truncate-mapped-vmsplice", "--json"])
    doc = json.loads(r.output)
    assert doc["schema"] == "zdfuzz.lab.model/1" and doc["violation"] is None
    assert doc["steps"][5] == {
        "index": 5,
        "outcome": "blocks",
        "completes_at": 6,
        "notes": doc["steps"][5]["notes"],
        "actions": ["truncate file=0 index=0 cpu=0"],
    }
    r = CliRunner().invoke(main, ["lab", "scenarios"])
    assert r.exit_code == 0 and "f1-devdax-unbind-iouring" in r.output


def test_stock_kernels_use_their_preset_files_and_the_files_differ_from_e3_only_where_documented() -> None:
    import zdfuzz

    k = kernels.Kernel("debian-6.12", "6.12.117+deb12-amd64", Path("/x"), None, None, meta={"name": "debian-6.12"})
    assert k.preset.endswith("presets/debian-6.12.toml")
    assert kernels.Kernel("custom", "6.12.5", Path("/x"), None, None).preset == "e3"
    base = dict((key, v) for key, v, _ in zdfuzz.Rules.preset("e3").switches())
    for name in ("debian-6.12", "debian-6.1"):
        path = kernels.stock_preset(name)
        assert path is not None
        r = zdfuzz.Rules.load(path)
        assert r.base == "e3"
        diff = {key: v for key, v, _ in r.switches() if base[key] != v}
        backports = {"migrate.finalize_putback_src": "false"}
        if name == "debian-6.12":
            # read in 6.12.117's drivers/pci/p2pdma.c: the error-path fix is backported
            backports["p2p.mmap_error_puts_ref"] = "true"
            # read in 6.12's mm/rmap.c: __folio_set_anon has no PageAnon early exit
            backports["migrate.new_anon_rmap_keeps_anon"] = "false"
        assert diff == backports


def test_the_lab_config_fragment_and_its_check() -> None:
    from zdfuzz.lab import build

    opts = build.fragment_options()
    for need in (
        "CONFIG_KASAN",
        "CONFIG_DEBUG_VM",
        "CONFIG_DEVICE_PRIVATE",
        "CONFIG_TEST_HMM",
        "CONFIG_PCI_P2PDMA",
        "CONFIG_BLK_DEV_NVME",
        "CONFIG_DEV_DAX",
        "CONFIG_FS_DAX",
        "CONFIG_X86_PMEM_LEGACY",
        "CONFIG_IO_URING",
        "CONFIG_KALLSYMS",
    ):
        assert opts[need] in ("y", "m"), need
    assert opts["CONFIG_SLUB_TINY"] == "n"
    cfg = {"CONFIG_KASAN": "y", "CONFIG_TEST_HMM": "y", "CONFIG_SLUB_TINY": "y"}
    assert build.check_config(
        cfg, {"CONFIG_KASAN": "y", "CONFIG_TEST_HMM": "m", "CONFIG_SLUB_TINY": "n", "CONFIG_X": "y"}
    ) == ["CONFIG_TEST_HMM=y (wanted m)", "CONFIG_SLUB_TINY=y (wanted unset)", "CONFIG_X=unset (wanted y)"]


def test_a_user_tree_with_an_in_tree_build_is_refused(tmp_path: Path) -> None:
    from zdfuzz.lab import build

    (tmp_path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 16\nSUBLEVEL = 0\n")
    src = build.user_source(str(tmp_path))
    assert src.identity.startswith("tree:") and "6.16.0" in src.label
    (tmp_path / ".config").write_text("CONFIG_X=y\n")
    with pytest.raises(LabError, match="make mrproper"):
        build.user_source(str(tmp_path))
    with pytest.raises(LabError, match="not a kernel tree"):
        build.user_source(str(tmp_path / ".."))
