"""``python -m devcluster.agent [run|cleanup] --state-dir DIR [--nodes F] [--images F]``."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..paths import REPO, State


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devcluster.agent", description=__doc__)
    parser.add_argument("command", nargs="?", choices=("run", "cleanup"), default="run",
                        help="run the agent (default) or clean up after it")
    parser.add_argument("--state-dir", type=Path, default=None, help="devcluster state dir (default .devcluster)")
    parser.add_argument("--nodes", type=Path, default=REPO / "devcluster" / "nodes.yaml")
    parser.add_argument("--images", type=Path, default=REPO / "devcluster" / "images.yaml")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    state = State(args.state_dir.resolve()) if args.state_dir else State.default()
    if args.command == "cleanup":
        from .cleanup import cleanup
        cleanup(state)
    else:
        from .agent import run_agent
        run_agent(state, args.nodes, args.images)


if __name__ == "__main__":
    main()
