"""The guest: its initramfs, and one boot of it under QEMU.

The initramfs holds busybox (static), the in-guest agent (a static Rust
binary, ``rust/lab-agent``) as ``/init``, the kernel modules the set-up
needs (decompressed: busybox and the agent load plain ELF), the host's
``ndctl``/``mke2fs``/``mkfs.xfs`` with their shared libraries, and
``/lab/scenario.json``. Everything but the scenario is one cached archive
(keyed by the SHA-256 of its inputs); the scenario is a second small
archive appended to it: the kernel unpacks concatenated initramfs archives
in order (init/initramfs.c).

A boot writes the kernel console to ``console.log`` (ttyS0) and the agent's
JSON lines to ``agent.log`` (ttyS1), both in a temporary directory that is
removed afterwards; QEMU runs in its own process group and is killed on
every way out (done, timeout, panic, Ctrl-C).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zdfuzz.lab import kmod
from zdfuzz.lab.cache import atomic_write, cache_dir
from zdfuzz.lab.cpio import CpioWriter
from zdfuzz.lab.errors import LabError
from zdfuzz.lab.kernels import Kernel
from zdfuzz.lab.setups import MEMORY, Setup

AGENT_NAME = "zdfuzz-lab-agent"


# ---------------------------------------------------------------- host tools


def which(tool: str, package: str) -> Path:
    """A host program, or an error naming the Debian package that has it."""
    found = shutil.which(tool) if "/" not in tool else (tool if Path(tool).is_file() else None)
    if not found:
        raise LabError(f"{tool} is not installed on this host: apt-get install {package}")
    return Path(found)


def elf_is_static(path: Path) -> bool:
    """True when an ELF executable has no PT_INTERP (needs no dynamic loader)."""
    data = path.read_bytes()[:65536]
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            break
        (ptype,) = struct.unpack_from("<I", data, off)
        if ptype == 3:  # PT_INTERP
            return False
    return True


def shared_libraries(binary: Path) -> list[Path]:
    """The shared libraries ``binary`` loads (``ldd``), the loader included."""
    ldd = which("ldd", "libc-bin")
    out = subprocess.run([str(ldd), str(binary)], capture_output=True, text=True, check=False)
    if out.returncode != 0 and "not a dynamic executable" not in out.stdout + out.stderr:
        raise LabError(f"ldd {binary} failed: {out.stderr.strip()}")
    libs: list[Path] = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            i = parts.index("=>")
            if i + 1 < len(parts) and parts[i + 1].startswith("/"):
                libs.append(Path(parts[i + 1]))
            elif "not found" in line:
                raise LabError(f"{binary}: its library {parts[0]} is not installed")
        elif parts and parts[0].startswith("/"):
            libs.append(Path(parts[0]))
    return libs


def source_root() -> Path | None:
    from zdfuzz.drivers.sancov import source_root as root

    return root()


def find_agent(progress: Callable[[str], None] | None = None) -> Path:
    """The static in-guest agent: ``$ZDFUZZ_LAB_AGENT``, the copy shipped in
    the package, or a build from the source checkout (cargo decides whether
    it is up to date)."""
    env = os.environ.get("ZDFUZZ_LAB_AGENT")
    if env:
        p = Path(env)
        if not p.is_file():
            raise LabError(f"ZDFUZZ_LAB_AGENT={env}: no such file")
        return p
    shipped = Path(__file__).resolve().parent / "bin" / AGENT_NAME
    root = source_root()
    if root is None:
        if shipped.is_file():
            return shipped
        raise LabError(
            "the lab's in-guest agent is not in this installation: install zdfuzz from a source checkout "
            "(pip install -e .) with cargo available, or set ZDFUZZ_LAB_AGENT to a static build of rust/lab-agent"
        )
    return build_agent(root, progress)


def build_agent(root: Path, progress: Callable[[str], None] | None = None) -> Path:
    cargo = shutil.which("cargo")
    if cargo is None:
        raise LabError("building the lab's agent needs cargo (a Rust toolchain)")
    from zdfuzz.drivers.sancov import SetupError, host_triple

    try:
        triple = host_triple()
    except SetupError as e:
        raise LabError(str(e)) from e
    if progress:
        progress("building the in-guest agent (cargo, static)")
    env = dict(os.environ)
    # --target makes RUSTFLAGS apply to the agent only, not to build scripts
    # and proc-macros, which must stay dynamic host binaries.
    env["RUSTFLAGS"] = "-C target-feature=+crt-static"
    cmd = [
        cargo,
        "build",
        "--quiet",
        "--release",
        "-p",
        "zdfuzz-lab-agent",
        "--target",
        triple,
        "--target-dir",
        str(root / "target" / "lab-agent"),
    ]
    r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise LabError(f"building the lab agent failed:\n{r.stderr[-2000:]}")
    out = root / "target" / "lab-agent" / triple / "release" / AGENT_NAME
    if not out.is_file():
        raise LabError(f"cargo built nothing at {out}")
    return out


# ---------------------------------------------------------------- the image


@dataclass
class Image:
    base: Path
    modules: list[str]
    key: str


def _builtin_modules(kernel: Kernel) -> set[str]:
    if kernel.modules is None:
        return set()
    out: set[str] = set()
    for f in kernel.modules.rglob("modules.builtin"):
        for line in f.read_text(errors="replace").splitlines():
            out.add(Path(line.strip()).name.split(".ko")[0].replace("-", "_"))
    return out


def build_image(
    kernel: Kernel,
    setup: Setup,
    extra_modules: list[str],
    progress: Callable[[str], None] | None = None,
) -> Image:
    """The cached base initramfs for (kernel, set-up, modules, agent, tools)."""
    agent = find_agent(progress)
    busybox = which("busybox", "busybox-static")
    if not elf_is_static(busybox.resolve()):
        raise LabError(f"{busybox} is dynamically linked; the guest needs a static one: apt-get install busybox-static")
    tools: list[Path] = []
    for argv, package in setup.commands:
        if argv[0].startswith("/bin/"):
            continue  # a busybox applet
        tools.append(which(argv[0], package))
    if any(Path(argv[0]).name == "ndctl" for argv, _ in setup.commands) or setup.name == "devdax":
        tools.append(which("/usr/bin/ndctl", "ndctl"))
    tools = list(dict.fromkeys(tools))

    wanted = list(dict.fromkeys(setup.modules + extra_modules))
    builtin = _builtin_modules(kernel)
    loadable = [m for m in wanted if m.replace("-", "_") not in builtin]
    modules: list[kmod.Module] = []
    if loadable:
        if kernel.modules is None:
            raise LabError(f"kernel {kernel.name}: modules {', '.join(loadable)} are needed; pass --modules DIR")
        try:
            modules = kmod.closure(loadable, kmod.index_modules(kernel.modules))
        except kmod.ModuleError as e:
            raise LabError(f"kernel {kernel.name}: {e}") from e

    h = hashlib.sha256()
    inputs = [agent, busybox.resolve()] + [t.resolve() for t in tools] + [m.path for m in modules]
    for p in inputs:
        h.update(str(p).encode())
        st = p.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(json.dumps([m.name for m in modules]).encode())
    key = h.hexdigest()[:24]
    out = cache_dir() / "initramfs" / f"{key}.cpio.gz"
    if out.is_file():
        return Image(out, [m.name for m in modules], key)
    if progress:
        progress(f"assembling the initramfs ({len(modules)} modules)")

    w = CpioWriter()
    for d in [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "mnt",
        "run",
        "etc",
        "lab",
        "usr",
        "usr/bin",
        "usr/sbin",
        "lib",
        "lib/modules",
        "lib/x86_64-linux-gnu",
        "lib64",
    ]:
        w.directory(d)
    w.chardev("dev/console", 5, 1)
    w.file("bin/busybox", busybox.resolve().read_bytes(), 0o755)
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=False).stdout.split()
    for app in applets:
        if not w.has(f"bin/{app}"):
            w.symlink(f"bin/{app}", "busybox")
    w.file("init", agent.read_bytes(), 0o755)
    w.file(
        "etc/profile",
        b'export PATH=/bin:/sbin:/usr/bin:/usr/sbin\nexport LD_LIBRARY_PATH=/lib/x86_64-linux-gnu\nPS1="zdfuzz-lab# "\n',
    )
    libs: set[Path] = set()
    for t in tools:
        dest = "usr/sbin/" + t.name if "sbin" in str(t) else "usr/bin/" + t.name
        if not w.has(dest):
            w.file(dest, t.resolve().read_bytes(), 0o755)
        libs.update(shared_libraries(t))
    for lib in sorted(libs):
        name = str(lib).lstrip("/")
        dest = name if name.startswith("lib64/") else "lib/x86_64-linux-gnu/" + lib.name
        if not w.has(dest):
            w.file(dest, lib.resolve().read_bytes(), 0o755)
    for m in modules:
        try:
            w.file(f"lib/modules/{m.name}.ko", kmod.read_module(m.path))
        except kmod.ModuleError as e:
            raise LabError(str(e)) from e
    atomic_write(out, w.finish())
    # keep the cache from growing with every agent or module change: the ten
    # most recently built images stay
    images = sorted(out.parent.glob("*.cpio.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in images[10:]:
        old.unlink(missing_ok=True)
    return Image(out, [m.name for m in modules], key)


def scenario_archive(scenario: dict[str, Any]) -> bytes:
    w = CpioWriter()
    w.file("lab/scenario.json", json.dumps(scenario).encode())
    return w.finish()


# ---------------------------------------------------------------- QEMU


@dataclass
class Accel:
    name: str  # "kvm" or "tcg"
    reason: str
    args: list[str]


TCG = Accel("tcg", "", ["-accel", "tcg", "-cpu", "max"])


def qemu_binary() -> Path:
    return which("qemu-system-x86_64", "qemu-system-x86")


def probe_accel(kernel: Kernel) -> Accel:
    """KVM when it can boot this kernel here, else TCG (software emulation).

    Some hosts expose /dev/kvm but cannot run a guest kernel with it (nested
    virtualisation that rejects an MSR or an instruction); a 20-second probe
    boot without an initramfs tells: under working KVM the kernel prints its
    banner at once. The answer is cached per kernel and QEMU binary."""
    kvm = Path("/dev/kvm")
    if not kvm.exists():
        return Accel("tcg", "no /dev/kvm", TCG.args)
    if not os.access(kvm, os.R_OK | os.W_OK):
        return Accel("tcg", "/dev/kvm is not accessible to this user", TCG.args)
    qemu = qemu_binary()
    cache = cache_dir() / "accel.json"
    key = f"{kernel.image}:{kernel.image.stat().st_size}:{qemu.stat().st_mtime_ns}"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        name, reason = known[key]
        return Accel(name, reason, ["-accel", "kvm", "-cpu", "host"] if name == "kvm" else TCG.args)
    cmd = [
        str(qemu),
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-m",
        "512M",
        "-display",
        "none",
        "-no-reboot",
        "-nodefaults",
        "-serial",
        "stdio",
        "-kernel",
        str(kernel.image),
        "-append",
        "console=ttyS0 panic=-1",
    ]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
        out = p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    if "Linux version" in out and "KVM internal error" not in out:
        result = ("kvm", "")
    else:
        last = next((ln for ln in out.splitlines() if "error" in ln.lower()), out.strip().splitlines()[-1:] or [""])
        detail = last if isinstance(last, str) else (last[0] if last else "")
        result = ("tcg", f"KVM cannot boot this kernel here ({detail.strip()[:120] or 'no output'})")
    known[key] = list(result)
    atomic_write(cache, json.dumps(known, indent=1).encode())
    return Accel(result[0], result[1], ["-accel", "kvm", "-cpu", "host"] if result[0] == "kvm" else TCG.args)


@dataclass
class GuestRun:
    status: str  # done | setup-failed | fatal | panic | hang | boot-timeout | qemu-failed | interrupted
    records: list[dict[str, Any]]
    console: str
    accel: str
    seconds: float
    message: str = ""
    kernel_release: str = ""
    boot_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def last_console_lines(self, n: int = 30) -> list[str]:
        return self.console.rstrip().splitlines()[-n:]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def run_guest(
    kernel: Kernel,
    image: Image,
    scenario: dict[str, Any],
    accel: Accel,
    *,
    boot_timeout: float = 120.0,
    idle_timeout: float = 90.0,
    total_timeout: float = 600.0,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    interactive: bool = False,
    cmdline_extra: str = "",
    setup: Setup | None = None,
) -> GuestRun:
    """Boot once, run the scenario, collect every report line and the console."""
    qemu = qemu_binary()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="zdfuzz-lab-") as tmp:
        t = Path(tmp)
        initrd = t / "initrd.gz"
        with initrd.open("wb") as f:
            with image.base.open("rb") as b:
                shutil.copyfileobj(b, f)
            f.write(scenario_archive(scenario))
        console_path, agent_path = t / "console.log", t / "agent.log"
        cmdline = f"console=ttyS0 {cmdline_extra} panic=-1".strip()
        cmd = [
            str(qemu),
            *accel.args,
            "-m",
            MEMORY,
            "-smp",
            "2",
            "-display",
            "none",
            "-no-reboot",
            "-nodefaults",
            "-kernel",
            str(kernel.image),
            "-initrd",
            str(initrd),
            "-append",
            cmdline,
        ]
        if setup is not None:
            for name, size in setup.disks:
                with (t / name).open("wb") as disk:
                    disk.truncate(size)
            cmd += [a.replace("{tmp}", str(t)) for a in setup.qemu]
        if interactive:
            cmd += ["-serial", "mon:stdio", "-serial", f"file:{agent_path}"]
            r = subprocess.run(cmd, check=False)
            return GuestRun(
                "done" if r.returncode == 0 else "qemu-failed", [], "", accel.name, time.monotonic() - start
            )
        cmd += ["-serial", f"file:{console_path}", "-serial", f"file:{agent_path}"]
        stderr_path = t / "qemu.stderr"
        with stderr_path.open("wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        records: list[dict[str, Any]] = []
        status, message = "", ""
        offset = 0
        partial = b""
        last_progress = time.monotonic()
        boot_seconds = 0.0
        release = ""

        def read_new() -> None:
            nonlocal offset, partial, last_progress, boot_seconds, release
            try:
                with agent_path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except FileNotFoundError:
                return
            if not chunk:
                return
            offset += len(chunk)
            partial += chunk
            *lines, partial = partial.split(b"\n")
            for raw in lines:
                text = raw.decode("utf-8", "replace").strip().replace("\r", "")
                if not text.startswith("{"):
                    continue
                try:
                    rec = json.loads(text)
                except ValueError:
                    continue
                records.append(rec)
                last_progress = time.monotonic()
                if rec.get("t") == "hello":
                    boot_seconds = time.monotonic() - start
                    release = str(rec.get("kernel", ""))
                if on_record:
                    on_record(rec)

        try:
            while True:
                read_new()
                now = time.monotonic()
                done = next((r for r in records if r.get("t") == "done"), None)
                if done is not None:
                    status = {"ok": "done"}.get(str(done.get("status")), str(done.get("status")))
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        pass
                    break
                if proc.poll() is not None:
                    read_new()
                    status = "panic" if records else "qemu-failed"
                    break
                if not records and now - start > boot_timeout:
                    status, message = "boot-timeout", f"no word from the agent {boot_timeout:.0f} s after starting QEMU"
                    break
                if records and now - last_progress > idle_timeout:
                    status, message = "hang", f"the guest said nothing for {idle_timeout:.0f} s"
                    break
                if now - start > total_timeout:
                    status, message = "hang", f"the scenario did not finish within {total_timeout:.0f} s"
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            status, message = "interrupted", "interrupted"
            raise
        finally:
            _kill_group(proc)
            console = console_path.read_text(errors="replace") if console_path.exists() else ""
            qerr = stderr_path.read_text(errors="replace") if stderr_path.exists() else ""
        if status == "qemu-failed":
            message = f"QEMU exited with status {proc.returncode}: {qerr.strip()[-500:] or 'no message'}"
        elif status == "panic":
            message = "the guest stopped before the agent finished (kernel panic or reboot)"
        return GuestRun(
            status,
            records,
            console,
            accel.name,
            time.monotonic() - start,
            message,
            release,
            boot_seconds,
            {"qemu_stderr": qerr},
        )
