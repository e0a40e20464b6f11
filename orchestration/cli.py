"""`catalog-ops`: the project's command line (the sandbox now; more commands join it later)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from sandbox.options import OptionError, SandboxOptions, apply_options, parse_assignments


def _sandbox(args: argparse.Namespace) -> int:
    from sandbox.server import serve

    try:
        changes: dict = {"seed": args.seed, "products": args.products, **parse_assignments(args.set or [])}
        options = apply_options(SandboxOptions(), changes)
        faults = json.loads(args.faults) if args.faults else None
    except (OptionError, json.JSONDecodeError) as exc:
        print(f"catalog-ops sandbox: {exc}", file=sys.stderr)
        return 2
    serve(options, host=args.host, port=args.port, faults=faults)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from orchestration.demo import run

    return run(sandbox_port=args.sandbox_port, ui_port=args.port, products=args.products, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catalog-ops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sandbox = commands.add_parser("sandbox", help="serve the six services' sandbox on one local port")
    sandbox.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument("--seed", type=int, default=7)
    sandbox.add_argument("--products", type=int, default=2000)
    sandbox.add_argument("--set", action="append", metavar="NAME=VALUE",
                         help="any start option a contract names, e.g. plytix_token_ttl_s=60 (repeatable)")
    sandbox.add_argument("--faults", metavar="JSON",
                         help='fault specs per service, e.g. \'{"plytix": {"error_rate": 0.05}}\'')
    sandbox.set_defaults(func=_sandbox)
    demo = commands.add_parser("demo", help="sandbox + latest partition materialised + Dagster UI")
    demo.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    demo.add_argument("--sandbox-port", type=int, default=8765)
    demo.add_argument("--products", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_demo)
    from orchestration.webhooks import add_webhooks_command  # the Shopify webhook receiver

    add_webhooks_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
