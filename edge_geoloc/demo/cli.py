"""``edge-geoloc demo``: fly, log, adapt, redeploy on the synthetic world, with a report.

Examples::

    edge-geoloc demo                     # full profile (< 10 min on 2 CPU cores)
    edge-geoloc demo --quick             # tiny models, small areas, short flight (about 2 min)
    edge-geoloc demo --vehicle car       # a car's urban drive (ground panorama, no retrieval) through the loop
    edge-geoloc demo --from-step 5       # reuse steps 1-4 of the latest run in --out, redo 5 and 6
    edge-geoloc demo --seed 3 --out /tmp/demo --set flight.duration_s=60
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from edge_geoloc.config import ConfigError, load_config, save_config
from edge_geoloc.demo.config import VEHICLES, DemoConfig, default_config_path
from edge_geoloc.demo.layout import RunLayout
from edge_geoloc.demo.runfolder import StepOutputError, latest_run_with, new_run_dir, step_dir_name
from edge_geoloc.demo.runner import Step, check_from_step, run_steps
from edge_geoloc.demo.steps import demo_steps, print_summary

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The command's options (see the module docstring for examples)."""
    parser = argparse.ArgumentParser(prog="edge-geoloc demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models, small areas, short flight (~2 min)")
    parser.add_argument("--vehicle", choices=VEHICLES, default=None,
                        help="drone (default) or car: picks configs/demo[_car][_quick].yaml; must match --config's")
    parser.add_argument("--from-step", type=int, default=1, metavar="N", choices=range(1, 7),
                        help="reuse steps 1..N-1 from an earlier run (checked by sha256), run N and later (1-6)")
    parser.add_argument("--reuse", type=Path, default=None, metavar="RUN_DIR",
                        help="the run to take earlier steps from (default: the latest run in --out)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="parent of the timestamped run folders")
    parser.add_argument("--cache", type=Path, default=None, help="cache of generated areas (default: OUT/cache)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the areas, flight and training")
    parser.add_argument("--config", type=Path, default=None,
                        help="demo YAML (default: configs/demo.yaml, or configs/demo_quick.yaml with --quick)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set flight.duration_s=60 (repeatable)")
    return parser


def resolve_config(args: argparse.Namespace) -> DemoConfig:
    """The demo config from --config/--quick, --set overrides and --seed."""
    path = args.config or default_config_path(args.quick, vehicle=args.vehicle or "drone")
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    config = load_config(DemoConfig, path, overrides)
    if args.vehicle is not None and config.vehicle != args.vehicle:
        raise ConfigError(f"--vehicle {args.vehicle} but {path} says vehicle: {config.vehicle}; drop one of them")
    return config


def find_reuse_run(args: argparse.Namespace, steps: list[Step]) -> Path | None:
    """The run ``--from-step`` takes steps from: ``--reuse``, else the newest run under ``--out`` that has them."""
    if args.reuse is not None:
        if not args.reuse.is_dir():
            raise StepOutputError(f"--reuse {args.reuse} is not a folder; pass a run folder under {args.out}")
        return args.reuse
    needed = [step_dir_name(s.number, s.name) for s in steps if s.number < args.from_step]
    return latest_run_with(args.out, needed)


def _limit_threads(threads: int) -> None:
    """CPU-sized run: few threads, and no model hub access (every model is built with pretrained=False)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(threads)


def _attach_log_file(run_dir: Path) -> tuple[logging.Handler, int]:
    """Log everything at INFO and above into ``run_dir/demo.log``; returns the handler and the old root level."""
    root = logging.getLogger()
    handler = logging.FileHandler(run_dir / "demo.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    old_level = root.level
    if old_level > logging.INFO or old_level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler, old_level


def run_demo(args: argparse.Namespace) -> Path:
    """Run the demo into a new run folder and return it."""
    config = resolve_config(args)
    steps = demo_steps(config.vehicle)
    reuse = find_reuse_run(args, steps) if args.from_step > 1 else None
    check_from_step(steps, args.from_step, reuse)
    run_dir = new_run_dir(args.out)
    handler, old_level = _attach_log_file(run_dir)
    try:
        save_config(config, run_dir / "config.yaml")
        log.info("demo run folder: %s (%s, profile %s, seed %d)", run_dir.resolve(), config.vehicle, config.profile,
                 config.seed)
        _limit_threads(config.threads)
        run_steps(steps, run_dir, config, args.cache or args.out / "cache", args.from_step, reuse)
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(old_level)
        handler.close()
    print_summary(run_dir)
    return run_dir


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``edge-geoloc demo``; returns 0, or 2 with a one-line reason on a clear failure."""
    args = build_parser().parse_args(argv)
    try:
        run_dir = run_demo(args)
    except (ConfigError, StepOutputError) as err:
        print(f"edge-geoloc demo: {err}", file=sys.stderr)
        return 2
    print(f"\nrun folder: {run_dir.resolve()}\nreport:     {RunLayout(run_dir).report_html.resolve()}")
    return 0
