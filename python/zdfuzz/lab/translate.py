"""Model programs as lab scenarios: what user space can drive of them.

The fuzzing engines search the model; ``zdfuzz lab fuzz`` takes the programs
they found interesting and runs on a real kernel the part of each that user
space can drive. This module turns a ``.zdf`` program into a ``.lab``
scenario, action by action, until the first action no user-space step can
stand for (the *drivable prefix*):

* device-dax (``generic``): ``dev_dax_huge_fault`` is an ``mmap`` of
  ``/dev/dax0.0`` at the page's offset and a store; ``munmap``; ``cpu_write``
  a store; ``get_user_pages`` a ``vmsplice`` into a pipe (FOLL_GET);
  ``pin_user_pages`` an io_uring fixed buffer, one ring per pin (FOLL_PIN |
  FOLL_LONGTERM: the only pin user space can hold at will); ``unpin_user_page``
  and ``put_page by=gup`` release the ring or the pipe that holds the page;
  ``fork`` a fork (the child closes the pipes and rings it inherits, so each
  reference keeps one holder, as in the model); ``exit_mmap`` the process's
  exit, which also releases what it holds; ``memunmap_pages`` the unbind.
* FS-DAX (``fsdax``): files ``/mnt/fN`` on the DAX file system;
  ``dax_associate_entry`` takes effect at the next fault or truncate of the
  entry (the kernel associates at fault); ``dax_iomap_fault`` an ``mmap`` of
  the file and a store; ``truncate`` of one entry a punched hole;
  ``memunmap_pages`` the unbind of nd_pmem.
* Kernel-internal actions (``step task=N``, ``rcu_grace_period``) are left to
  the kernel's own scheduler, and the lab's prediction settles the model
  between steps the same way; ``dma_write`` (the data oracle only) is
  dropped.

Where user space cannot ask for exactly what the program did, the step does
what user space can and its ``=>`` actions say what that is in the model
(a short-term pin becomes a long-term one on device-dax and a FOLL_GET
reference on FS-DAX, where long-term pins are refused): the prediction the
kernel is compared with is always for the steps that really ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import zdfuzz

DRIVABLE_TYPES = ("generic", "fsdax")


class NotDrivable(Exception):
    pass


@dataclass
class Holding:
    kind: str  # "pipe" | "ring"
    name: str
    actor: str
    pfn: int
    release_model: str  # the model action the release stands for


@dataclass
class Translation:
    text: str  # the .lab scenario
    drivable: int  # model actions translated
    total: int
    stopped_at: str  # the first action that could not be driven, or ""
    steps: int


@dataclass
class _State:
    dtype: str
    actors: dict[int, str] = field(default_factory=dict)
    alive: dict[int, bool] = field(default_factory=dict)
    gen: dict[int, int] = field(default_factory=dict)
    opened: dict[tuple[str, str], str] = field(default_factory=dict)  # (actor, path) -> file name
    maps: dict[tuple[int, int], tuple[str, Any]] = field(default_factory=dict)  # (proc, addr) -> (map name, key)
    holdings: list[Holding] = field(default_factory=list)
    pending_assoc: dict[tuple[int, int], str] = field(default_factory=dict)
    block: dict[tuple[int, int], int] = field(default_factory=dict)  # (file, index) -> model pfn
    written: set[int] = field(default_factory=set)
    n: int = 0
    gone: bool = False
    lines: list[str] = field(default_factory=list)
    actor_names: list[str] = field(default_factory=list)

    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


def _flags(args: dict[str, Any]) -> str:
    return str(args.get("flags") or "0")


def _step(st: _State, runner: str, op: str, args: str = "", model: list[str] | None = None) -> None:
    line = f"{runner} {op}" + (f" {args}" if args else "")
    if model:
        line = f"{line:<56} => " + "; ".join(model)
    st.lines.append(line)


def _actor(st: _State, proc: int) -> str:
    if not st.alive.get(proc, False):
        raise NotDrivable(f"process {proc} is not alive")
    return st.actors[proc]


def _mapped(st: _State, args: dict[str, Any], empty: str) -> tuple[str, str, Any]:
    """The actor of (proc, addr), the mapping there and what it maps; an
    empty slot is not drivable (``empty`` says why)."""
    proc, addr = args["proc"], args["addr"]
    actor = _actor(st, proc)
    if (proc, addr) not in st.maps:
        raise NotDrivable(empty)
    m, key = st.maps[(proc, addr)]
    return actor, m, key


def _open(st: _State, actor: str, path: str) -> str:
    key = (actor, path)
    if key not in st.opened:
        name = st.fresh("f")
        _step(st, actor, "open", f"path={path} as={name}")
        st.opened[key] = name
    return st.opened[key]


def _release(st: _State, h: Holding) -> list[str]:
    st.holdings.remove(h)
    return [h.release_model]


def _take(st: _State, h: Holding) -> None:
    st.holdings.append(h)


def translate(program: zdfuzz.Program, max_steps: int = 40) -> Translation:
    """The drivable prefix of ``program`` as a ``.lab`` scenario."""
    shape = program.shape.to_dict()
    types = list(shape["types"])
    if len(types) != 1 or types[0] not in DRIVABLE_TYPES or shape["pgmaps"] != 1:
        raise NotDrivable(f"types {types} with {shape['pgmaps']} pgmaps: the lab drives one device-dax or FS-DAX pgmap")
    st = _State(types[0])
    for p in range(shape["procs"]):
        st.actors[p], st.alive[p], st.gen[p] = f"P{p}", True, 0
        st.actor_names.append(f"P{p}")
    actions = program.actions
    done = 0
    stopped = ""
    for a in actions:
        if len(st.lines) >= max_steps:
            stopped = f"{a} (the scenario reached {max_steps} steps)"
            break
        try:
            if _translate_one(st, a, shape):
                pass
        except NotDrivable as e:
            stopped = f"{a} ({e})"
            break
        done += 1
    if not any("=>" in ln for ln in st.lines):
        raise NotDrivable("no drivable action" + (f": {stopped}" if stopped else ""))
    config = " ".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in shape.items())
    setup = "devdax" if st.dtype == "generic" else "fsdax-ext4"
    head = [
        f"# translated by zdfuzz lab fuzz from a {program.rules} program: {done} of {len(actions)} actions"
        + (f"; stopped at {stopped}" if stopped else ""),
        "scenario fuzz",
        "title    a model program run on the kernel",
        f"setup    {setup}",
        "needs    CONFIG_IO_URING",
        f"config   {config}",
        "model    memremap_pages pgmap=0",
        f"actors   {' '.join(st.actor_names)}",
        "",
    ]
    return Translation("\n".join(head + st.lines) + "\n", done, len(actions), stopped, len(st.lines))


def _translate_one(st: _State, a: zdfuzz.Action, shape: dict[str, Any]) -> bool:
    name, text = a.name, str(a)
    args: dict[str, Any] = dict(a.args)
    if name in ("step", "rcu_grace_period", "dma_write"):
        return False
    if name == "memremap_pages":
        if args.get("pgmap") != 0:
            raise NotDrivable("a second pgmap")
        return False
    if name == "memunmap_pages":
        if st.gone:
            raise NotDrivable("a second unbind")
        st.gone = True
        _step(st, "-", "unbind_dax dev=dax0.0" if st.dtype == "generic" else "unbind_pmem", "", [text])
        return True
    if name == "dev_dax_huge_fault" and st.dtype == "generic":
        proc, addr, pfn = args["proc"], args["addr"], args["pfn"]
        actor = _actor(st, proc)
        if st.gone:
            raise NotDrivable("a fault after the unbind")
        dax = _open(st, actor, "/dev/dax0.0")
        if (proc, addr) in st.maps:
            raise NotDrivable("a fault on a slot that is still mapped")
        m = st.fresh("m")
        _step(st, actor, "mmap", f"file={dax} pages=1 offset={pfn} as={m}")
        st.maps[(proc, addr)] = (m, pfn)
        _step(st, actor, "touch", f"map={m} page=0", [text])
        return True
    if name == "dax_associate_entry" and st.dtype == "fsdax":
        st.pending_assoc[(args["file"], args["index"])] = text
        st.block[(args["file"], args["index"])] = args["pfn"]
        return False
    if name == "dax_iomap_fault" and st.dtype == "fsdax":
        proc, addr, file, index = args["proc"], args["addr"], args["file"], args["index"]
        actor = _actor(st, proc)
        if st.gone:
            raise NotDrivable("a fault after the unbind")
        _write(st, file, shape)
        f = _open(st, actor, f"/mnt/f{file}")
        if (proc, addr) in st.maps:
            raise NotDrivable("a fault on a slot that is still mapped")
        m = st.fresh("m")
        _step(st, actor, "mmap", f"file={f} pages=1 offset={index} as={m}")
        st.maps[(proc, addr)] = (m, (file, index))
        model = [st.pending_assoc.pop((file, index))] if (file, index) in st.pending_assoc else []
        _step(st, actor, "touch", f"map={m} page=0", model + [text])
        return True
    if name == "truncate" and st.dtype == "fsdax":
        file, index = args["file"], args["index"]
        _write(st, file, shape)
        model = [st.pending_assoc.pop((file, index))] if (file, index) in st.pending_assoc else []
        _step(st, "-", "punch_hole", f"path=/mnt/f{file} page={index} pages=1", model + [text])
        return True
    if name == "munmap":
        actor, m, _ = _mapped(st, args, "munmap of an empty slot")
        del st.maps[(args["proc"], args["addr"])]
        _step(st, actor, "munmap", f"map={m}", [text])
        return True
    if name == "cpu_write":
        actor, m, _ = _mapped(st, args, "a write through an empty slot")
        _step(st, actor, "touch", f"map={m} page=0", [text])
        return True
    if name in ("get_user_pages", "pin_user_pages"):
        proc, addr = args["proc"], args["addr"]
        actor, m, key = _mapped(st, args, "GUP on an empty slot")
        pfn = _pfn_of(st, key)
        cpu = args.get("cpu", 0)
        longterm = "FOLL_LONGTERM" in _flags(args)
        pin = name == "pin_user_pages"
        if st.dtype == "generic" and (pin or longterm):
            ring = st.fresh("r")
            pin_action = f"pin_user_pages proc={proc} addr={addr} flags=FOLL_LONGTERM cpu={cpu}"
            _step(st, actor, "iouring_register", f"map={m} page=0 ring={ring}", [pin_action])
            if pfn is not None:
                _take(st, Holding("ring", ring, actor, pfn, f"unpin_user_page pfn={pfn} cpu={cpu}"))
            return True
        if st.dtype == "fsdax" and longterm:
            ring = st.fresh("r")
            pin_action = f"pin_user_pages proc={proc} addr={addr} flags=FOLL_LONGTERM cpu={cpu}"
            _step(st, actor, "iouring_register", f"map={m} page=0 ring={ring}", [pin_action])
            return True  # refused: FS-DAX pages are never long-term pinned
        pipe = st.fresh("g")
        get_action = f"get_user_pages proc={proc} addr={addr} flags=0 cpu={cpu}"
        _step(st, actor, "vmsplice", f"map={m} page=0 as={pipe}", [get_action])
        if pfn is not None:
            _take(st, Holding("pipe", pipe, actor, pfn, f"put_page pfn={pfn} by=gup cpu={cpu}"))
        return True
    if name in ("unpin_user_page", "put_page"):
        if name == "put_page" and args.get("by") != "gup":
            raise NotDrivable("a kernel user's put")
        pfn = args["pfn"]
        held = [h for h in st.holdings if h.pfn == pfn]
        if not held:
            raise NotDrivable(f"no user-space holder of pfn {pfn} to release")
        h = next((x for x in held if x.kind == ("ring" if name == "unpin_user_page" else "pipe")), held[0])
        model = _release(st, h)
        if h.kind == "ring":
            _step(st, h.actor, "iouring_close", f"ring={h.name}", model)
        else:
            _step(st, h.actor, "close_pipe", f"pipe={h.name}", model)
        return True
    if name == "fork":
        proc, child = args["proc"], args["child"]
        parent = _actor(st, proc)
        if st.alive.get(child, False):
            raise NotDrivable("fork into a live slot")
        st.gen[child] = st.gen.get(child, 0) + 1
        cname = f"P{child}" + "bcdefghijklmnopqrstuvwxyz"[st.gen[child] - 1]
        _step(st, parent, "fork", f"child={cname}", [text])
        _step(st, cname, "drop_holdings")
        st.actors[child], st.alive[child] = cname, True
        for (p, addr), v in list(st.maps.items()):
            if p == proc:
                st.maps[(child, addr)] = v
        for (act, path), f in list(st.opened.items()):
            if act == parent:
                st.opened[(cname, path)] = f
        return True
    if name == "exit_mmap":
        proc = args["proc"]
        actor = _actor(st, proc)
        model = [text] + [m for h in [h for h in st.holdings if h.actor == actor] for m in _release(st, h)]
        _step(st, actor, "exit", "", model)
        st.alive[proc] = False
        for k in [k for k in st.maps if k[0] == proc]:
            del st.maps[k]
        return True
    raise NotDrivable(f"no user-space step stands for {name}")


def _pfn_of(st: _State, key: Any) -> int | None:
    """The model pfn behind a mapping: device-dax maps the pfn itself; an
    FS-DAX mapping maps whatever block the model associated with the entry
    (on the kernel, the file system's choice)."""
    if isinstance(key, int):
        return key
    return st.block.get(key)


def _write(st: _State, file: int, shape: dict[str, Any]) -> None:
    if file not in st.written:
        _step(st, "-", "write_file", f"path=/mnt/f{file} pages={shape['file_pages']}")
        st.written.add(file)
