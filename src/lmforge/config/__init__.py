"""Load a YAML config plus dotted command-line overrides, remembering where each value came from."""

from lmforge.config.loader import RawConfig, load_config, parse_overrides
from lmforge.config.validate import validate_config

__all__ = ["RawConfig", "load_config", "parse_overrides", "validate_config"]
