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
from rich.live import Live
from rich.table import Table
from rich.text import Text

import zdfuzz
from zdfuzz import inputs
from zdfuzz.campaign import DEFAULT_CAMPAIGN_RULES
from zdfuzz.corpus import CorpusError
from zdfuzz.term import SafeConsole, styled

# user text (preset names, paths, corpus metadata) is printed as text: no
# markup, control characters escaped (zdfuzz.term); rich leaves out colour
# when NO_COLOR is set (https://no-color.org) and when the output is not a
# terminal, and `zdfuzz --no-color` turns it off too
console = SafeConsole(soft_wrap=True)
err_console = SafeConsole(stderr=True, soft_wrap=True)


#: Console options of this invocation (`--no-color`: no styles at all)
_styles: dict[str, Any] = {}


def quiet_console() -> SafeConsole:
    """Where a --json command's human output goes: stderr, so that stdout
    is one JSON document."""
    return SafeConsole(stderr=True, soft_wrap=True, **_styles)


def emit_json(d: dict[str, Any]) -> None:
    from zdfuzz.jsonout import dumps

    click.echo(dumps(d))


def wide() -> bool:
    """Tables only on a terminal wide enough for them; else plain lines
    (logs, pipes, 80 columns), which never cut a name or a word."""
    return console.is_terminal and console.width >= 120


def wrapped(text: str, indent: int) -> str:
    """``text`` wrapped at spaces to the console's width (at least 80 columns
    when not a terminal), never inside a word."""
    import textwrap

    width = max(console.width if console.is_terminal else 80, 40)
    return textwrap.fill(
        text,
        width=width,
        initial_indent=" " * indent,
        subsequent_indent=" " * indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def plain(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def table(title: str | None = None, *columns: str, names: tuple[str, ...] = ()) -> Table:
    """A table whose ``names`` columns (switch names, file paths, anything
    a user types) are never cut or wrapped; other columns wrap at spaces."""
    t = Table(title=title)
    for col in columns:
        if col in names:
            t.add_column(col, no_wrap=True, overflow="ignore")
        else:
            t.add_column(col, overflow="fold")
    return t


def load_rules(name: str) -> zdfuzz.Rules:
    """A preset name/alias, or a path to a TOML rules file (the core's one
    resolution); a bad one raises ``zdfuzz.RulesError``, which every command
    turns into a one-line message and exit status 2."""
    return zdfuzz.Rules.resolve(name)


error_line = inputs.error_line


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
        except CorpusError as e:
            err_console.print(str(e), style="red", markup=False, highlight=False)
            raise SystemExit(2) from e
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            # a bad option of a command: one line too (click's own is three)
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            err_console.print(f"{where}: {e.format_message()} (see --help)", style="red", highlight=False)
            raise SystemExit(2) from e


@click.group(cls=Main)
@click.version_option(zdfuzz.__version__, prog_name="zdfuzz")
@click.option("--no-color", is_flag=True, help="No colour or styles (also: the NO_COLOR environment variable).")
def main(no_color: bool) -> None:
    """Fuzz and model-check Linux ZONE_DEVICE reference counting."""
    global console, err_console
    # made per invocation: NO_COLOR, FORCE_COLOR and COLUMNS are read now
    _styles.clear()
    if no_color:
        _styles.update(color_system=None, no_color=True)
    console = SafeConsole(soft_wrap=True, **_styles)
    err_console = SafeConsole(stderr=True, soft_wrap=True, **_styles)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--rules", "rules_name", help="Preset name or TOML file; default: the program's `rules` line.")
@click.option("--quiet", is_flag=True, help="Print only the verdict line.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema zdfuzz.replay/1).")
def replay(file: str, rules_name: str | None, quiet: bool, as_json: bool) -> None:
    """Run a .zdf program: exit 0 when clean, 1 on a violation, 2 on bad input."""
    program, rules = inputs.load(file, rules_name)
    try:
        verdict = zdfuzz.Machine.for_program(program, rules=rules).run(program)
    except zdfuzz.ProgramError as e:
        raise _bad_replay(file, e) from e
    if as_json:
        from zdfuzz.jsonout import doc, sig_json, violation_json

        emit_json(
            doc(
                "replay",
                file=file,
                rules=rules.name,
                ok=verdict.ok,
                steps=verdict.steps,
                signature=sig_json(verdict.signature),
                violation=violation_json(verdict.violation),
            )
        )
        raise SystemExit(0 if verdict.ok else 1)
    if verdict.ok:
        console.print(f"clean under {rules.name}: {verdict.steps} steps (program + drain), no violation")
        raise SystemExit(0)
    v = verdict.violation
    assert v is not None
    console.print(styled(v.invariant, "bold red"), f"({v.category}) at step {v.step}: ", end="")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema zdfuzz.rules-list/1).")
def rules_list(as_json: bool) -> None:
    """The built-in presets."""
    aliases = dict(zdfuzz.Rules.aliases())
    presets = [zdfuzz.Rules.preset(name) for name in zdfuzz.Rules.presets()]
    if as_json:
        from zdfuzz.jsonout import doc

        emit_json(
            doc(
                "rules-list",
                presets=[
                    {
                        "name": r.name,
                        "kernel": r.kernel,
                        "base": r.base,
                        "aliases": aliases.get(r.name, []),
                        "description": r.description,
                    }
                    for r in presets
                ],
                regressions=[
                    {"name": n, "fixed_in": fixed_in, "fix": fix} for n, fixed_in, fix in zdfuzz.Rules.regressions()
                ],
            )
        )
        return
    if not wide():
        plain("rules presets:")
        for r in presets:
            also = ", ".join(aliases.get(r.name, []))
            plain(
                f"  {r.name} ({r.kernel})"
                + (f" based on {r.base}" if r.base else "")
                + (f"; also {also}" if also else "")
            )
            plain(wrapped(r.description, 6))
        plain("regression presets (the code before one historical fix):")
        for name, fixed_in, fix in zdfuzz.Rules.regressions():
            plain(f"  {name} (fixed in {fixed_in})")
            plain(wrapped(fix, 6))
        return
    t = table("rules presets", "name", "kernel", "base", "aliases", "what changes", names=("name", "base", "aliases"))
    for r in presets:
        t.add_row(r.name, r.kernel, r.base or "-", ", ".join(aliases.get(r.name, [])), r.description)
    console.print(t)
    reg = table("regression presets: the code before one historical fix", "name", "fixed in", "fix", names=("name",))
    for name, fixed_in, fix in zdfuzz.Rules.regressions():
        reg.add_row(name, fixed_in, fix)
    console.print(reg)


@rules.command("show")
@click.argument("name")
@click.option("--toml", "as_toml", is_flag=True, help="Print the preset as an editable TOML file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema zdfuzz.rules-show/1).")
def rules_show(name: str, as_toml: bool, as_json: bool) -> None:
    """Every switch of a preset (or TOML rules file), with its meaning; the
    switches it sets over its base are marked `*`, with the base's value."""
    from zdfuzz.baseline import overrides

    r = load_rules(name)
    if as_toml:
        click.echo(r.to_toml())
        return
    over = overrides(name)
    if as_json:
        from zdfuzz.jsonout import doc

        emit_json(
            doc(
                "rules-show",
                name=r.name,
                kernel=r.kernel,
                base=r.base,
                description=r.description,
                switches=[
                    {
                        "switch": k,
                        "value": v,
                        "doc": d,
                        "overridden": k in over,
                        "base_value": over.get(k),
                    }
                    for k, v, d in r.switches()
                ],
            )
        )
        return
    console.print(styled(r.name, "bold"), f"({r.kernel}){' based on ' + r.base if r.base else ''}", highlight=False)
    plain(wrapped(r.description, 0))
    if r.base:
        console.print(f"{len(over)} switch(es) set over {r.base}, marked *", highlight=False)
    if not wide():
        for key, value, doc_ in r.switches():
            base_value = f"   ({r.base}: {over.get(key)})" if key in over and r.base else ""
            plain(f"{'*' if key in over else ' '} {key} = {value}{base_value}")
            plain(wrapped(doc_, 6))
        return
    t = table(None, "", "switch", "value", f"{r.base} value" if r.base else "base", "meaning", names=("switch",))
    for key, value, doc_ in r.switches():
        mark = "*" if key in over else ""
        base_value = (over.get(key) or "") if key in over else ""
        t.add_row(mark, key, value, base_value, doc_)
    console.print(t)


@rules.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema zdfuzz.rules-diff/1).")
def rules_diff_cmd(a: str, b: str, as_json: bool) -> None:
    """The switches whose values differ between rule sets A and B, with their docs."""
    from zdfuzz.baseline import rules_diff

    ra, rb = load_rules(a), load_rules(b)
    diffs = rules_diff(a, b)
    if as_json:
        from zdfuzz.jsonout import doc

        emit_json(
            doc(
                "rules-diff",
                a=ra.name,
                b=rb.name,
                switches=[{"switch": d.switch, "a": d.a, "b": d.b, "doc": d.doc} for d in diffs],
            )
        )
        return
    console.print(f"{len(diffs)} switch(es) differ between {ra.name} and {rb.name}", highlight=False)
    if diffs and not wide():
        for d in diffs:
            plain(f"{d.switch}: {ra.name} {d.a} -> {rb.name} {d.b}")
            plain(wrapped(d.doc, 4))
    elif diffs:
        t = table(None, "switch", ra.name, rb.name, "meaning", names=("switch",))
        for d in diffs:
            t.add_row(d.switch, d.a, d.b, d.doc)
        console.print(t)


@main.command()
def kinds() -> None:
    """Every action kind a program can use."""
    if not wide():
        for name, args, doc in zdfuzz.action_kinds():
            plain(f"{name} {' '.join(f'{a}=' for a in args)}".rstrip())
            plain(wrapped(doc, 4))
        return
    table = Table(title="actions (.zdf)")
    for col in ("action", "operands", "models"):
        table.add_column(col)
    for name, args, doc in zdfuzz.action_kinds():
        table.add_row(name, " ".join(f"{a}=" for a in args), doc)
    console.print(table)


@main.command()
@click.option("--rules", "rules_name", required=True, help="Preset name or TOML file.")
@click.option(
    "--types",
    help=f"Device types, comma-separated (default: {','.join(zdfuzz.DEFAULT_DEVICE_TYPES)}; also coherent, e3 or later).",
)
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
@click.option(
    "--devdax-pmd",
    is_flag=True,
    help="Device-dax aligned to a PMD: faults map PMDs, pages are compound folios from v5.17 (implies --order 1 at least).",
)
@click.option(
    "--fsdax-pmd",
    is_flag=True,
    help="FS-DAX with PMD-sized extents: faults map PMDs, entries hold compound folios from v6.15 (implies --order 1).",
)
@click.option("--depth", required=True, type=click.IntRange(0), help="Longest program explored (actions).")
@click.option("--threads", default=0, type=click.IntRange(0), show_default=True, help="Worker threads (0: every core).")
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
@click.option(
    "--baseline",
    "baseline_name",
    help="Explore past counterexamples these rules share (same signature): the shortest one new to --rules.",
)
@click.option(
    "--ignore",
    "ignore",
    multiple=True,
    metavar="SIGNATURE",
    help='Explore past this signature, e.g. "I-L2 memunmap_pages generic" (repeatable).',
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema zdfuzz.explore/1).")
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
    devdax_pmd: bool,
    fsdax_pmd: bool,
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
    baseline_name: str | None,
    ignore: tuple[str, ...],
    as_json: bool,
) -> None:
    """Explore every program of up to DEPTH actions, breadth-first.

    Prints "no violation reachable within depth D" with the number of
    distinct states and transitions, or the shortest counterexample as a
    .zdf program. Exit 0 clean, 1 counterexample, 2 bad input, 3 stopped by
    --max-memory/--max-seconds, 130 interrupted (Ctrl-C prints the partial
    result).

    With --baseline B, a counterexample that breaks B the same way (same
    invariant, action kind and device type) is skipped and the search goes
    on past its signature, until one new to --rules is found; --ignore
    skips the signatures listed.
    """
    from zdfuzz.baseline import ExploreNew, explore_new

    rules = load_rules(rules_name)
    baseline = load_rules(baseline_name) if baseline_name else None
    ignored: list[tuple[str, ...]] = []
    for sig in ignore:
        words = tuple(sig.replace(",", " ").split())
        if len(words) not in (3, 4):
            raise click.BadParameter(
                f"{sig!r}: a signature is INVARIANT KIND DEVICE [RULES], e.g. 'I-L2 memunmap_pages generic'",
                param_hint="--ignore",
            )
        ignored.append(words)
    out_console = quiet_console() if as_json else console
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
            order=max(order, 1) if devdax_pmd or fsdax_pmd else order,
            faults=int(faults),
            devdax_pmd=int(devdax_pmd),
            fsdax_pmd=int(fsdax_pmd),
        )
        if ray_address is not None:
            _ray_or_exit()
            if por or baseline is not None or ignored:
                err_console.print("explore: --por, --baseline and --ignore are not available with --ray", style="red")
                raise SystemExit(2)
            from zdfuzz import ray_backend

            result: Any = ray_backend.explore_cli(
                rules, shape, depth, symmetry=not no_symmetry, por=por, address=ray_address, workers=ray_workers
            )
            found: ExploreNew | None = None
        else:
            if por and (baseline is not None or ignored):
                err_console.print("explore: --por cannot be combined with --baseline or --ignore", style="red")
                raise SystemExit(2)

            def skipped(s: Any) -> None:
                msg = f"skipped {s.signature.invariant} {s.signature.kind} {s.signature.device} ({len(s.program)} actions): {s.why}"
                if live is not None:
                    live.console.print(msg, markup=False, highlight=False)
                else:
                    err_console.print(msg, markup=False, highlight=False)

            found = explore_new(
                rules,
                baseline=baseline,
                ignore=ignored,
                on_skip=skipped,
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
            result = found.result
    except zdfuzz.ZdfuzzError as e:
        err_console.print(f"explore: {error_line(e)}", style="red", markup=False, highlight=False)
        raise SystemExit(2) from e
    finally:
        if live is not None:
            live.stop()
    if not quiet:
        t = Table(title=f"{rules.name}: states by depth ({result.reduction} reduction, {result.threads} threads)")
        for col in ("depth", "new states", "states", "transitions"):
            t.add_column(col, justify="right")
        for d, new, states, transitions in result.levels:
            t.add_row(str(d), f"{new:,}", f"{states:,}", f"{transitions:,}")
        out_console.print(t)
    out_console.print(result.summary(), markup=False, highlight=False, soft_wrap=True)
    if found is not None and found.skipped:
        out_console.print(
            f"explored past {len(found.skipped)} signature(s) "
            + (f"{baseline.name} shares" if baseline else "listed with --ignore"),
            highlight=False,
            soft_wrap=True,
        )
    program = result.counterexample
    text = None
    if program is not None:
        v = result.violation
        assert v is not None
        out_console.print(styled(v.invariant, "bold red"), f"({v.category}) at step {v.step}: ", end="")
        out_console.print(v.action, markup=False, highlight=False)
        out_console.print(f"  {v.message}", markup=False, highlight=False, soft_wrap=True)
        if found is not None and found.baseline_replay is not None:
            out_console.print(
                f"  new: {found.baseline_replay.describe()}", markup=False, highlight=False, soft_wrap=True
            )
        text = (
            f"# zdfuzz explore: shortest counterexample, {len(program)} actions"
            f" ({v.invariant}, {v.category}); replay with `zdfuzz replay FILE`\n" + program.to_text()
        )
        if out:
            from zdfuzz.corpus import atomic_write

            # a new file renamed over OUT: a symlink at OUT is replaced, its target untouched
            atomic_write(Path(out), text)
            out_console.print(f"reproducer written to {out}", markup=False)
    if as_json:
        from zdfuzz.jsonout import explore_json

        emit_json(explore_json(result, rules.name, found, out if program is not None else None))
    elif text is not None:
        click.echo(text, nl=not text.endswith("\n"))
    if program is not None:
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
        console.print(f"misuse events: {[e.name for e in events]}", style="red")
        raise SystemExit(1)
    console.print(
        "release ran exactly once, after the last reference was dropped: "
        "memunmap_pages' wait_for_completion() returns now."
    )


def read_program(file: str) -> zdfuzz.Program:
    """A .zdf file (a ZdfuzzError naming the file, line and problem)."""
    return inputs.read_program(file)


def _bad_replay(file: str, e: zdfuzz.ZdfuzzError) -> SystemExit:
    """A program that parses but does not replay: its file, the action's line."""
    where = f"{file}:{e.line}" if e.line else file
    err_console.print(f"{where}: {e.message}", style="red", markup=False, highlight=False)
    return SystemExit(2)


TYPES = tuple(zdfuzz.DEVICE_TYPES)
#: the types when --types is not given: the four every era has (coherent
#: memory, v6.0+, is asked for by name)
DEFAULT_TYPES = tuple(zdfuzz.DEFAULT_DEVICE_TYPES)
_types_option = click.option(
    "--types",
    "types_",
    default=",".join(DEFAULT_TYPES),
    show_default=True,
    help=f"Device types, comma-separated ({', '.join(TYPES)}; coherent needs e3 or later).",
)


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
@_types_option
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
    help="Failure injection (native, hypothesis): programs may make kernel calls fail (fail_next), so error paths run.",
)
@click.option(
    "--devdax-pmd",
    is_flag=True,
    help="Device-dax aligned to a PMD (native, hypothesis): faults map PMDs, pages are compound folios from v5.17.",
)
@click.option(
    "--fsdax-pmd",
    is_flag=True,
    help="FS-DAX with PMD-sized extents (native, hypothesis): faults map PMDs, compound folios from v6.15.",
)
@click.option(
    "--baseline",
    "baseline_name",
    help="Replay each finding under these rules and label it new or shared "
    "(default: the `base` the rules override; `none`: no labels).",
)
@click.option("--both", is_flag=True, help="Also run the same campaign on the baseline: its findings fixed or shared.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (schema zdfuzz.fuzz/1).")
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
    devdax_pmd: bool,
    fsdax_pmd: bool,
    baseline_name: str | None,
    both: bool,
    as_json: bool,
    ray_address: str | None,
    ray_workers: int,
) -> None:
    """Run a fuzz campaign; write each new finding as a minimized .zdf
    reproducer plus JSON metadata under CORPUS/findings, labelled against
    the baseline: new (breaks only under --rules), shared (the baseline
    breaks the same way), and with --both, fixed."""
    from zdfuzz import campaign
    from zdfuzz.corpus import CorpusError
    from zdfuzz.drivers.sancov import SetupError

    types = _types(types_)
    rules = load_rules(rules_name)  # a bad --rules is bad input (exit 2) before the campaign starts
    # a type the era lacks (coherent before v6.0) too: the core's ConfigError
    zdfuzz.Machine(rules, zdfuzz.Shape(types=list(types)))
    if faults and engine == "atheris":
        err_console.print("--faults: the native and hypothesis engines inject failures (not atheris)", style="red")
        raise SystemExit(2)
    for flag, on, ty, what in (
        ("--devdax-pmd", devdax_pmd, "generic", "the generic (device-dax) type"),
        ("--fsdax-pmd", fsdax_pmd, "fsdax", "the fsdax type"),
    ):
        if not on:
            continue
        if engine == "atheris":
            err_console.print(
                f"{flag}: the native and hypothesis engines take shape options (not atheris)", style="red"
            )
            raise SystemExit(2)
        if ty not in types:
            err_console.print(f"{flag} needs {what} in --types", style="red")
            raise SystemExit(2)
    if baseline_name is None:
        baseline_name = rules.base
    elif baseline_name.lower() == "none":
        baseline_name = None
    if baseline_name is not None:
        load_rules(baseline_name)
    if both and baseline_name is None:
        raise click.BadParameter(f"{rules.name} has no base: name one with --baseline", param_hint="--both")
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
        devdax_pmd=devdax_pmd,
        fsdax_pmd=fsdax_pmd,
        baseline=baseline_name,
        both=both,
    )
    out = quiet_console() if as_json else console
    try:
        c = campaign.run(cfg, out)
    except SetupError as e:
        err_console.print(f"--engine {engine}: {e}", style="red", markup=False, highlight=False)
        raise SystemExit(2) from e
    except CorpusError as e:
        err_console.print(str(e), style="red", markup=False, highlight=False)
        raise SystemExit(2) from e
    if as_json:
        from zdfuzz.jsonout import fuzz_json

        emit_json(fuzz_json(c))
    if c.interrupted:
        raise SystemExit(130)


@main.command()
@click.argument("a")
@click.argument("b")
@click.option(
    "--time",
    "seconds",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds of native fuzzing per rule set (0: explore only).",
)
@click.option(
    "--depth",
    type=click.IntRange(0, 64),
    default=12,
    show_default=True,
    help="Longest program explored exhaustively, per device type.",
)
@_types_option
@click.option(
    "--corpus",
    "corpus_dir",
    type=click.Path(file_okay=False),
    default="zdfuzz-compare",
    show_default=True,
    help="Where the reproducers go (DIR/findings).",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema zdfuzz.compare/1).")
def compare(a: str, b: str, seconds: float, depth: int, types_: str, corpus_dir: str, seed: int, as_json: bool) -> None:
    """What rule set B breaks and fixes compared with A.

    Fuzzes both (native engine, --time each) and explores both exhaustively
    (one small machine per device type, up to --depth actions); every
    reproducer is then replayed under both rule sets. A bug (invariant,
    action kind, device type) is broken by B when some reproducer breaks it
    under B and none under A, fixed by B the other way round, unchanged
    when a reproducer breaks it under both. Exit 1 when B breaks something.
    """
    from zdfuzz.baseline import BROKEN, FIXED, UNCHANGED
    from zdfuzz.baseline import compare as run_compare

    ra, rb = load_rules(a), load_rules(b)
    types = _types(types_)
    log = quiet_console()
    result = run_compare(
        ra,
        rb,
        seconds=seconds,
        depth=depth,
        types=types,
        corpus=Path(corpus_dir),
        seed=seed,
        console=log,
        sources=(a, b),
    )
    broken = result.by(BROKEN)
    if as_json:
        from zdfuzz.jsonout import doc, row_json

        emit_json(
            doc(
                "compare",
                a=ra.name,
                b=rb.name,
                seconds=seconds,
                depth=depth,
                types=list(types),
                seed=seed,
                corpus=corpus_dir,
                counts={v: len(result.by(v)) for v in (BROKEN, FIXED, UNCHANGED)},
                rows=[row_json(r) for r in result.rows],
            )
        )
        raise SystemExit(1 if broken else 0)
    plain(
        f"{ra.name} -> {rb.name}: {len(broken)} broken, {len(result.by(FIXED))} fixed, "
        f"{len(result.by(UNCHANGED))} unchanged "
        f"(native fuzzing {seconds:g}s per rule set, exhaustive to depth {depth} per device type)"
    )
    heads = {
        BROKEN: f"broken by {rb.name}: breaks under {rb.name}, no reproducer breaks it under {ra.name}",
        FIXED: f"fixed by {rb.name}: breaks under {ra.name}, no reproducer breaks it under {rb.name}",
        UNCHANGED: "unchanged: a reproducer breaks it under both",
    }
    for verdict in (BROKEN, FIXED, UNCHANGED):
        rows = result.by(verdict)
        plain("")
        plain(f"{heads[verdict]} ({len(rows)})")
        if not rows:
            plain("  (none)")
        for r in rows:
            w = r.reproducer
            plain(f"  {' '.join(r.bug)}: {len(w.program)} actions ({w.engine}) {w.path}")
            plain(f"      {r.other.describe()}")
    if broken:
        plain("")
        plain("replay one with `zdfuzz replay FILE --rules A|B`, read it with `zdfuzz explain FILE`")
    raise SystemExit(1 if broken else 0)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--rules", "rules_name", help="Preset name or TOML file; default: the program's `rules` line.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the result here (default: print it).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema zdfuzz.minimize/1).")
def minimize(file: str, rules_name: str | None, output: str | None, as_json: bool) -> None:
    """Shrink a reproducer, keeping its signature (invariant, action kind,
    device type, rules); the result is 1-minimal."""
    import time

    from zdfuzz.corpus import atomic_write

    program, rules = inputs.load(file, rules_name)
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
    if as_json:
        from zdfuzz.jsonout import doc, sig_json

        emit_json(
            doc(
                "minimize",
                file=file,
                rules=rules.name,
                signature=sig_json(r.signature),
                original_actions=r.original_len,
                actions=len(r.program),
                runs=r.runs,
                seconds=round(dt, 3),
                program=text,
                output=output,
            )
        )
        return
    if output:
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema zdfuzz.explain/1).")
def explain(file: str, rules_name: str | None, as_json: bool) -> None:
    """Each step of a program: the kernel function it models, the CPU, the
    refcount/mapcount/pgmap-reference changes; then the violated invariant.
    Exit 0 clean, 1 violation, 2 bad input."""
    from zdfuzz.report import explain as explain_program

    program, rules = inputs.load(file, rules_name)
    try:
        e = explain_program(program, rules)
    except zdfuzz.ProgramError as err:
        raise _bad_replay(file, err) from err
    if as_json:
        from zdfuzz.jsonout import doc, sig_json, violation_json

        emit_json(
            doc(
                "explain",
                file=file,
                rules=e.rules,
                steps=[
                    {
                        "step": s.step,
                        "action": s.action,
                        "cpu": s.cpu,
                        "models": s.models,
                        "changes": s.changes,
                        "notes": s.notes,
                        "drain": s.drain,
                    }
                    for s in e.steps
                ],
                signature=sig_json(e.signature),
                violation=violation_json(e.violation),
                text=e.lines(),
            )
        )
        raise SystemExit(0 if e.violation is None else 1)
    # line by line as plain text (a long program's narrative is long)
    e.write(console.file)
    raise SystemExit(0 if e.violation is None else 1)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--as",
    "fmt",
    type=click.Choice(["pytest", "kernel-comment"]),
    required=True,
    help="pytest: a standalone test asserting the verdict; kernel-comment: the steps as a C comment.",
)
@click.option("--rules", "rules_name", help="Preset name or TOML file; default: the program's `rules` line.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write it here (default: print it).")
def export(file: str, fmt: str, rules_name: str | None, output: str | None) -> None:
    """A reproducer as a pytest test (asserting its verdict under the rules)
    or as a commented step list to paste into a patch review."""
    from zdfuzz.corpus import atomic_write
    from zdfuzz.export import as_kernel_comment, as_pytest

    program = read_program(file)
    rules = load_rules(rules_name or program.rules)
    try:
        zdfuzz.Machine.for_program(program, rules=rules).run(program, trace=False)
        text = (as_pytest if fmt == "pytest" else as_kernel_comment)(program, rules, file)
    except zdfuzz.ProgramError as e:
        raise _bad_replay(file, e) from e
    if output:
        atomic_write(Path(output), text)
        err_console.print(f"written to {output}", markup=False, highlight=False)
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default="report.html", show_default=True, help="The HTML file."
)
def report(directory: str, output: str) -> None:
    """One self-contained HTML page about the campaigns under DIRECTORY:
    executions/s and coverage over time, findings by invariant and device
    type, new/shared/fixed against the baseline, each finding explained and
    downloadable."""
    from zdfuzz.corpus import CorpusError, atomic_write
    from zdfuzz.htmlreport import build

    try:
        page = build(Path(directory))
    except CorpusError as e:
        err_console.print(str(e), style="red", markup=False)
        raise SystemExit(2) from e
    atomic_write(Path(output), page)
    plain(f"report written to {output}")


@main.group()
def corpus() -> None:
    """The findings of campaigns (a corpus directory)."""


@corpus.command("list")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema zdfuzz.corpus-list/1).")
def corpus_list(directory: str, as_json: bool) -> None:
    """Every finding in DIRECTORY and its subdirectories (a soak's campaigns):
    signature, label against the baseline, engine, time to find, size."""
    from zdfuzz.corpus import CorpusError, corpora_under

    try:
        found = [f for c in corpora_under(Path(directory)) for f in c.findings()]
    except CorpusError as e:
        err_console.print(str(e), style="red", markup=False)
        raise SystemExit(2) from e
    if as_json:
        from zdfuzz.jsonout import doc, stored_json

        emit_json(doc("corpus-list", directory=directory, findings=[stored_json(f) for f in found]))
        return
    plain(f"{len(found)} finding(s) in {directory}")
    if not wide():
        for f in found:
            t = f.meta.get("time_to_find")
            label = f.meta.get("label")
            plain(
                f"  {f.signature}"
                + (f" ({label} vs {f.meta.get('baseline')})" if label else "")
                + f"  {f.meta.get('engine', '?')}"
                + (f" after {t:.1f}s" if isinstance(t, int | float) else "")
                + f"  {f.meta.get('actions', '?')} actions"
                + ("" if f.minimized else " (not minimized)")
            )
            plain(f"      {f.zdf}")
        return
    t = table(
        None,
        "invariant",
        "action",
        "type",
        "rules",
        "label",
        "engine",
        "found after",
        "actions",
        "file",
        names=("invariant", "action", "type", "rules", "file"),
    )
    for f in found:
        s = f.signature
        tt = f.meta.get("time_to_find")
        t.add_row(
            s.invariant,
            s.kind,
            s.device,
            s.rules,
            str(f.meta.get("label") or "-"),
            str(f.meta.get("engine", "?")),
            f"{tt:.1f}s" if isinstance(tt, int | float) else "?",
            str(f.meta.get("actions", "?")) + ("" if f.minimized else " (not minimized)"),
            str(f.zdf),
        )
    console.print(t)


@corpus.command("check")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--rules", "rules_name", help="Rules for findings filed under its name (a TOML file's findings).")
@click.option("--retire", is_flag=True, help="Move stale and unreadable findings to DIRECTORY/retired.")
def corpus_check(directory: str, rules_name: str | None, retire: bool) -> None:
    """Replay every finding in DIRECTORY: does it still break its signature?
    Exit 0 when every finding does (or was retired), 1 when stale or
    unreadable findings remain."""
    from zdfuzz.corpus import Corpus

    c = Corpus(directory)
    checks = c.check(load_rules(rules_name) if rules_name else None)
    table = Table(title=f"{len(checks)} finding(s) in {directory}")
    for col in ("status", "signature", "file", "detail"):
        table.add_column(col)
    left = 0
    for k in checks:
        status = k.status
        if k.status in ("stale", "unreadable"):
            if retire:
                c.retire(k)
                status += ", retired"
            else:
                left += 1
        table.add_row(status, str(k.signature or "?"), k.zdf.name, k.detail)
    console.print(table)
    if left:
        console.print(f"{left} stale or unreadable finding(s); `--retire` moves them to {c.retired_dir}")
        raise SystemExit(1)


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

    if not wide():
        for b in reg.BUGS:
            path = reg.reproducer_path(b)
            plain(f"{b.name}: {b.invariant} under {b.preset} ({','.join(b.types)}), fixed in {b.fixed_in}")
            plain(wrapped(b.fix, 4))
            plain(f"    {reg.display_path(path) if path.is_file() else '(no reproducer yet)'}")
        return
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
            reg.display_path(path) if path.is_file() else "-",
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

    where = Path(root) if root else reg.ROOT
    n = len(reg.entries(where))
    if n == 0:
        # a check of nothing must not pass
        err_console.print(f"{where}: no reproducers (<preset>/<name>.zdf) to check", style="red", markup=False)
        raise SystemExit(2)
    problems = reg.check(where)
    for p in problems:
        err_console.print(p, style="red", markup=False)
    if problems:
        raise SystemExit(1)
    console.print(f"{n} reproducer(s): each breaks its invariant under its preset and is clean under its fix")


@main.command()
@click.option("--minutes", default=10.0, show_default=True, help="Minutes per (preset, type, engine) campaign.")
@click.option("--presets", default="e4,e5", show_default=True, help="Presets, comma-separated.")
@_types_option
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
