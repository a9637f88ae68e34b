"""The conformance suite's scenarios parse, and the model predicts for each
what the lab compares against the kernel (no VM here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zdfuzz.lab import kernels, scenario
from zdfuzz.lab.errors import ScenarioError
from zdfuzz.lab.predict import predict

SUITE = {p.stem: p for p in scenario.builtin()}


def load(name: str) -> scenario.Scenario:
    return scenario.load(SUITE[name])


def step_index(sc: scenario.Scenario, op_text: str) -> int:
    [i] = [i for i, s in enumerate(sc.steps) if op_text in s.text]
    return i


def test_the_suite_covers_the_four_kinds_of_question() -> None:
    names = set(SUITE)
    assert {
        "f1-devdax-unbind-iouring",
        "f1-devdax-unbind-vmsplice",
        "fsdax-truncate-mapped-vmsplice",
        "fsdax-truncate-unmapped-vmsplice",
        "fsdax-unbind-pmem-mounted",
        "devdax-fork-pinned-exit",
    } <= names
    for p in SUITE.values():
        sc = scenario.load(p)
        assert sc.name == p.stem, "a built-in scenario's file is named after it"
        assert sc.title and sc.steps and any(s.model for s in sc.steps)


@pytest.mark.parametrize("name", sorted(n for n in SUITE if n.startswith("f1-")))
def test_f1_scenarios_predict_teardown_under_the_reference_at_the_unbind(name: str) -> None:
    sc = load(name)
    p = predict(sc, "e3")
    unbind = next(i for i, s in enumerate(sc.steps) if any(a.startswith("memunmap_pages") for a in s.model))
    assert p.violation is not None and p.violation.invariant == "I-L2" and p.violation.step == unbind
    assert p.steps[unbind].outcome == "ok", "the unbind returns: nothing waits for the reference"
    # under e1 (v5.10) the page's own pgmap reference makes memunmap_pages wait
    old = predict(sc, "e1")
    assert old.violation is None
    assert old.steps[unbind].outcome == "blocks" and old.steps[unbind].completes_at is not None


@pytest.mark.parametrize(
    "name",
    [
        "devdax-unbind-idle",
        "devdax-unpin-before-unbind",
        "devdax-fork-pinned-exit",
        "devdax-fork-pinned-exit-parent-first",
    ],
)
def test_controls_are_clean_and_the_unbind_returns(name: str) -> None:
    sc = load(name)
    p = predict(sc, "e3")
    assert p.violation is None
    assert p.steps[step_index(sc, "unbind_dax")].outcome == "ok"


@pytest.mark.parametrize(
    "name,op", [("fsdax-truncate-mapped-vmsplice", "truncate"), ("fsdax-punch-hole-mapped-vmsplice", "punch_hole")]
)
def test_a_mapped_busy_page_makes_truncate_wait_for_the_reference(name: str, op: str) -> None:
    sc = load(name)
    p = predict(sc, "e3")
    t, put = step_index(sc, f"- {op} "), step_index(sc, "close_pipe")
    assert p.violation is None
    assert p.steps[t].outcome == "blocks" and p.steps[t].completes_at == put


@pytest.mark.parametrize(
    "name,op", [("fsdax-truncate-unmapped-vmsplice", "truncate"), ("fsdax-punch-hole-unmapped-vmsplice", "punch_hole")]
)
def test_an_unmapped_busy_page_is_missed_by_the_busy_scan_before_v6_15(name: str, op: str) -> None:
    sc = load(name)
    t = step_index(sc, f"- {op} ")
    p = predict(sc, "e3")
    assert p.violation is not None and p.violation.invariant == "I-X2" and p.violation.step == t
    # v6.15's fix (cee91fa13a8e) makes the scan see it: e4 waits instead
    fixed = predict(sc, "e4")
    assert fixed.violation is None and fixed.steps[t].outcome == "blocks"


def test_fsdax_refuses_a_long_term_pin() -> None:
    sc = load("fsdax-iouring-refused")
    p = predict(sc, "e3")
    assert p.violation is None
    assert p.steps[step_index(sc, "iouring_register")].outcome == "error:EOPNOTSUPP"


def test_a_short_term_pin_in_flight_holds_truncate_until_the_io_completes() -> None:
    sc = load("fsdax-truncate-during-dio")
    p = predict(sc, "e3")
    assert p.violation is None
    t, w = step_index(sc, "- truncate"), step_index(sc, "- wait")
    assert p.steps[t].outcome == "blocks" and p.steps[t].completes_at == w


def test_a_zero_step_timeout_reaches_the_agent_as_zero() -> None:
    # @timeout=0 means "do not wait": dropping it (0 is falsy) would give the
    # step the default and serialise the race the scenario sets up
    from zdfuzz.lab.guest import Image
    from zdfuzz.lab.run import agent_scenario, setup_of

    sc = load("hmm-evict-races-exit")
    spec = agent_scenario(sc, setup_of(sc), Image(Path("."), [], ""), "tcg")
    close = step_index(sc, "B close")
    assert spec["steps"][close]["timeout_ms"] == 0
    assert "timeout_ms" not in spec["steps"][step_index(sc, "A exit")]
    with pytest.raises(ScenarioError, match="0 or more"):
        scenario.parse(SUITE["hmm-evict-races-exit"].read_text().replace("@timeout=0", "@timeout=-1"))


DEBIAN_612 = str(kernels.PRESETS_DIR / "debian-6.12.toml")


def test_a_background_eviction_is_held_open_so_the_exit_lands_inside_it() -> None:
    # docs/findings.md F5: the eviction's task waits where its own actions left
    # it (after the collect) until the `wait`, so the exit runs in the window
    # and finalize's walk reads the freed anon_vma at the wait.
    sc = load("hmm-evict-races-exit")
    close, ex, w = step_index(sc, "B close"), step_index(sc, "A exit"), step_index(sc, "- wait")
    p = predict(sc, DEBIAN_612)
    assert p.violation is not None and p.violation.invariant == "I-M10" and p.violation.step == w
    assert p.steps[close].outcome == "blocks" and p.steps[close].completes_at == w
    assert p.steps[ex].outcome == "ok"
    # the same steps with the eviction waited for: it finishes before the
    # exit, and nothing is left to race
    waited = scenario.parse(SUITE["hmm-evict-races-exit"].read_text().replace(" @background=yes @timeout=0", ""))
    q = predict(waited, DEBIAN_612)
    assert q.violation is None
    assert q.steps[close].outcome == "ok"


def test_a_device_read_faults_another_owners_page_back_and_the_ioctl_succeeds() -> None:
    # HMM_PFN_REQ_FAULT (hmm_fault): the walk's -EBUSY is the driver's to
    # retry, not the ioctl's result, so the step is predicted to return
    sc = load("hmm-device-read-other-owner")
    p = predict(sc, DEBIAN_612)
    assert p.violation is None
    other, hole = (step_index(sc, f"cmd=read map=m page={i} ") for i in (0, 1))
    assert p.steps[other].outcome == "ok" and p.steps[hole].outcome == "ok"
    assert any("another owner's device-private page -> do_swap_page" in n for n in p.steps[other].notes)
    assert any("on the hole -> do_anonymous_page" in n for n in p.steps[hole].notes)


@pytest.mark.parametrize("name", ["fsdax-unbind-pmem-mounted", "fsdax-xfs-unbind-pmem-mounted"])
def test_fsdax_unbind_under_a_reference_tears_down_under_e3(name: str) -> None:
    sc = load(name)
    p = predict(sc, "e3")
    assert p.violation is not None and p.violation.invariant == "I-L2"
    assert p.violation.step == step_index(sc, "unbind_pmem")


def test_the_model_program_of_a_scenario_replays_to_the_same_verdict() -> None:
    import zdfuzz

    sc = load("f1-devdax-unbind-iouring")
    p = predict(sc, "e3")
    prog = zdfuzz.Program.parse(p.program)
    v = zdfuzz.Machine.for_program(prog).run(prog)
    assert v.violation is not None and v.violation.invariant == "I-L2"


BAD = [
    ("scenario x\nactors A\nA frobnicate\n", 3, "unknown operation 'frobnicate'"),
    ("scenario x\nactors A\nA open path=/x\n", 3, "missing argument as="),
    ("scenario x\nactors A\nA mmap as=m pages=lots\n", 3, "pages='lots': expected an integer"),
    ("scenario x\nactors A\nB touch map=m\n", 3, "runner 'B' is not an actor"),
    ("scenario x\nactors A\nA exit\nsetup devdax\n", 4, "'setup' must come before the first step"),
    ("scenario x\nactors A\nA exit @sometimes=1\n", 3, "unknown step option @sometimes"),
    ("scenario x\nactors A\n- touch map=m\n", 3, "name an actor, not '-'"),
    ("scenario x\nscenario y\n", 2, "'scenario' given twice"),
    ("actors A\nA exit\n", 0, "no `scenario NAME` line"),
    ("scenario x\nactors A\nA exit => \n", 3, "nothing after '=>'"),
    ("scenario x\nactors A\nA exit => exit_mmap proc=0\n", 0, "no `config` line"),
    ("scenario x\nneeds DEV_DAX\n", 2, "expected CONFIG_ options"),
    ("scenario x\nactors A\nA fork child=A\n", 3, "that actor already exists"),
    ("scenario bad name\n", 1, "scenario name"),
]


@pytest.mark.parametrize("text,line,message", BAD)
def test_a_bad_scenario_is_refused_with_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ScenarioError) as e:
        scenario.parse(text, "s.lab")
    assert e.value.line == line and message in e.value.message
    assert str(e.value).startswith(f"s.lab:{line}: " if line else "s.lab: ")


def test_a_model_action_the_model_rejects_names_the_scenario_line() -> None:
    text = (
        "scenario x\nconfig types=generic pgmaps=1 pages=1 procs=1 addrs=1\nmodel memremap_pages pgmap=0\n"
        "actors A\nA exit => frobnicate pfn=0\n"
    )
    with pytest.raises(ScenarioError) as e:
        predict(scenario.parse(text, "s.lab"), "e3")
    assert e.value.line == 5 and "frobnicate" in e.value.message


def test_aliases_expand_to_agent_operations() -> None:
    sc = scenario.parse("scenario x\n- unbind_dax dev=dax0.0\n- unbind_pmem\n- disable_namespace ns=namespace0.0\n")
    assert [(s.op, s.args) for s in sc.steps] == [
        ("write_sysfs", {"path": "/sys/bus/dax/drivers/device_dax/unbind", "value": "dax0.0"}),
        ("unbind_driver", {"driver": "/sys/bus/nd/drivers/nd_pmem"}),
        ("exec", {"argv": ["/usr/bin/ndctl", "disable-namespace", "namespace0.0"]}),
    ]


def test_unreadable_and_oversized_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.lab"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ScenarioError, match="larger than 1 MiB"):
        scenario.load(big)
    with pytest.raises(ScenarioError, match="not a regular file"):
        scenario.load(tmp_path)
    bad = tmp_path / "bad.lab"
    bad.write_bytes(b"scenario x\n\xff\n")
    with pytest.raises(ScenarioError) as e:
        scenario.load(bad)
    assert e.value.line == 2
