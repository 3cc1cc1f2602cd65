"""A task's label set written into, and read back from, a model's HF config (id2label/label2id)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, PretrainedConfig

from lmforge.errors import ConfigError


def set_labels(config: PretrainedConfig, labels: list[str]) -> PretrainedConfig:
    """Name the model's outputs (num_labels follows from id2label)."""
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    return config


def config_with_labels(path: str, labels: list[str], local_files_only: bool, trust_remote_code: bool) -> PretrainedConfig:
    """The config at `path` with a head sized and named for `labels`."""
    config = AutoConfig.from_pretrained(path, local_files_only=local_files_only, trust_remote_code=trust_remote_code)
    return set_labels(config, labels)


#: a PEFT run's model/ keeps its labelled config here, not as model/config.json: a config.json there would make
#: transformers (pipeline, from_pretrained) take the adapter folder for a whole model
LABELLED_CONFIG_DIR = "head"


def labelled_config_dir(model_dir: Path) -> Path:
    """Where a saved model's labelled config is: model/head/ for an adapter, else the folder itself."""
    head = Path(model_dir) / LABELLED_CONFIG_DIR
    return head if (head / "config.json").is_file() else Path(model_dir)


def saved_labels(model_dir: Path) -> list[str]:
    """The label set a trained model was saved with, in output order."""
    config = AutoConfig.from_pretrained(labelled_config_dir(model_dir), local_files_only=True)
    return [config.id2label[i] for i in range(len(config.id2label))]


def label_meaning(labels: list[str], chosen: str | None, names: tuple[str, ...], setting: str, meaning: str) -> str:
    """The label that means `meaning`: `chosen` (the value of `setting`) when given, else the one label whose
    lower-cased name is in `names`; a ConfigError naming `setting` when neither settles it."""
    if chosen is not None:
        if chosen not in labels:
            raise ConfigError(f"{setting}: {chosen!r} is not one of the labels {labels}")
        return chosen
    named = [label for label in labels if label.lower() in names]
    if len(named) != 1:
        raise ConfigError(f"{setting}: say which of the labels {labels} {meaning}")
    return named[0]

