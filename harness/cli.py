"""`harness`: run a scenario, check or report a saved run, remove leftovers.

Exit status: 0 every verdict holds; 1 a verdict failed; 2 bad usage or environment.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from harness.errors import HarnessError

EXIT_OK, EXIT_VERDICT, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"harness: {message} (see harness --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected N >= 1, got {n}")
    return n


def _param(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=N with a whole number N, got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="harness", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run a scenario and check it")
    r.add_argument("scenario")
    _app_argument(r)
    r.add_argument("--backend", default="process", choices=["process", "docker"])
    r.add_argument("--workers", type=_positive)
    r.add_argument("--seed", type=int, default=7)
    r.add_argument("--out", type=Path, help="run directory (default runs/<scenario>-<time>-s<seed>)")
    r.add_argument("--param", type=_param, action="append", default=[], metavar="NAME=N",
                   help="a scenario knob, e.g. --param jobs=5 for dedup-verify (see harness list)")  # fmt: skip
    r.add_argument(
        "--server-bin", help="Resonate server binary (default: what `harness setup` installed, or $RESONATE_SERVER_BIN)"
    )  # fmt: skip
    c = sub.add_parser("check", help="recompute the verdicts of a saved run")
    c.add_argument("run_dir", type=Path)
    rep = sub.add_parser("report", help="render the report of a saved run")
    rep.add_argument("run_dir", type=Path)
    sub.add_parser("down", help="remove processes and containers a crashed run left behind")
    sub.add_parser("list", help="list the scenarios")
    i = sub.add_parser("init", help="draft DIR/harness.toml from the app's files (read, never run)")
    i.add_argument(
        "dir", nargs="?", default=".", type=Path, metavar="DIR", help="the app's directory (default .)"
    )
    i.add_argument("--force", action="store_true", help="overwrite an existing harness.toml")
    i.add_argument("--stdout", action="store_true", help="print the draft instead of writing it")
    s = sub.add_parser("setup", help="install the Resonate server and Toxiproxy into the user's cache, once")
    s.add_argument("--docker", action="store_true", help="also make a Docker daemon answer (root: docker.io)")
    s.add_argument("--force", action="store_true", help="rebuild even what is installed")
    d = sub.add_parser("dedup", help="dedup verification: J jobs x K duplicates (concurrent, late, after a "
                                     "Lambda died), one root promise and one execution per job")  # fmt: skip
    d.add_argument("--jobs", type=_positive, default=20, help="J unique jobs (default 20)")
    d.add_argument(
        "--copies", type=_at_least_2, default=10, help="K submissions per job, K >= 2 (default 10)"
    )
    _app_argument(d)
    d.add_argument("--backend", default="process", choices=["process", "docker"])
    d.add_argument("--workers", type=_positive)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--out", type=Path, help="run directory (default runs/dedup-verify-<time>-s<seed>)")
    d.add_argument("--server-bin", help="Resonate server binary")
    b = sub.add_parser("bench", help="open-loop throughput benchmark through the gateway (or --compare A B)")
    from harness.bench import add_arguments

    add_arguments(b)
    z = sub.add_parser("fuzz", help="malformed requests to the app's handler through the gateway")
    _app_argument(z)
    z.add_argument("--backend", default="process", choices=["process", "docker"])
    z.add_argument("--seed", type=int, default=7, help="the corpus's seed (same seed, same corpus)")
    z.add_argument("--out", type=Path, help="run directory (default runs/fuzz-<time>-s<seed>)")
    z.add_argument("--cases", type=_positive, help="N cases, a few of every kind (default: the whole corpus)")
    z.add_argument("--deadline", type=float, default=30.0, help="seconds for accepted jobs to be done (30)")
    z.add_argument("--server-bin", help="Resonate server binary")
    return p


def _app_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--app", type=Path, metavar="DIR",
                   help="the app under test: a directory with harness.toml (default: the reference app)")  # fmt: skip


def _at_least_2(text: str) -> int:
    n = _positive(text)
    if n < 2:
        raise argparse.ArgumentTypeError(f"expected K >= 2, got {n}")
    return n


def _print_results(results: dict, run_dir: Path) -> int:
    for name, v in results["verdicts"].items():
        print(f"{'PASS' if v['ok'] else 'FAIL'}  {name:13} {v['detail']}")
    figs = ", ".join(f"{k}={v}" for k, v in results.get("figures", {}).items())
    print(f"figures: {figs}")
    print(f"run directory: {run_dir}")
    return EXIT_OK if all(v["ok"] for v in results["verdicts"].values()) else EXIT_VERDICT


def _dedup(args: argparse.Namespace) -> int:
    from harness import dedup
    from harness.runner import run

    dedup.validate(args.jobs, args.copies)
    res = run("dedup-verify", app=args.app, backend=args.backend, workers=args.workers, seed=args.seed, out=args.out,
              server_bin=args.server_bin, params={"jobs": args.jobs, "copies": args.copies})  # fmt: skip
    _render(res.run_dir)
    dedup.print_table(res.results["dedup_jobs"])
    return _print_results(res.results, res.run_dir)


def _down() -> int:
    """Remove what crashed runs left: processes whose harness died, and their containers."""
    from harness.cluster.process import reap_orphans

    killed = reap_orphans()
    print(f"harness down: removed {len(killed)} leftover processes")
    try:
        from harness.cluster.docker import remove_leftovers

        removed = remove_leftovers()
    except HarnessError as e:  # no Docker daemon: nothing of ours can be running there
        print(f"harness down: Docker not checked ({e.expected})")
        return EXIT_OK
    for item in removed:
        print(f"harness down: removed {item}")
    print(f"harness down: removed {len(removed)} leftover Docker resources")
    return EXIT_OK


def _render(run_dir: Path) -> None:
    from reports import render

    try:
        render(run_dir)
    except Exception as e:  # the verdicts stand even if a picture cannot be drawn
        print(
            f"harness: the report could not be rendered ({e!r}); try: harness report {run_dir}",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # SIGTERM behaves like Ctrl-C, so clusters are torn down on either.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if args.cmd == "run":
            from harness.runner import run

            res = run(args.scenario, app=args.app, backend=args.backend, workers=args.workers, seed=args.seed, out=args.out,
                      server_bin=args.server_bin, params=dict(args.param))  # fmt: skip
            _render(res.run_dir)
            return _print_results(res.results, res.run_dir)
        if args.cmd == "check":
            from harness.runner import check_run

            return _print_results(check_run(args.run_dir), args.run_dir)
        if args.cmd == "report":
            from reports import render

            for path in render(args.run_dir):
                print(path)
            return EXIT_OK
        if args.cmd == "down":
            return _down()
        if args.cmd == "init":
            from harness.app.init import run as init_app

            return init_app(args.dir, force=args.force, stdout=args.stdout)
        if args.cmd == "setup":
            from harness.install import setup

            setup(docker=args.docker, force=args.force)
            return EXIT_OK
        if args.cmd == "dedup":
            return _dedup(args)
        if args.cmd == "bench":
            from harness.bench import main as bench_main

            return bench_main(args)
        if args.cmd == "fuzz":
            from harness.fuzz.run import main as fuzz_main

            return fuzz_main(args)
        if args.cmd == "list":
            from harness.runner import load_scenarios

            for name, sc in sorted(load_scenarios().items()):
                print(f"{name:22} {sc.description.splitlines()[0] if sc.description else ''}")
            return EXIT_OK
    except HarnessError as e:
        print(f"harness: {e.oneline()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("harness: interrupted; cluster torn down", file=sys.stderr)
        return 130
    except json.JSONDecodeError as e:
        print(f"harness: a run directory with readable JSON files; seen: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
