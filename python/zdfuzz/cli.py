"""The ``zdfuzz`` command line.

    zdfuzz replay FILE.zdf [--rules NAME|FILE.toml]   run a program: exit 0 clean, 1 violation, 2 bad input
    zdfuzz rules list                                  the presets
    zdfuzz rules show NAME|FILE.toml                   every switch of a preset, documented
    zdfuzz kinds                                       every action a program can use
    zdfuzz explore --rules NAME --depth D [shape...]   every program up to D actions: a bound or a counterexample
    zdfuzz demo                                        a pgmap->ref percpu_ref walk-through
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

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def load_rules(name: str) -> zdfuzz.Rules:
    """A preset name/alias, or a path to a TOML rules file."""
    try:
        return zdfuzz.Rules.preset(name)
    except ValueError:
        pass
    if name.endswith(".toml") or Path(name).is_file():
        return zdfuzz.Rules.load(name)
    raise click.BadParameter(
        f"{name!r} is neither a preset ({', '.join(zdfuzz.Rules.presets())}) nor a .toml file",
        param_hint="--rules",
    )


@click.group()
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
    try:
        program = zdfuzz.Program.parse(text)
    except zdfuzz.ProgramError as e:
        err_console.print(f"{file}:{e.line}:{e.col}: {e.message}", style="red", markup=False, highlight=False)
        raise SystemExit(2) from e
    try:
        rules = load_rules(rules_name or program.rules)
        machine = zdfuzz.Machine.for_program(program, rules=rules)
        verdict = machine.run(program)
    except click.BadParameter:
        raise
    except zdfuzz.ProgramError as e:
        where = f"{file}:{e.line}" if e.line else file
        err_console.print(f"{where}: {e.message}", style="red", markup=False, highlight=False)
        raise SystemExit(2) from e
    except ValueError as e:
        err_console.print(f"{file}: {e}", style="red", markup=False, highlight=False)
        raise SystemExit(2) from e
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
    try:
        r = load_rules(name)
    except ValueError as e:
        err_console.print(f"[red]{e}[/red]")
        raise SystemExit(2) from e
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


def _types(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [t.strip() for t in value.split(",") if t.strip()]


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
@click.option("--depth", required=True, type=click.IntRange(0), help="Longest program explored (actions).")
@click.option("--threads", default=0, show_default=True, help="Worker threads (0: every core).")
@click.option("--no-symmetry", is_flag=True, help="Explore exact states (no CPU/page symmetry reduction).")
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
    depth: int,
    threads: int,
    no_symmetry: bool,
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
        result = zdfuzz.explore(
            rules,
            types=_types(types),
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
            depth=depth,
            threads=threads,
            symmetry=not no_symmetry,
            max_memory=max_memory,
            bitstate=bitstate,
            max_seconds=max_seconds,
            progress=progress,
        )
    except ValueError as e:
        err_console.print(f"explore: {e}", style="red", markup=False, highlight=False)
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


if __name__ == "__main__":
    main()
