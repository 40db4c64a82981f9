"""The ``convcore bench`` command: its options (`add_arguments`) and the run (`run`)."""

from __future__ import annotations

import argparse
import datetime
import sys

from . import cases, machine, plot, report, timing
from .timing import _BLOCK

QUICK = ("L1", "L2", "P1", "C", "lenet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``convcore bench``'s options to a parser (``convcore.cli`` calls it for the subcommand).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Gets ``--quick``, ``--cases``, ``--smoke``, ``--repeat``, ``--threads``, ``--scaling``,
        ``--no-torch``, ``--no-ort``, ``--json`` and ``--plot``.

    Examples
    --------
    >>> import argparse
    >>> from convcore.bench import add_arguments
    >>> parser = argparse.ArgumentParser(prog="convcore bench")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["--smoke", "--cases", "C", "--repeat", "1"])
    >>> args.smoke, args.cases, args.repeat, args.threads
    (True, 'C', 1, None)
    """
    # "%(default).0s" prints nothing; it stops ArgumentDefaultsHelpFormatter from appending "(default: None)"
    parser.add_argument("--quick", action="store_true",
                        help=f"a subset ({', '.join(QUICK)}), 3 rounds: under a minute on an idle machine%(default).0s")
    parser.add_argument("--cases", default=None, metavar="LIST",
                        help="comma-separated: L1,L2,V1,R1,P1,S1,A,B,C,lenet,infer "
                             "(or conv, pool, all, smoke)%(default).0s")
    parser.add_argument("--smoke", action="store_true",
                        help="the tiny smoke variant of every case (checks the harness, not speed)%(default).0s")
    parser.add_argument("--repeat", type=int, default=None, metavar="R",
                        help=f"interleaved rounds per case, {_BLOCK} timed calls per contender each "
                             "(default: 7, --quick 3)%(default).0s")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="threads for convcore, torch and (with threadpoolctl) numpy's BLAS "
                             "(default: convcore's default for convcore and torch, BLAS untouched)%(default).0s")
    parser.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=None,
                        help="also time cython with 1 thread (convcore and BLAS) against N threads "
                             "(default: on, off with --quick)%(default).0s")
    parser.add_argument("--no-torch", action="store_true", help="leave torch out even when installed%(default).0s")
    parser.add_argument("--no-ort", action="store_true", help="leave onnxruntime out even when installed%(default).0s")
    parser.add_argument("--json", default=None, metavar="FILE",
                        help="write the machine, versions, thread counts, every sample and the summary%(default).0s")
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help="bar chart of speed-ups (needs matplotlib)%(default).0s")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark: print the header, one table per shape group and the summary.

    Every contender of a case is timed in interleaved rounds (see ``convcore.bench.timing``); the
    thread counts it sets (convcore's, torch's, BLAS's) are restored afterwards.

    Parameters
    ----------
    args : argparse.Namespace
        The options `add_arguments` defines.

    Returns
    -------
    int
        The exit status: 0 when it ran, 1 without the compiled extension, 2 for invalid options
        (nothing is run then).

    Examples
    --------
    >>> import argparse
    >>> from convcore.bench import add_arguments, run
    >>> parser = argparse.ArgumentParser(prog="convcore bench")
    >>> add_arguments(parser)
    >>> run(parser.parse_args(["--smoke", "--cases", "C", "--repeat", "1"]))  # doctest: +SKIP
    convcore 0.1.0  backend=cython  compiled=True ...
    0
    """
    import convcore

    smoke = args.smoke
    try:
        items = [t.strip() for t in (args.cases or "").split(",")]
        if "smoke" in [t.lower() for t in items]:
            smoke, items = True, [t for t in items if t.lower() != "smoke"]
        groups = cases.parse_groups(",".join(items))
    except ValueError as exc:
        print(f"error: --cases: {exc}", file=sys.stderr)
        return 2
    if groups is None and args.quick and not smoke:
        groups = list(QUICK)
    if (args.repeat is not None and args.repeat < 1) or (args.threads is not None and args.threads < 1):
        print("error: --repeat and --threads must be >= 1", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("error: --plot needs matplotlib (pip install 'convcore[plot]'); nothing was run", file=sys.stderr)
            return 2
    if not convcore.info()["compiled"]:
        print(f"error: the compiled extension is not available ({convcore.info()['compiled_error']}); "
              "there is no cython backend to benchmark", file=sys.stderr)
        return 1
    repeat = args.repeat or (3 if args.quick else 7)
    scaling = (not args.quick) if args.scaling is None else args.scaling
    specs = cases.specs(groups, smoke=smoke)

    torch = None if args.no_torch else cases.optional_torch()
    try:
        import threadpoolctl

        controller = threadpoolctl.ThreadpoolController()
    except ImportError:
        threadpoolctl = controller = None
    saved_torch = torch.get_num_threads() if torch is not None else None
    threads = args.threads or convcore.get_num_threads()
    blas_limiter = None
    try:  # everything changed here is restored afterwards (the command also runs inside tests)
        with convcore.threads(threads):   # public, and local to this thread
            if torch is not None:
                torch.set_num_threads(threads)
            if args.threads is not None and controller is not None:
                blas_limiter = controller.limit(limits=threads, user_api="blas")
            return _run(args, convcore, specs, torch, threadpoolctl, controller, threads, repeat, scaling, smoke)
    finally:
        if torch is not None:
            torch.set_num_threads(saved_torch)
        if blas_limiter is not None:
            blas_limiter.restore_original_limits()


def _run(args, convcore, specs, torch, threadpoolctl, controller, threads, repeat, scaling, smoke) -> int:
    info, facts = convcore.info(), machine._machine()
    _, flags = machine.cpu_info()
    facts["sgemm"] = machine._calibrate(controller, threads, size=256 if smoke else 1024, warm=not smoke)
    facts["fma_peak"] = machine._fma_peak(threads, 0.02 if smoke else 0.3)
    facts["onnxruntime"] = None if args.no_ort else cases.onnxruntime_version()
    pools = threadpoolctl.threadpool_info() if threadpoolctl is not None else None
    blas_threads = next((p.get("num_threads") for p in pools or [] if p.get("user_api") == "blas"),
                        info["blas"].get("threads"))
    thread_counts = {"convcore": threads, "blas": blas_threads,
                     "torch": torch.get_num_threads() if torch is not None else None}
    lines, warnings = machine._header(info, facts, thread_counts, torch, flags, smoke)
    date = datetime.datetime.now().astimezone()
    print("\n".join(lines))
    for w in warnings:
        print("WARNING: " + w)
    print(f"run {date:%Y-%m-%d %H:%M %Z}: {len(specs)} cases, medians of {repeat} interleaved rounds x "
          f"{_BLOCK} timed calls per contender" + (", with 1-thread scaling" if scaling else ""))
    if controller is None and (scaling or args.threads):
        print("note: threadpoolctl is not installed: --threads and the 1-thread runs set convcore's and torch's "
              "threads only; numpy's BLAS keeps its own count")
    monitor, cores = machine._CpuMonitor(), facts["cores_available"] or 1
    start = monitor.snapshot()
    results, skipped, group = [], [], None
    for spec in specs:
        key = (spec.group, spec.smoke)
        if key != group:
            group = key
            print(f"\n{spec.group}: {cases.describe(spec.group, spec.smoke)}")
            print(report._table_head(threads, scaling))
        try:
            case = spec.build(torch=torch is not None, ort=facts["onnxruntime"] is not None)
        except cases.Unavailable as exc:
            print(f"  {spec.op:<12}skipped: {exc}")
            skipped.append({"case": spec.name, "reason": str(exc)})
            continue
        r = timing.run_case(case, repeat, controller, scaling, monitor, cores, warm=not smoke,
                            peak_gflops=(facts["fma_peak"] or {}).get("gflops"))
        del case
        results.append(r)
        print(report._row(r, scaling), flush=True)
    foreign = monitor.foreign(start, monitor.snapshot(), cores)
    if any((r.get("foreign_cpu") or 0) > report._NOISY for r in results):
        print(f"\n! other processes used more than {report._NOISY:.0%} of the CPU while this case ran")
    summary = report.summarize(results)
    print()
    print("\n".join(report._summary_lines(summary)))
    if foreign is not None:
        print(f"other processes used {foreign:.0%} of the machine's CPU during the run")
    if args.json:
        doc = report._json_doc(date, sys.argv[1:], facts, info, thread_counts, pools, torch, repeat, scaling,
                               warnings, foreign, results, skipped, summary)
        report._write_json(args.json, doc)
        print(f"wrote {args.json}")
    if args.plot and results:
        plural = "s" if threads > 1 else ""
        plot.chart(results, args.plot, f"convcore bench {date:%Y-%m-%d}: {facts['cpu']}, {threads} thread{plural}")
        print(f"wrote {args.plot}")
    return 0
