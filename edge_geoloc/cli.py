"""``edge-geoloc <command> ...``: one entry point, each command implemented in its own module.

A command module exposes ``main(argv: list[str]) -> int`` with its own argparse parser; it is imported only
when that command runs, so ``edge-geoloc sim`` never pays for torch's import.
"""

from __future__ import annotations

import importlib
import logging
import sys

# command -> (module, one-line help); a nested dict is a command group (e.g. ``train retrieval``).
COMMANDS: dict[str, tuple[str, str] | dict[str, tuple[str, str]]] = {
    "sim": ("edge_geoloc.sim.cli", "generate synthetic areas, datasets and flights"),
    "train": {
        "retrieval": ("edge_geoloc.train.retrieval_cli", "train the CSP-HD drone<->satellite retrieval model"),
        "localizer": ("edge_geoloc.train.localizer_cli", "train the coarse-to-fine heat-map localizer"),
    },
    "eval": {
        "retrieval": ("edge_geoloc.evaluate.retrieval_cli", "R@k and AP of a retrieval checkpoint"),
        "localizer": ("edge_geoloc.evaluate.localizer_cli", "metric errors of a localizer checkpoint"),
    },
    "adapt": ("edge_geoloc.train.adapt_cli", "adapt the localizer to a new area without ground truth"),
    "export": ("edge_geoloc.export.cli", "export a checkpoint to ONNX (parity-gated); `export check` audits"),
    "build-engine": ("edge_geoloc.export.engine_cli", "build a TensorRT engine on the target device"),
    "build-index": ("edge_geoloc.runtime.index_cli", "cut and embed geo-referenced tiles into an index"),
    "run": ("edge_geoloc.runtime.replay_cli", "replay a flight (frames + NMEA) through the pipeline"),
    "dataset": ("edge_geoloc.fieldlog.dataset_cli", "build training datasets from field logs"),
    "fieldlog": ("edge_geoloc.fieldlog.fieldlog_cli", "`fieldlog recover`: complete the bags of a crashed field log"),
    "replay-bag": ("edge_geoloc.interop.replay_bag", "play a rosbag2 through the pipeline into a new bag"),
    "flight-to-bag": ("edge_geoloc.interop.flight_bag", "write a flight folder (frames + NMEA) as a rosbag2"),
    "demo": ("edge_geoloc.demo.cli", "fly, log, adapt, redeploy on the synthetic world, with a report"),
}


def _usage(table: dict, prefix: str) -> str:
    width = max(len(name) for name in table) + 2
    lines = [f"usage: {prefix} <command> [options]", "", "commands:"]
    for name, entry in table.items():
        help_text = entry[1] if isinstance(entry, tuple) else "(" + ", ".join(entry) + ")"
        lines.append(f"  {name:<{width}}{help_text}")
    lines.append(f"\n`{prefix} <command> --help` shows a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    table: dict = COMMANDS
    prefix = "edge-geoloc"
    while True:
        if not argv or argv[0] in ("-h", "--help"):
            print(_usage(table, prefix))
            return 0 if argv else 2
        name, argv = argv[0], argv[1:]
        if name not in table:
            print(f"{prefix}: unknown command {name!r}\n\n{_usage(table, prefix)}", file=sys.stderr)
            return 2
        entry = table[name]
        prefix = f"{prefix} {name}"
        if isinstance(entry, dict):
            table = entry
            continue
        module = importlib.import_module(entry[0])
        return int(module.main(argv) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
