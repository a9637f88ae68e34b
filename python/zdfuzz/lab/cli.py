"""``zdfuzz lab``: the model's verdicts checked on running kernels.

    zdfuzz lab kernels [--fetch NAME]              stock kernels: cached, or fetchable
    zdfuzz lab scenarios                           the conformance suite
    zdfuzz lab model SCENARIO [--rules R]          the model's prediction (no VM)
    zdfuzz lab run SCENARIO... --kernel K          boot, run, compare; per-step detail
    zdfuzz lab check --kernel K                    the whole suite, one table
    zdfuzz lab shell --kernel K [--setup devdax]   an interactive guest with the devices set up

Exit status of run/check: 0 every row agrees, does not apply to this kernel,
or disagrees in a way docs/findings.md explains (known.toml); 1 an
unexplained disagreement; 2 bad input or a scenario that could not run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from zdfuzz.lab import guest, kernels
from zdfuzz.lab.conformance import Row
from zdfuzz.lab.errors import LabError
from zdfuzz.lab.predict import predict, rules_label
from zdfuzz.lab.run import Result, require_scenarios, run_scenario
from zdfuzz.lab.scenario import builtin, find, load
from zdfuzz.lab.setups import SETUPS

console = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

CHECK_SCHEMA = "zdfuzz.lab.check/1"


def _fail(e: Exception) -> None:
    err.print(f"zdfuzz lab: {e}", style="red", markup=False)
    raise SystemExit(2) from e


def _download_progress() -> tuple[Progress, Any]:
    prog = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def cb(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = prog.add_task(f"downloading {name}", total=total or None)
        prog.update(tasks[name], completed=done)

    return prog, cb


def resolve_kernel(name: str, modules: str | None, config: str | None) -> kernels.Kernel:
    prog, cb = _download_progress()
    with prog:
        return kernels.resolve(name, modules, config, fetch=True, progress=cb)


def _status(msg: str) -> None:
    err.print(f"[dim]{msg}[/dim]")


@click.group()
def lab() -> None:
    """Check the model's verdicts on real kernels booted under QEMU."""


kernel_opt = click.option(
    "--kernel",
    "kernel_name",
    required=True,
    help="debian-6.12, debian-6.1, lab (after `lab build`), or a path to your bzImage.",
)
modules_opt = click.option("--modules", type=click.Path(file_okay=False), help="Module directory of your kernel.")
config_opt = click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Your kernel's .config.")


@lab.command("kernels")
@click.option("--fetch", "fetch_names", multiple=True, help="Download this stock kernel now (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def kernels_cmd(fetch_names: tuple[str, ...], as_json: bool) -> None:
    """Stock kernels: those in the cache, and those that can be fetched."""
    try:
        for n in fetch_names:
            k = resolve_kernel(n, None, None)
            _status(f"{n}: {k.release} ({k.meta.get('version', '')}) cached")
        cached = kernels.cached()
    except LabError as e:
        _fail(e)
    rows = []
    for k in cached:
        pkg = f"{k.meta.get('package', '')} {k.meta.get('version', '')}".strip() or k.meta.get("source", "")
        rows.append(
            {
                "name": k.meta.get("name", k.name),
                "release": k.release,
                "preset": rules_label(k.preset),
                "package": pkg,
                "state": "built" if k.meta.get("name") == "lab" else "cached",
                "path": str(k.image.parent.parent),
            }
        )
    for name, (suites, _) in kernels.STOCK.items():
        if not any(r["name"] == name for r in rows):
            rows.append(
                {
                    "name": name,
                    "release": "",
                    "preset": "",
                    "package": f"newest in {', '.join(suites)}",
                    "state": "fetchable",
                    "path": "",
                }
            )
    if not any(r["name"] == "lab" for r in rows):
        rows.append(
            {
                "name": "lab",
                "release": "",
                "preset": "",
                "package": "zdfuzz lab build",
                "state": "not built",
                "path": "",
            }
        )
    if as_json:
        click.echo(json.dumps({"schema": "zdfuzz.lab.kernels/1", "kernels": rows}, indent=1))
        return
    t = Table(title="lab kernels")
    for c in ("name", "release", "model preset", "package", "state"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(r["name"], r["release"], r["preset"], r["package"], r["state"])
    console.print(t)
    console.print(
        "Your own kernel: --kernel path/to/bzImage --modules DIR [--config .config] (docs/lab.md).", markup=False
    )


@lab.command("build")
@click.option(
    "--source", type=click.Path(file_okay=False), help="Your kernel tree (default: Debian's linux-source-6.12)."
)
@click.option("--jobs", type=click.IntRange(1), help="make -j (default: every core).")
@click.option(
    "--fragment", type=click.Path(dir_okay=False, exists=True), help="A config fragment instead of the lab's."
)
@click.option("--check-config", is_flag=True, help="Only check that Kconfig accepts the fragment (no compiling).")
@click.option("--force", is_flag=True, help="Rebuild even if the cache has this build.")
def build_cmd(source: str | None, jobs: int | None, fragment: str | None, check_config: bool, force: bool) -> None:
    """Build the lab kernel: KASAN, DEBUG_VM, DEVICE_PRIVATE + TEST_HMM, PCI_P2PDMA, NVMe, DAX (cached)."""
    from zdfuzz.lab import build as lab_build

    prog, cb = _download_progress()
    try:
        with prog:
            if check_config:
                src, bad = lab_build.check_fragment(source, fragment, _status, cb)
                if bad:
                    _fail(LabError(f"{src.label}: Kconfig does not accept: " + "; ".join(bad)))
                console.print(f"{src.label}: every option of the fragment is set as asked", markup=False)
                return
        with err.status("building the lab kernel") as status:
            k = lab_build.build(source, jobs, fragment, lambda m: status.update(m), cb, force)
    except LabError as e:
        _fail(e)
    console.print(
        f"lab kernel {k.release} ({k.meta.get('source', '')}), built in {k.meta.get('build_seconds')} s: --kernel lab",
        markup=False,
    )


@lab.command("scenarios")
def scenarios_cmd() -> None:
    """The built-in conformance suite."""
    t = Table(title="lab scenarios")
    for c in ("scenario", "setup", "title"):
        t.add_column(c, overflow="fold")
    try:
        for p in builtin():
            sc = load(p)
            t.add_row(sc.name, sc.setup, sc.title)
    except LabError as e:
        _fail(e)
    console.print(t)


@lab.command("model")
@click.argument("scenario")
@click.option("--rules", "rules_name", default=None, help="Preset (default: e3, the preset of 6.1 and 6.12).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def model_cmd(scenario: str, rules_name: str | None, as_json: bool) -> None:
    """The model's prediction for a scenario, and its settled .zdf program."""
    try:
        sc = load(find(scenario))
        p = predict(sc, rules_name or "e3")
    except LabError as e:
        _fail(e)
    if as_json:
        click.echo(
            json.dumps(
                {"schema": "zdfuzz.lab.model/1", "scenario": sc.name, **p.to_json(), "program": p.program}, indent=1
            )
        )
        return
    t = Table(title=f"{sc.name} under {p.rules}")
    for c in ("step", "guest", "model actions", "prediction"):
        t.add_column(c, overflow="fold")
    from zdfuzz.lab.conformance import describe_prediction

    for s, sp in zip(sc.steps, p.steps, strict=True):
        t.add_row(str(sp.index), s.text, "; ".join(s.model), describe_prediction(sp))
    console.print(t)
    v = p.violation
    console.print(
        f"verdict: {v.invariant} ({v.category}) at step {v.step}: {v.message}" if v else "verdict: clean", markup=False
    )
    click.echo(p.program, nl=False)


def _print_result(res: Result, detail: bool) -> None:
    row = res.row
    colour = {"agree": "green", "disagree": "red", "n/a": "yellow", "error": "red"}.get(row.result, "white")
    console.print(
        f"[bold]{row.scenario}[/bold] on {row.kernel} (model: {row.rules}): [{colour}]{row.result}[/{colour}]"
        + (" (confirmed by a kernel report)" if row.confirmed else "")
    )
    if detail and row.steps:
        t = Table(show_header=True)
        for c in ("step", "guest", "model", "kernel"):
            t.add_column(c, overflow="fold")
        for s in row.steps:
            t.add_row(str(s["step"]), s["guest"], s["model"], s["kernel"])
        console.print(t)
    console.print(f"  model:  {row.model}", markup=False)
    console.print(f"  kernel: {row.observed}", markup=False)
    for r in row.reasons:
        console.print(f"  - {r}", markup=False)
    if detail:
        for e in row.events:
            console.print(f"  kernel {e.kind} after step {e.after}: {e.summary}", markup=False)
            for line in e.context[:18]:
                console.print(f"      {line}", markup=False)
        if res.saved:
            console.print(f"  saved: {res.saved}", markup=False)
        if res.run is not None:
            console.print(
                f"  guest: {res.run.status}, {res.run.accel}, boot {res.run.boot_seconds:.1f} s, "
                f"total {res.run.seconds:.1f} s",
                markup=False,
            )
            if res.run.status not in ("done",):
                for line in res.run.last_console_lines(15):
                    console.print(f"  | {line}", markup=False)


def _exit_code(rows: list[Row]) -> int:
    if any(r.result == "error" for r in rows):
        return 2
    if any(r.result == "disagree" and not r.explained for r in rows):
        return 1
    return 0


def _run_many(
    paths: list[Path],
    kernel_name: str,
    modules: str | None,
    config_path: str | None,
    rules_name: str | None,
    as_json: bool,
    detail: bool,
    built: kernels.Kernel | None = None,
) -> None:
    try:
        scs = require_scenarios(paths)
        kernel = built or resolve_kernel(kernel_name, modules, config_path)
        accel = guest.probe_accel(kernel)
    except LabError as e:
        _fail(e)
    _status(
        f"kernel {kernel.release}: model rules {rules_label(rules_name or kernel.preset)}; "
        f"QEMU with {accel.name}{' (' + accel.reason + ')' if accel.reason else ''}"
    )
    results: list[Result] = []
    try:
        for sc in scs:
            with err.status(f"{sc.name}: starting") as status:

                def rec(r: dict[str, Any]) -> None:
                    t = r.get("t")
                    if t == "step":
                        status.update(f"{sc.name}: step {r.get('i')} {r.get('status')}")
                    elif t == "setup":
                        status.update(f"{sc.name}: set-up {r.get('k')}")
                    elif t == "hello":
                        status.update(f"{sc.name}: booted")

                res = run_scenario(
                    sc, kernel, accel, rules_name, progress=lambda m: status.update(f"{sc.name}: {m}"), on_record=rec
                )
            results.append(res)
            if not as_json:
                _print_result(res, detail)
    except LabError as e:
        _fail(e)
    except KeyboardInterrupt:
        err.print("interrupted: the guest was stopped", markup=False)
        raise SystemExit(130) from None
    rows = [r.row for r in results]
    if as_json:
        doc = {
            "schema": CHECK_SCHEMA,
            "kernel": {"name": kernel.name, "release": kernel.release},
            "rules": rules_label(rules_name or kernel.preset),
            "accel": accel.name,
            "results": [r.to_json() for r in results],
        }
        click.echo(json.dumps(doc, indent=1))
    else:
        _print_table(rows, kernel, accel.name)
    raise SystemExit(_exit_code(rows))


def _print_table(rows: list[Row], kernel: kernels.Kernel, accel: str) -> None:
    t = Table(title=f"conformance on {kernel.release} (model {rows[0].rules if rows else ''}, QEMU {accel})")
    for c in ("scenario", "model", "kernel", "result"):
        t.add_column(c, overflow="fold")
    for r in rows:
        res = (
            r.result + (" (confirmed)" if r.confirmed else "") + (f" (explained: {r.explained})" if r.explained else "")
        )
        t.add_row(r.scenario, r.model, r.observed, res)
    console.print(t)
    counts = {k: sum(1 for r in rows if r.result == k) for k in ("agree", "disagree", "n/a", "error")}
    console.print(", ".join(f"{v} {k}" for k, v in counts.items() if v), markup=False)


@lab.command("run")
@click.argument("scenarios", nargs=-1, required=True)
@kernel_opt
@modules_opt
@config_opt
@click.option("--rules", "rules_name", help="Compare with this preset instead of the kernel's own (a what-if).")
@click.option("--json", "as_json", is_flag=True, help="Write the results as JSON.")
def run_cmd(
    scenarios: tuple[str, ...],
    kernel_name: str,
    modules: str | None,
    config_path: str | None,
    rules_name: str | None,
    as_json: bool,
) -> None:
    """Boot KERNEL, run each SCENARIO (a .lab file or a built-in name), compare with the model."""
    try:
        paths = [find(s) for s in scenarios]
    except LabError as e:
        _fail(e)
    _run_many(paths, kernel_name, modules, config_path, rules_name, as_json, detail=True)


@lab.command("check")
@click.option(
    "--kernel",
    "kernel_name",
    help="debian-6.12, debian-6.1, lab (after `lab build`), or a path to your bzImage.",
)
@click.option(
    "--source",
    type=click.Path(file_okay=False),
    help="Your kernel tree: build the lab kernel from it first (cached by source and config), then check it.",
)
@modules_opt
@config_opt
@click.option("--rules", "rules_name", help="Compare with this preset instead of the kernel's own (a what-if).")
@click.option("--only", help="Run only the built-in scenarios whose name contains this.")
@click.option("--json", "as_json", is_flag=True, help="Write the results as JSON.")
def check_cmd(
    kernel_name: str | None,
    source: str | None,
    modules: str | None,
    config_path: str | None,
    rules_name: str | None,
    only: str | None,
    as_json: bool,
) -> None:
    """The whole conformance suite on KERNEL (or on a lab kernel built from --source): one table."""
    if (kernel_name is None) == (source is None):
        _fail(LabError("give --kernel K, or --source DIR (your tree: built as a lab kernel, then checked)"))
    paths = [p for p in builtin() if only is None or only in p.stem]
    if not paths:
        _fail(LabError(f"no built-in scenario matches {only!r}"))
    built = None
    if source is not None:
        from zdfuzz.lab import build as lab_build

        prog, cb = _download_progress()
        try:
            with prog, err.status("building the lab kernel") as status:
                k = lab_build.build(source, None, None, lambda m: status.update(m), cb, False)
        except LabError as e:
            _fail(e)
        _status(f"lab kernel {k.release} from {source} (cached as {k.image.parent})")
        built = k
    _run_many(paths, kernel_name or "lab", modules, config_path, rules_name, as_json, detail=False, built=built)


@lab.command("fuzz")
@kernel_opt
@modules_opt
@config_opt
@click.option("--time", "seconds", default=600.0, show_default=True, help="Seconds to fuzz.")
@click.option("--types", default="generic,fsdax", show_default=True, help="Device types to drive.")
@click.option("--rules", "rules_name", help="Model rules (default: the kernel's).")
@click.option(
    "--corpus",
    type=click.Path(file_okay=False, exists=True),
    help="A campaign corpus to take programs from (findings and native entries) before the engine's.",
)
@click.option("--out", default="zdfuzz-lab-fuzz", show_default=True, help="Findings and state (resumable).")
@click.option("--batch", default=6, show_default=True, type=click.IntRange(1, 32), help="Scenarios per boot.")
@click.option("--seed", default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Write the summary as JSON.")
def fuzz_cmd(
    kernel_name: str,
    modules: str | None,
    config_path: str | None,
    seconds: float,
    types: str,
    rules_name: str | None,
    corpus: str | None,
    out: str,
    batch: int,
    seed: int,
    as_json: bool,
) -> None:
    """Fuzz KERNEL with the model's programs: drivable prefixes of native-engine findings and corpus, judged by
    the kernel's reports (KASAN, BUG, Oops, WARN); kernel findings are minimized on the kernel."""
    from zdfuzz.lab.fuzz import LabFuzzer

    tlist = [t.strip() for t in types.split(",") if t.strip()]
    bad = [t for t in tlist if t not in ("generic", "fsdax")]
    if bad:
        _fail(LabError(f"--types {','.join(bad)}: the lab drives generic (device-dax) and fsdax"))
    try:
        kernel = resolve_kernel(kernel_name, modules, config_path)
        accel = guest.probe_accel(kernel)
        rules = rules_name or kernel.preset
        with err.status("lab fuzz") as status:
            fz = LabFuzzer(kernel, accel, Path(out), rules, batch, lambda m: status.update(m))
            stats = fz.run(seconds, tlist, seed, Path(corpus) if corpus else None)
    except LabError as e:
        _fail(e)
    except KeyboardInterrupt:
        err.print("interrupted: the guest was stopped; rerun with the same --out to resume", markup=False)
        raise SystemExit(130) from None
    wall = time.monotonic() - stats.started
    doc = {
        "schema": "zdfuzz.lab.fuzz/1",
        "kernel": kernel.release,
        "rules": rules_label(rules),
        "seconds": round(wall, 1),
        "programs": stats.programs,
        "translated": stats.translated,
        "undrivable": stats.undrivable,
        "scenarios": stats.scenarios,
        "steps": stats.steps,
        "boots": stats.boots,
        "clean": stats.clean,
        "disagreements": stats.disagreements,
        "findings": [
            {
                "signature": f.signature,
                "path": str(f.path),
                "steps_before": f.steps_before,
                "steps_after": f.steps_after,
            }
            for f in fz.found
        ],
        "minimize_boots": stats.minimize_boots,
    }
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    else:
        console.print(
            f"{stats.scenarios} scenarios ({stats.steps} steps) from {stats.programs} model programs "
            f"({stats.translated} drivable) in {stats.boots} boots, {wall:.0f} s on {kernel.release}: "
            f"{stats.clean} clean, {stats.disagreements} disagreeing with the model, "
            f"{len(fz.found)} new kernel finding(s)",
            markup=False,
        )
        for f in fz.found:
            console.print(f"  {f.signature}: {f.path} ({f.steps_before} -> {f.steps_after} lines)", markup=False)
    raise SystemExit(1 if fz.found else 0)


@lab.command("shell")
@kernel_opt
@modules_opt
@config_opt
@click.option("--setup", "setup_name", default="devdax", show_default=True, type=click.Choice(sorted(SETUPS)))
def shell_cmd(kernel_name: str, modules: str | None, config_path: str | None, setup_name: str) -> None:
    """An interactive guest with the devices set up (exit the shell or press Ctrl-A X to leave)."""
    if not sys.stdin.isatty():
        _fail(LabError("lab shell needs a terminal"))
    try:
        kernel = resolve_kernel(kernel_name, modules, config_path)
        accel = guest.probe_accel(kernel)
        setup = SETUPS[setup_name]
        image = guest.build_image(kernel, setup, [], _status)
    except LabError as e:
        _fail(e)
    spec = {
        "name": "shell",
        "shell": True,
        "modules": [{"name": m} for m in image.modules],
        "setup": [{"argv": a} for a, _ in setup.commands],
    }
    _status(f"booting {kernel.release} with {accel.name}; set-up {setup_name}: {setup.doc}")
    _status("the shell is busybox sh; ndctl is in /usr/bin. Leave with `exit` or Ctrl-A X.")
    run = guest.run_guest(kernel, image, spec, accel, interactive=True, cmdline_extra=setup.cmdline, setup=setup)
    raise SystemExit(0 if run.status == "done" else 2)
