"""The pydantic settings every params model and request body shares."""

from pydantic import ConfigDict

#: unknown keys are errors, and every float must be finite (NaN and infinity are refused by name)
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
