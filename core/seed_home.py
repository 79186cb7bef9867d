"""Copy kubelab's demo notebooks into a new, empty home once.

Run by the spawner's init container: ``python -m kubelab.core.seed_home /home/jovyan``.
A marker file makes it happen only once, even if the user deletes the notebooks.
"""
from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

MARKER = ".kubelab/seeded"


def seed(home: Path) -> list[str]:
    marker = home / MARKER
    if marker.exists():
        return []
    copied = []
    demo = resources.files("kubelab.core") / "demo_notebooks"
    for item in demo.iterdir():
        if item.name.endswith(".ipynb") and not (home / item.name).exists():
            with resources.as_file(item) as src:
                shutil.copyfile(src, home / item.name)
            copied.append(item.name)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("demo notebooks copied\n")
    return copied


if __name__ == "__main__":
    home = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    print("seeded:", ", ".join(seed(home)) or "nothing (already seeded)")
