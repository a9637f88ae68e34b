"""The ``zdfuzz`` command line.

zdfuzz fuzz [--rules p20] [--types ...] [--engine native|hypothesis|atheris] [--time S] [--jobs N]
            [--corpus DIR] [--seed S]                  a campaign: minimized reproducers in DIR/findings
zdfuzz replay FILE.zdf [--rules NAME|FILE.toml]   run a program: exit 0 clean, 1 violation, 2 bad input
zdfuzz minimize FILE.zdf [-o OUT]                  shrink a reproducer, keeping its signature
zdfuzz explain FILE.zdf                            each step, what it models, what it changed
zdfuzz corpus list DIR | merge DEST SRC...         the findings of campaigns
zdfuzz rules list                                  the presets
zdfuzz rules show NAME|FILE.toml                   every switch of a preset, documented
zdfuzz kinds                                       every action a program can use
zdfuzz explore --rules NAME --depth D [shape...]   every program up to D actions: a bound or a counterexample
zdfuzz demo                                        a pgmap->ref percpu_ref walk-through
zdfuzz lab check --kernel debian-6.12              the model's verdicts checked on a real kernel (QEMU)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

import zdfuzz
from zdfuzz.campaign import DEFAULT_CAMPAIGN_RULES

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def load_rules(name: str) -> zdfuzz.Rules:
    """A preset name/alias, or a path to a TOML rules file (the core's one
    resolution); a bad one raises ``zdfuzz.RulesError``, which every command
    turns into a one-line message and exit status 2."""
    return zdfuzz.Rules.resolve(name)


def error_line(e: zdfuzz.ZdfuzzError) -> str:
    """One line for a user: where (file:line:col when known) and what."""
    if e.file and e.line:
        return f"{e.file}:{e.line}:{e.col}: {e.message}"
    if e.file:
        return f"{e.file}: {e.message}"
    return str(e)


class Main(click.Group):
    """The command group: a ``ZdfuzzError`` from any command (bad rules, a
    malformed program, a shape out of range, ...) is bad input — one line on
    stderr and exit status 2, never a traceback, and never status 1, which
    means "violation found"."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except zdfuzz.ZdfuzzError as e:
            err_console.print(error_line(e), style="red", markup=False, highlight=False)
            raise SystemExit(2) from e


@click.group(cls=Main)
@click.version_option(zdfuzz.__version__, prog_name="zdfuzz")
def main() -> None:
    """Fuzz and model-check Linux ZONE_DEVICE reference counting."""


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--rules", "rules_name", help="Preset name or TOML file; default: the program's `rules` line.")
@click.option("--quiet", is_flag=True, help="Print only the verdict line.")
def replay(file: str, rules_name: str | None, quiet: bool) -> None:
    """Run a .zdf program: exit 0 when clean, 1 on a violation, 2 on bad input."""
    try:
        text = Path(file).read_text()
    except (OSError, UnicodeDecodeError) as e:
        err_console.print(f"{file}: cannot read: {e}", style="red", markup=False)
        raise SystemExit(2) from e
    program = zdfuzz.Program.parse(text, filename=file)
    rules = load_rules(rules_name or program.rules)
    try:
        verdict = zdfuzz.Machine.for_program(program, rules=rules).run(program)
    except zdfuzz.ProgramError as e:
        raise _bad_replay(file, e) from e
    if verdict.ok:
        console.print(f"clean under {rules.name}: {verdict.steps} steps (program + drain), no violation")
        raise SystemExit(0)
    v = verdict.violation
    assert v is not None
    console.print(f"[bold red]{v.invariant}[/bold red] ({v.category}) at step {v.step}: ", end="")
    console.print(v.action, markup=False, highlight=False)
    console.print(f"  {v.message}", markup=False, highlight=False)
    if v.doc:
        console.print(f"  invariant: {v.doc}", markup=False, highlight=False)
    if v.expected or v.actual:
        console.print(f"  expected {v.expected}, actual {v.actual}", markup=False, highlight=False)
    if not quiet:
        console.print("trace:")
        for line in v.trace:
            console.print("  " + line, markup=False, highlight=False, soft_wrap=True)
    raise SystemExit(1)


@main.group()
def rules() -> None:
    """Inspect the rules presets (kernel eras)."""


@rules.command("list")
def rules_list() -> None:
    """The built-in presets."""
    table = Table(title="rules presets")
    for col in ("name", "kernel", "aliases", "what changes"):
        table.add_column(col)
    aliases = dict(zdfuzz.Rules.aliases())
    for name in zdfuzz.Rules.presets():
        r = zdfuzz.Rules.preset(name)
        table.add_row(name, r.kernel, ", ".join(aliases.get(name, [])), r.description)
    console.print(table)
    reg = Table(title="regression presets: the code before one historical fix")
    for col in ("name", "fixed in", "fix"):
        reg.add_column(col)
    for name, fixed_in, fix in zdfuzz.Rules.regressions():
        reg.add_row(name, fixed_in, fix)
    console.print(reg)


@rules.command("show")
@click.argument("name")
@click.option("--toml", "as_toml", is_flag=True, help="Print the preset as an editable TOML file.")
def rules_show(name: str, as_toml: bool) -> None:
    """Every switch of a preset (or TOML rules file), with its meaning."""
    r = load_rules(name)
    if as_toml:
        click.echo(r.to_toml())
        return
    console.print(f"[bold]{r.name}[/bold] ({r.kernel}){' based on ' + r.base if r.base else ''}")
    console.print(r.description)
    table = Table()
    for col in ("switch", "value", "meaning"):
        table.add_column(col)
    for key, value, doc in r.switches():
        table.add_row(key, value, doc)
    console.print(table)


@main.command()
def kinds() -> None:
    """Every action kind a program can use."""
    table = Table(title="actions (.zdf)")
    for col in ("action", "operands", "models"):
        table.add_column(col)
    for name, args, doc in zdfuzz.action_kinds():
        table.add_row(name, " ".join(f"{a}=" for a in args), doc)
    console.print(table)


@main.command()
@click.option("--rules", "rules_name", required=True, help="Preset name or TOML file.")
@click.option("--types", help="Device types, comma-separated (default: all four).")
@click.option("--pgmaps", default=1, show_default=True, help="pgmaps per type.")
@click.option("--pages", default=4, show_default=True, help="Pages per pgmap.")
@click.option("--cpus", default=2, show_default=True)
@click.option("--procs", default=2, show_default=True)
@click.option("--addrs", default=4, show_default=True, help="Address slots per process.")
@click.option("--files", default=2, show_default=True, help="Files per FS-DAX filesystem.")
@click.option("--file-pages", default=2, show_default=True, help="Pages per file.")
@click.option("--tasks", default=4, show_default=True, help="Kernel task slots.")
@click.option("--ram", default=0, show_default=True, help="Pages of system RAM (migration needs some).")
@click.option("--order", default=0, show_default=True, help="Huge page order (0: no THPs).")
@click.option("--faults", is_flag=True, help="Failure injection: kernel calls may fail (fail_next), error paths run.")
@click.option("--depth", required=True, type=click.IntRange(0), help="Longest program explored (actions).")
@click.option("--threads", default=0, show_default=True, help="Worker threads (0: every core).")
@click.option("--no-symmetry", is_flag=True, help="Explore exact states (no CPU/page symmetry reduction).")
@click.option(
    "--por", is_flag=True, help="Partial-order reduction (sleep sets): same states and verdict, fewer transitions."
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    help="Shard the search across Ray workers (ADDRESS of a cluster, or none: a local one). Needs zdfuzz[ray].",
)
@click.option(
    "--workers",
    "ray_workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Ray workers (with --ray).",
)
@click.option("--max-memory", default="4G", show_default=True, help="Stop with a partial result above this.")
@click.option("--bitstate", help="Bit-state hashing with a bit array of this size (e.g. 512M): not a proof.")
@click.option("--max-seconds", type=float, help="Stop with a partial result after this long.")
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Write the counterexample (.zdf) here.")
@click.option("--quiet", is_flag=True, help="No progress and no per-depth table.")
def explore(
    rules_name: str,
    types: str | None,
    pgmaps: int,
    pages: int,
    cpus: int,
    procs: int,
    addrs: int,
    files: int,
    file_pages: int,
    tasks: int,
    ram: int,
    order: int,
    faults: bool,
    depth: int,
    threads: int,
    no_symmetry: bool,
    por: bool,
    ray_address: str | None,
    ray_workers: int,
    max_memory: str,
    bitstate: str | None,
    max_seconds: float | None,
    out: str | None,
    quiet: bool,
) -> None:
    """Explore every program of up to DEPTH actions, breadth-first.

    Prints "no violation reachable within depth D" with the number of
    distinct states and transitions, or the shortest counterexample as a
    .zdf program. Exit 0 clean, 1 counterexample, 2 bad input, 3 stopped by
    --max-memory/--max-seconds, 130 interrupted (Ctrl-C prints the partial
    result).
    """
    rules = load_rules(rules_name)
    live: Live | None = None
    last_depth = [-1]

    def show(p: dict[str, Any]) -> None:
        secs = max(p["seconds"], 1e-9)
        frontier = p["frontier"]
        done = 100.0 * p["expanded"] / frontier if frontier else 0.0
        line = (
            f"depth {p['depth']}  frontier {frontier:,} ({done:.0f}% expanded)  "
            f"{p['states']:,} states  {p['states'] / secs:,.0f} states/s  "
            f"{p['transitions']:,} transitions  {secs:.1f} s"
        )
        if live is not None:
            live.update(Text(line))
        elif p["depth"] != last_depth[0]:
            last_depth[0] = p["depth"]
            err_console.print(line, markup=False, highlight=False)

    progress = None if quiet else show
    try:
        if progress is not None and err_console.is_terminal:
            live = Live(Text("starting"), console=err_console, transient=True, refresh_per_second=4)
            live.start()
        shape = zdfuzz.Shape(
            types=list(_types(types)) if types else None,
            pgmaps=pgmaps,
            pages=pages,
            cpus=cpus,
            procs=procs,
            addrs=addrs,
            files=files,
            file_pages=file_pages,
            tasks=tasks,
            ram=ram,
            order=order,
            faults=int(faults),
        )
        if ray_address is not None:
            _ray_or_exit()
            if por:
                err_console.print("explore: --por is not available with --ray (no sleep sets there)", style="red")
                raise SystemExit(2)
            from zdfuzz import ray_backend

            result: Any = ray_backend.explore_cli(
                rules, shape, depth, symmetry=not no_symmetry, por=por, address=ray_address, workers=ray_workers
            )
        else:
            result = zdfuzz.explore(
                rules,
                shape=shape,
                depth=depth,
                threads=threads,
                symmetry=not no_symmetry,
                max_memory=max_memory,
                bitstate=bitstate,
                max_seconds=max_seconds,
                progress=progress,
                por=por,
            )
    except zdfuzz.ZdfuzzError as e:
        err_console.print(f"explore: {error_line(e)}", style="red", markup=False, highlight=False)
        raise SystemExit(2) from e
    finally:
        if live is not None:
            live.stop()
    if not quiet:
        table = Table(title=f"{rules.name}: states by depth ({result.reduction} reduction, {result.threads} threads)")
        for col in ("depth", "new states", "states", "transitions"):
            table.add_column(col, justify="right")
        for d, new, states, transitions in result.levels:
            table.add_row(str(d), f"{new:,}", f"{states:,}", f"{transitions:,}")
        console.print(table)
    console.print(result.summary(), markup=False, highlight=False, soft_wrap=True)
    program = result.counterexample
    if program is not None:
        v = result.violation
        assert v is not None
        console.print(f"[bold red]{v.invariant}[/bold red] ({v.category}) at step {v.step}: ", end="")
        console.print(v.action, markup=False, highlight=False)
        console.print(f"  {v.message}", markup=False, highlight=False, soft_wrap=True)
        text = (
            f"# zdfuzz explore: shortest counterexample, {len(program)} actions"
            f" ({v.invariant}, {v.category}); replay with `zdfuzz replay FILE`\n" + program.to_text()
        )
        if out:
            Path(out).write_text(text)
            console.print(f"reproducer written to {out}", markup=False)
        click.echo(text, nl=not text.endswith("\n"))
        raise SystemExit(1)
    if result.stop == "interrupted":
        raise SystemExit(130)
    if not result.complete:
        raise SystemExit(3)


@main.command()
@click.option("--cpus", default=4, show_default=True, help="CPU slots of the percpu_ref.")
def demo(cpus: int) -> None:
    """Walk a pgmap->ref percpu_ref through kill, grace period and release."""
    if cpus < 2:
        raise click.BadParameter("the demo needs at least 2 CPUs", param_hint="--cpus")
    ref = zdfuzz.PercpuRef(cpus=cpus)
    table = Table(title="pgmap->ref: a percpu_ref through memunmap_pages")
    for col in ("step", "kernel call", "count", "mode", "dying", "released"):
        table.add_column(col)

    def row(step: str, call: str) -> None:
        table.add_row(step, call, str(ref.count()), ref.mode, str(ref.is_dying()), str(ref.released))

    row("memremap_pages", "percpu_ref_init(ref, release, 0)")
    ref.get(0)
    row("GUP on cpu 0", "percpu_ref_get (cpu 0 counter)")
    ref.get(1)
    row("GUP on cpu 1", "percpu_ref_get (cpu 1 counter)")
    ref.put(0)
    row("cpu 0 done", "percpu_ref_put (cpu 0 counter)")
    ref.kill()
    row("memunmap_pages", "percpu_ref_kill: DEAD, switch to atomic, put initial ref")
    ok = ref.tryget_live(0)
    row("new GUP on cpu 0", f"percpu_ref_tryget_live -> {ok}")
    ref.grace_period()
    row("RCU grace period", "fold per-CPU counts into the atomic counter")
    released = ref.put(1)
    row("cpu 1 done", f"percpu_ref_put -> release ran: {released}")
    console.print(table)
    events = ref.events()
    if events:
        console.print(f"[red]misuse events: {[e.name for e in events]}[/red]")
        raise SystemExit(1)
    console.print(
        "release ran exactly once, after the last reference was dropped: "
        "memunmap_pages' wait_for_completion() returns now."
    )


def read_program(file: str) -> zdfuzz.Program:
    """A .zdf file, or exit 2 naming the file, line and problem."""
    try:
        text = Path(file).read_text()
    except (OSError, UnicodeDecodeError) as e:
        err_console.print(f"{file}: cannot read: {e}", style="red", markup=False, highlight=False)
        raise SystemExit(2) from e
    return zdfuzz.Program.parse(text, filename=file)


def _bad_replay(file: str, e: zdfuzz.ZdfuzzError) -> SystemExit:
    """A program that parses but does not replay: its file, the action's line."""
    where = f"{file}:{e.line}" if e.line else file
    err_console.print(f"{where}: {e.message}", style="red", markup=False, highlight=False)
    return SystemExit(2)


TYPES = tuple(zdfuzz.DEVICE_TYPES)


def _ray_or_exit(engine: str = "native") -> None:
    """--ray: Ray must be installed (the zdfuzz[ray] extra); else exit 2."""
    from zdfuzz import ray_backend

    try:
        ray_backend.require_ray()
    except ray_backend.RayMissing as e:
        err_console.print(f"--ray: {e}", style="red", markup=False, highlight=False)
        raise SystemExit(2) from e
    if engine != "native":
        err_console.print(f"--ray: runs the native engine only (not {engine})", style="red")
        raise SystemExit(2)


def _types(value: str) -> tuple[str, ...]:
    types = tuple(t.strip() for t in value.split(",") if t.strip())
    bad = [t for t in types if t not in TYPES]
    if bad or not types:
        raise click.BadParameter(f"unknown device type(s) {bad}; types: {','.join(TYPES)}", param_hint="--types")
    return tuple(dict.fromkeys(types))


@main.command()
@click.option(
    "--rules", "rules_name", default=DEFAULT_CAMPAIGN_RULES, show_default=True, help="Preset name or TOML rules file."
)
@click.option("--types", "types_", default=",".join(TYPES), show_default=True, help="Device types, comma-separated.")
@click.option("--engine", type=click.Choice(["native", "hypothesis", "atheris"]), default="native", show_default=True)
@click.option(
    "--time", "seconds", type=click.FloatRange(min=0), default=30.0, show_default=True, help="Seconds to run."
)
@click.option(
    "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Processes (atheris: libFuzzer -fork=N)."
)
@click.option(
    "--corpus",
    "corpus_dir",
    type=click.Path(file_okay=False),
    default="zdfuzz-corpus",
    show_default=True,
    help="Campaign directory: findings, engine queues; a rerun resumes from it.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed (default: random, printed). Native/hypothesis: same seed, same programs.",
)
@click.option(
    "--execs",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many executions (with --seed: an exactly repeatable run).",
)
@click.option(
    "--max-actions",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    help="Most actions per program (native).",
)
@click.option(
    "--faults",
    is_flag=True,
    help="Failure injection (native): programs may make kernel calls fail (fail_next), so error paths run.",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    help="Run the workers on Ray (ADDRESS of a cluster, or none: a local one). Native engine. Needs zdfuzz[ray].",
)
@click.option("--workers", "ray_workers", type=click.IntRange(min=1), default=2, show_default=True, help="Ray workers.")
def fuzz(
    rules_name: str,
    types_: str,
    engine: str,
    seconds: float,
    jobs: int,
    corpus_dir: str,
    seed: int | None,
    execs: int | None,
    max_actions: int,
    faults: bool,
    ray_address: str | None,
    ray_workers: int,
) -> None:
    """Run a fuzz campaign; write each new finding as a minimized .zdf
    reproducer plus JSON metadata under CORPUS/findings."""
    from zdfuzz import campaign
    from zdfuzz.corpus import CorpusError
    from zdfuzz.drivers.sancov import SetupError

    types = _types(types_)
    load_rules(rules_name)  # a bad --rules is bad input (exit 2) before the campaign starts
    if faults and engine != "native":
        err_console.print(f"--faults: only the native engine injects failures (not {engine})", style="red")
        raise SystemExit(2)
    if ray_address is not None:
        _ray_or_exit(engine)
    cfg = campaign.Config(
        rules=rules_name,
        types=types,
        engine=engine,
        seconds=seconds,
        jobs=ray_workers if ray_address is not None else jobs,
        ray=ray_address,
        corpus=Path(corpus_dir),
        seed=seed,
        execs=execs,
        max_actions=max_actions,
        faults=faults,
    )
    try:
        campaign.run(cfg, console)
    except SetupError as e:
        err_console.print(f"--engine {engine}: {e}", style="red", markup=False, highlight=False)
        raise SystemExit(2) from e
    except CorpusError as e:
        err_console.print(str(e), style="red", markup=False, highlight=False)
        raise SystemExit(2) from e


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--rules", "rules_name", help="Preset name or TOML file; default: the program's `rules` line.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the result here (default: print it).")
def minimize(file: str, rules_name: str | None, output: str | None) -> None:
    """Shrink a reproducer, keeping its signature (invariant, action kind,
    device type, rules); the result is 1-minimal."""
    import time

    from zdfuzz.corpus import atomic_write

    program = read_program(file)
    rules = load_rules(rules_name or program.rules)
    t0 = time.monotonic()
    try:
        # replay first: an action that is not enabled is reported with its line
        zdfuzz.Machine.for_program(program, rules=rules).run(program, trace=False)
        r = zdfuzz.minimize(program, rules=rules)
    except (zdfuzz.ProgramError, zdfuzz.MinimizeError) as e:
        raise _bad_replay(file, e) from e
    dt = time.monotonic() - t0
    sig = " ".join(r.signature)
    text = f"# {sig}: minimized from {r.original_len} to {len(r.program)} actions\n" + r.program.to_text()
    if output:
        atomic_write(Path(output), text)
        err_console.print(
            f"{sig}: {r.original_len} -> {len(r.program)} actions in {dt:.2f}s ({r.runs} runs) -> {output}",
            markup=False,
            highlight=False,
        )
    else:
        click.echo(text, nl=False)
        err_console.print(
            f"{sig}: {r.original_len} -> {len(r.program)} actions in {dt:.2f}s ({r.runs} runs)",
            markup=False,
            highlight=False,
        )


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--rules", "rules_name", help="Preset name or TOML file; default: the program's `rules` line.")
def explain(file: str, rules_name: str | None) -> None:
    """Each step of a program: the kernel function it models, the CPU, the
    refcount/mapcount/pgmap-reference changes; then the violated invariant.
    Exit 0 clean, 1 violation, 2 bad input."""
    from zdfuzz.report import explain as explain_program

    program = read_program(file)
    rules = load_rules(rules_name or program.rules)
    try:
        e = explain_program(program, rules)
    except zdfuzz.ProgramError as err:
        raise _bad_replay(file, err) from err
    for line in e.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    raise SystemExit(0 if e.violation is None else 1)


@main.group()
def corpus() -> None:
    """The findings of campaigns (a corpus directory)."""


@corpus.command("list")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
def corpus_list(directory: str) -> None:
    """Every finding in DIRECTORY: signature, engine, time to find, size."""
    from zdfuzz.corpus import Corpus, CorpusError

    try:
        found = Corpus(directory).findings()
    except CorpusError as e:
        err_console.print(str(e), style="red", markup=False)
        raise SystemExit(2) from e
    table = Table(title=f"{len(found)} finding(s) in {directory}")
    for col in ("invariant", "action", "type", "rules", "engine", "found after", "actions", "file"):
        table.add_column(col)
    for f in found:
        s = f.signature
        t = f.meta.get("time_to_find")
        table.add_row(
            s.invariant,
            s.kind,
            s.device,
            s.rules,
            str(f.meta.get("engine", "?")),
            f"{t:.1f}s" if isinstance(t, int | float) else "?",
            str(f.meta.get("actions", "?")) + ("" if f.minimized else " (not minimized)"),
            f.zdf.name,
        )
    console.print(table)


@corpus.command("merge")
@click.argument("dest", type=click.Path(file_okay=False))
@click.argument("sources", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
def corpus_merge(dest: str, sources: tuple[str, ...]) -> None:
    """Copy into DEST the findings of SOURCES it lacks (or has longer)."""
    from zdfuzz.corpus import Corpus, CorpusError, merge

    try:
        report = merge(Corpus(dest), [Corpus(s) for s in sources])
    except CorpusError as e:
        err_console.print(str(e), style="red", markup=False)
        raise SystemExit(2) from e
    for sig, path, what in report:
        console.print(f"{what:>8}  {sig}  {path}", markup=False, highlight=False)
    n = sum(1 for _s, _p, w in report if w != "kept")
    console.print(f"{n} finding(s) added or replaced in {dest}", highlight=False)


@main.group()
def regressions() -> None:
    """The historical-bug regression corpus (corpus/regressions)."""


@regressions.command("list")
def regressions_list() -> None:
    """Every catalogued bug the model replays, with its presets."""
    from zdfuzz import regressions as reg

    table = Table(title="regressions")
    for col in ("name", "buggy preset", "types", "invariant", "fixed in", "fix", "reproducer"):
        table.add_column(col)
    for b in reg.BUGS:
        path = reg.reproducer_path(b)
        table.add_row(
            b.name,
            b.preset,
            ",".join(b.types),
            b.invariant,
            b.fixed_in,
            b.fix,
            str(path.relative_to(reg.ROOT.parent.parent)) if path.is_file() else "-",
        )
    console.print(table)


@regressions.command("find")
@click.option("--only", "only", multiple=True, help="Only these regressions (by name).")
@click.option("--time", "seconds", default=60.0, show_default=True, help="Seconds per campaign.")
@click.option("--seed", default=1, show_default=True)
@click.option("--engine", default="native", show_default=True, type=click.Choice(["native", "hypothesis", "atheris"]))
@click.option("--root", type=click.Path(file_okay=False), help="Regression corpus directory (default: the checkout's).")
def regressions_find(only: tuple[str, ...], seconds: float, seed: int, engine: str, root: str | None) -> None:
    """Find each bug with a campaign under its buggy preset, file the
    minimized reproducer, and check a campaign under the fix stays clean."""
    from zdfuzz import regressions as reg

    bugs = [reg.bug(n) for n in only] if only else list(reg.BUGS)
    missing = []
    for b in bugs:
        if (
            reg.find(
                b, seconds=seconds, seed=seed, engine=engine, root=Path(root) if root else reg.ROOT, console=console
            )
            is None
        ):
            missing.append(b.name)
    if missing:
        err_console.print(f"not found: {', '.join(missing)}", style="red", markup=False)
        raise SystemExit(1)


@regressions.command("check")
@click.option("--root", type=click.Path(file_okay=False, exists=True), help="Regression corpus directory.")
def regressions_check(root: str | None) -> None:
    """Replay every reproducer: it must break its invariant under its preset
    and be clean under the fixing preset. Exit 1 otherwise."""
    from zdfuzz import regressions as reg

    problems = reg.check(Path(root) if root else reg.ROOT)
    for p in problems:
        err_console.print(p, style="red", markup=False)
    n = len(reg.entries(Path(root) if root else reg.ROOT))
    if problems:
        raise SystemExit(1)
    console.print(f"{n} reproducer(s): each breaks its invariant under its preset and is clean under its fix")


@main.command()
@click.option("--minutes", default=10.0, show_default=True, help="Minutes per (preset, type, engine) campaign.")
@click.option("--presets", default="e4,e5", show_default=True, help="Presets, comma-separated.")
@click.option("--types", "types_", default=",".join(TYPES), show_default=True, help="Device types, comma-separated.")
@click.option("--engines", default="native,hypothesis,atheris", show_default=True, help="Engines, comma-separated.")
@click.option("--corpus", "corpus_dir", default="zdfuzz-soak", show_default=True, type=click.Path(file_okay=False))
@click.option("--seed", default=1, show_default=True)
@click.option("--jobs", default=1, show_default=True, help="Parallel jobs per campaign.")
def soak(minutes: float, presets: str, types_: str, engines: str, corpus_dir: str, seed: int, jobs: int) -> None:
    """The clean-era soak: a campaign per preset, device type and engine;
    resumes after a kill; ends with every signature found."""
    from zdfuzz import soak as soak_mod

    for p in presets.split(","):
        load_rules(p)
    bad = [e for e in engines.split(",") if e not in soak_mod.ENGINES]
    if bad:
        raise click.BadParameter(f"unknown engine(s) {bad}", param_hint="--engines")
    plan = soak_mod.Plan(
        minutes=minutes,
        corpus=Path(corpus_dir),
        presets=tuple(presets.split(",")),
        types=_types(types_),
        engines=tuple(engines.split(",")),
        seed=seed,
        jobs=jobs,
    )
    done = soak_mod.run(plan, console)
    console.print(soak_mod.table(done))
    console.print(f"summary: {plan.summary_path}", highlight=False)


if __name__ == "__main__":
    main()


def _register_lab() -> None:
    from zdfuzz.lab.cli import lab

    main.add_command(lab)


_register_lab()
