"""`make bench`: how fast `homevisits validate` checks a 50,000-row log, against two plain reads of the same file.

Three processes, one after the other (in rounds), on the same workbook (bench/visits-...-<rows>-<seed>.xlsx):

  validate   homevisits validate --source FILE --policy omg_education --now <fixed> --format json
  openpyxl   pandas.read_excel(FILE, engine="openpyxl")   (what most spreadsheet scripts do)
  calamine   python_calamine: every row of the first sheet  (the floor: nothing validates faster than it reads)

for each of three shapes of log (bench/make_workbook.py): standard (~2% bad cells, numbers shared
across the school), phones (every learner, parent and member of staff with a number of their own, so
each distinct number is parsed) and findings (~14% bad cells, ~200,000 findings).

Wall time and peak memory of each process (with its children), measured with os.wait4 and /proc. Targets (issue 2), on
every shape: validation under 1/6 of the openpyxl read, under twice the calamine read, under 400 MB.
Then the forms and Google Sheet and Drive benchmarks (bench/forms_bench.py, bench/gsheet_bench.py,
bench/drive_bench.py) when they exist.

Usage: python bench/run.py [--shape standard|phones|findings|all] [--rows N] [--seed S] [--skip-openpyxl]
                           [--skip-extras] [--repeat K] [--openpyxl-rounds J]

--repeat K (default 5) runs the three processes in turn K times and keeps each one's best time, so a
slow minute on a shared machine does not fall on one of them only; the slow openpyxl read (about 20 s)
runs in the first J of those rounds only (default 2).

Exit status 0 when every measured target is met on every shape, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from make_workbook import BENCH_NOW, SHAPES, make_bench_workbook  # noqa: E402

POLICY = "omg_education"
TARGET_VS_OPENPYXL = 1 / 6
TARGET_VS_CALAMINE = 2.0
TARGET_PEAK_MB = 400.0
# Measured here on 2026-11-22 for a file of this shape (used for the ratio when --skip-openpyxl).
REFERENCE_OPENPYXL_S = 35.0
SHAPE_NOTES = {
    "standard": "8,000 learners sharing 2,000 phone numbers, ~2% bad cells",
    "phones": "9,000 learners, each with their own phone and their parent's: ~18,000 numbers written ~42,000 ways",
    "findings": "the standard log with ~14% bad cells: a finding-heavy check",
}

OPENPYXL_READ = (
    "import sys, pandas; frame = pandas.read_excel(sys.argv[1], engine='openpyxl'); print(len(frame))"
)
CALAMINE_READ = (
    "import sys; from python_calamine import CalamineWorkbook; "
    "rows = CalamineWorkbook.from_path(sys.argv[1]).get_sheet_by_index(0).to_python(); print(len(rows))"
)


@dataclass
class Run:
    label: str
    seconds: float
    peak_mb: float
    status: int
    stderr: str
    cpu_seconds: float = 0.0  # user + system time of the process and its children: less swayed by other jobs

    @property
    def failed(self) -> bool:
        return self.status not in self.accepted

    accepted: tuple[int, ...] = (0,)


def _tree_pss_kb(pid: int) -> int:
    """Proportional memory of a process and its children (a forked child's shared pages counted once)."""

    def pss(one: int) -> int:
        try:
            with open(f"/proc/{one}/smaps_rollup") as rollup:
                return next((int(line.split()[1]) for line in rollup if line.startswith("Pss:")), 0)
        except OSError:
            return 0

    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            children = [int(child) for child in listing.read().split()]
    except OSError:
        children = []
    return pss(pid) + sum(pss(child) for child in children)


def measure(label: str, argv: list[str], accepted: tuple[int, ...] = (0,), *, sample: bool = False) -> Run:
    """Run one process to the end; its wall time, peak memory and exit status.

    Peak memory is the process's own peak RSS; with ``sample``, also the peak (sampled every 20 ms) of
    the proportional memory of the process and any children it starts (so nothing escapes the
    count). Sampling costs CPU, so a sampled run's time is not used.
    """
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        tree_peak = 0
        while True:
            pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG if sample else 0)
            if pid:
                break
            tree_peak = max(tree_peak, _tree_pss_kb(process.pid))
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(wait_status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace").strip()
    cpu = usage.ru_utime + usage.ru_stime
    peak_mb = max(usage.ru_maxrss, tree_peak) / 1024
    return Run(label, seconds, peak_mb, process.returncode, stderr, cpu, accepted)


def best(runs: list[Run]) -> Run:
    ok = [r for r in runs if not r.failed]
    return min(ok, key=lambda r: r.seconds) if ok else runs[-1]


def homevisits_command() -> list[str]:
    script = Path(sys.executable).with_name("homevisits")
    if script.exists():
        return [str(script)]
    found = shutil.which("homevisits")
    return [found] if found else [sys.executable, "-m", "homevisits"]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


@dataclass
class ShapeResult:
    """One shape's best runs, its ratios and whether each target was met."""

    shape: str
    validate: Run
    calamine: Run
    openpyxl: Run | None
    findings: int | None
    checks: list[tuple[str, str, str, bool]]

    @property
    def ok(self) -> bool:
        failed = self.validate.failed or self.calamine.failed or bool(self.openpyxl and self.openpyxl.failed)
        return not failed and all(met for *_, met in self.checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark homevisits validate against plain reads.")
    parser.add_argument(
        "--shape",
        choices=[*SHAPES, "all"],
        default="all",
        help="which log to check: " + ", ".join(SHAPES) + " or all of them (default all)",
    )
    parser.add_argument(
        "--rows", type=int, default=50_000, help="rows in the generated workbook (default 50000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the generated workbook")
    parser.add_argument(
        "--skip-openpyxl", action="store_true", help="skip the slow pandas/openpyxl read (~20 s a run)"
    )
    parser.add_argument(
        "--skip-extras", action="store_true", help="skip the forms and Google Sheet benchmarks"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="K rounds, each running the three processes one after the other; each keeps its best (default 5)",
    )
    parser.add_argument(
        "--openpyxl-rounds",
        type=int,
        default=2,
        help="how many of the rounds also run the slow openpyxl read (default 2)",
    )
    args = parser.parse_args(argv)

    print(f"machine:  {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"check:    --policy {POLICY} --now {BENCH_NOW}")
    shapes = list(SHAPES) if args.shape == "all" else [args.shape]
    results = [bench_shape(shape, args) for shape in shapes]
    if len(results) > 1:
        print_summary(results)
    ok = all(result.ok for result in results)

    if not args.skip_extras:
        for name in ("forms_bench", "gsheet_bench", "drive_bench", "writeback_bench"):
            ok &= run_extra(name)
    return 0 if ok else 1


def bench_shape(shape: str, args: argparse.Namespace) -> ShapeResult:
    """Time validate and the two plain reads on one shape's workbook; print its tables."""
    started = time.perf_counter()
    workbook = make_bench_workbook(None, args.rows, args.seed, shape)
    made = time.perf_counter() - started
    print(f"\n## shape: {shape} ({SHAPE_NOTES[shape]})\n")
    print(
        f"workbook: {workbook.relative_to(BENCH_DIR.parent)} ({args.rows:,} rows x {column_count()} columns, "
        f"{workbook.stat().st_size / 1e6:.1f} MB; {'made' if made > 1 else 'cached'} in {made:.1f} s)"
    )
    validate_argv = [
        *homevisits_command(),
        "validate",
        "--source",
        str(workbook),
        "--policy",
        POLICY,
        "--now",
        BENCH_NOW,
        "--format",
        "json",
        "--output",
    ]
    file = str(workbook)
    # Interleaved rounds, so a slow minute on this shared machine falls on all three alike.
    commands = {
        "validate": ("homevisits validate --format json", [*validate_argv, os.devnull], (0, 1)),
        "calamine": ("python-calamine read (floor)", [sys.executable, "-c", CALAMINE_READ, file], (0,)),
    }
    if not args.skip_openpyxl:
        commands["openpyxl"] = (
            "pandas.read_excel (openpyxl)",
            [sys.executable, "-c", OPENPYXL_READ, file],
            (0,),
        )
    rounds = max(1, args.repeat)
    tried: dict[str, list[Run]] = {name: [] for name in commands}
    for round_number in range(rounds):
        for name, (label, command, accepted) in commands.items():
            if name == "openpyxl" and round_number >= max(1, args.openpyxl_rounds):
                continue
            tried[name].append(measure(label, command, accepted))
    validate, calamine = best(tried["validate"]), best(tried["calamine"])
    openpyxl = best(tried["openpyxl"]) if "openpyxl" in tried else None
    with tempfile.TemporaryDirectory() as folder:  # the memory run keeps its report, to count findings
        report = Path(folder) / "report.json"
        sampled = measure("validate (memory)", [*validate_argv, str(report)], accepted=(0, 1), sample=True)
        findings = count_findings(report)
    validate.peak_mb = max(validate.peak_mb, sampled.peak_mb)  # any child process counted too
    print(f"findings: {findings:,}" if findings is not None else "findings: (no report)")
    print(f"best of {rounds} interleaved rounds (openpyxl: {len(tried.get('openpyxl', []))}):")
    runs = [r for r in (validate, openpyxl, calamine) if r is not None]
    print("| process | wall time | CPU time | peak memory |")
    print("|---|---:|---:|---:|")
    for r in runs:
        note = f" (FAILED, exit {r.status})" if r.failed else ""
        print(f"| {r.label}{note} | {r.seconds:.2f} s | {r.cpu_seconds:.2f} s | {r.peak_mb:.0f} MB |")
    if openpyxl is None:
        print(f"| pandas.read_excel (openpyxl) | skipped (reference {REFERENCE_OPENPYXL_S:g} s) | | |")
    print()

    openpyxl_s = openpyxl.seconds if openpyxl and not openpyxl.failed else REFERENCE_OPENPYXL_S
    vs_openpyxl = validate.seconds / openpyxl_s
    vs_calamine = validate.seconds / calamine.seconds
    checks = [
        ("validate / openpyxl read" + ("" if openpyxl else " (reference)"), f"{vs_openpyxl:.3f}",
         f"< {TARGET_VS_OPENPYXL:.3f} (1/6)", vs_openpyxl < TARGET_VS_OPENPYXL and not validate.failed),
        ("validate / calamine read", f"{vs_calamine:.2f}", f"< {TARGET_VS_CALAMINE:g}",
         vs_calamine < TARGET_VS_CALAMINE and not validate.failed),
        ("validate peak memory", f"{validate.peak_mb:.0f} MB", f"< {TARGET_PEAK_MB:g} MB",
         validate.peak_mb < TARGET_PEAK_MB and not validate.failed),
    ]  # fmt: skip
    print("| target | measured | goal | result |")
    print("|---|---:|---:|---|")
    for name, value, goal, met in checks:
        print(f"| {name} | {value} | {goal} | {verdict(met)} |")
    print(
        f"\nCPU time, less swayed by other jobs on the machine (no target): {cpu_ratios(validate, calamine, openpyxl)}"
    )
    for r in runs:
        if r.failed:
            print(f"\n{r.label} failed (exit {r.status}):\n{r.stderr[-2000:]}")
    return ShapeResult(shape, validate, calamine, openpyxl, findings, checks)


def cpu_ratios(validate: Run, calamine: Run, openpyxl: Run | None) -> str:
    """Validate's CPU time against each read's, as a phrase."""
    parts = [f"validate / calamine {validate.cpu_seconds / max(calamine.cpu_seconds, 1e-9):.2f}"]
    if openpyxl is not None:
        parts.append(f"validate / openpyxl {validate.cpu_seconds / max(openpyxl.cpu_seconds, 1e-9):.3f}")
    return ", ".join(parts)


def count_findings(report: Path) -> int | None:
    """How many findings a validate run wrote (None when it wrote no readable report)."""
    try:
        return len(json.loads(report.read_text(encoding="utf-8"))["findings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def column_count() -> int:
    from homevisits.schema import load_schema

    return len(load_schema().columns)


def print_summary(results: list[ShapeResult]) -> None:
    """All shapes side by side: their times, ratios to each read, peak memory and verdict."""
    print("\n## all shapes\n")
    print(
        "| shape | findings | validate | calamine | openpyxl | validate / calamine | validate / openpyxl "
        "| peak memory | targets | CPU time ratios |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for result in results:
        by_openpyxl, by_calamine, memory = (value for _, value, _, _ in result.checks)
        openpyxl = f"{result.openpyxl.seconds:.2f} s" if result.openpyxl else "skipped"
        findings = f"{result.findings:,}" if result.findings is not None else "?"
        print(
            f"| {result.shape} | {findings} | {result.validate.seconds:.2f} s | {result.calamine.seconds:.2f} s "
            f"| {openpyxl} | {by_calamine} | {by_openpyxl} | {memory} | {verdict(result.ok)} "
            f"| {cpu_ratios(result.validate, result.calamine, result.openpyxl)} |"
        )


def run_extra(name: str) -> bool:
    """Call bench/<name>.py run() if that file exists and print its figures; False if it failed."""
    path = BENCH_DIR / f"{name}.py"
    if not path.is_file():
        return True
    print(f"\n{name}:")
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        started = time.perf_counter()
        result = module.run()
        seconds = time.perf_counter() - started
    except Exception as exc:  # another helper's benchmark: report it, keep ours
        print(f"  could not run ({type(exc).__name__}: {exc})")
        return False
    targets = getattr(module, "TARGETS", {}) or {}
    ok = True
    if isinstance(result, dict):
        print("| figure | value | target | result |")
        print("|---|---:|---:|---|")
        for key, value in result.items():
            goal, met = "", ""
            if key in targets:
                higher_is_better = key.endswith(("_per_s", "per_second", "_rate"))
                passed = value >= targets[key] if higher_is_better else value <= targets[key]
                goal = f"{'>=' if higher_is_better else '<='} {targets[key]:g}"
                met = verdict(passed)
                ok &= passed
            print(f"| {key} | {value} | {goal} | {met} |")
    elif result is not None:
        print(f"  {result}")
    print(f"  ({seconds:.1f} s)")
    return ok


if __name__ == "__main__":
    sys.exit(main())
