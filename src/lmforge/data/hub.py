"""`hf:namespace/name[:config][@split]` data paths: a dataset from the Hugging Face hub, only with
`data.allow_network: true`. It is downloaded once through `datasets`, saved as an Arrow folder in
lmforge's cache and read from there like any `save_to_disk` folder (offline afterwards)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from lmforge.errors import DataError

HUB_PREFIX = "hf:"
HUB_ID = re.compile(r"^hf:(?P<name>[\w.-]+(/[\w.-]+)?)(:(?P<config>[\w.-]+))?(@(?P<split>[\w.\[\]:%-]+))?$")


def cache_root() -> Path:
    return Path(os.environ.get("LMFORGE_CACHE", Path.home() / ".cache" / "lmforge")) / "hub-datasets"


def hub_folder(spec: str, allow_network: bool) -> str:
    """The local Arrow folder holding the hub dataset `spec` names (downloaded on first use)."""
    match = HUB_ID.match(spec)
    if match is None:
        raise DataError(f"{spec}: write a hub dataset as hf:namespace/name, hf:namespace/name:config or "
                        "hf:namespace/name:config@split (split default: train)")
    name, config, split = match["name"], match["config"], match["split"] or "train"
    folder = cache_root() / name.replace("/", "--") / (config or "default") / split.replace("/", "_")
    if (folder / "dataset_info.json").is_file():
        return str(folder)
    if not allow_network:
        raise DataError(f"{spec} is a Hugging Face hub dataset and downloads are off; set data.allow_network=true to "
                        f"fetch it once (cached in {cache_root()}), or point at a local file")
    from datasets import load_dataset

    try:
        dataset = load_dataset(name, config, split=split)
    except Exception as error:  # noqa: BLE001 — network, missing dataset or config: all one line for the user
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise DataError(f"{spec}: could not load it from the hub ({first}); check the name, config and split, and "
                        "the network") from None
    dataset.save_to_disk(str(folder))
    return str(folder)
