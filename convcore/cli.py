"""The ``convcore`` command: ``convcore demo | bench | info``.

Each subcommand lives in its own module (``convcore.bench`` is a package), which provides
``add_arguments(parser)`` and ``run(args) -> int``; they are imported only when used, so
``convcore info`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

_SUBCOMMANDS = {
    "demo": ("convcore.demo", "train a CNN and an autoencoder on the bundled digits, attack them"),
    "bench": ("convcore.bench", "benchmark the kernels: cython vs numpy (vs torch when installed)"),
}


def _run_info(args) -> int:
    import convcore

    info = convcore.info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{key:<{width}}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convcore", description="convcore: a CPU CNN engine.")
    sub = parser.add_subparsers(dest="command", metavar="{demo,bench,info}")
    sub.required = True
    p_info = sub.add_parser("info", help="show version, backend, OpenMP, threads, numpy and BLAS")
    p_info.add_argument("--json", action="store_true", help="print as JSON")
    p_info.set_defaults(func=_run_info)
    for name, (module_name, help_text) in _SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a broken optional piece must not take `convcore info` down
            p = sub.add_parser(name, help=f"{help_text} (unavailable: {exc})")
            p.set_defaults(func=lambda args, exc=exc: parser.error(f"unavailable: {exc}"))
            continue
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or name).splitlines()[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
