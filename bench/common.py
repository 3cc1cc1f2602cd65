"""What the benchmark scripts share: where the repository and SST-2 are, running `lmforge`, mean ± std."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SST2_DIR = ROOT / ".." / "shared" / "data" / "sst2"
SST2_CONFIG = ROOT / "examples" / "sst2.yaml"


def require_sst2() -> None:
    """Exit with a one-line reason when the optional SST-2 copy is absent."""
    if not (SST2_DIR / "train.tsv").is_file():
        sys.exit(f"SST-2 not found at {SST2_DIR} (this benchmark needs it)")


def lmforge(*args: str) -> None:
    """Run the CLI in a child process from the repository root (its stdout discarded, stderr shown)."""
    subprocess.run([sys.executable, "-m", "lmforge.cli", *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def mean_std(values: list[float], scale: float = 100.0) -> str:
    """'mean ± sample std' of `values` × `scale`, two decimals."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.2f} ± {scale * spread:.2f}"
