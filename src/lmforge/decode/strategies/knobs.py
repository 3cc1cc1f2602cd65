"""Knobs that more than one strategy reads: one definition each, so the `decode:` section has one field."""

from __future__ import annotations

from pydantic import Field

TOP_K = Field(None, gt=0, description="sample: draw only from the k most likely tokens; contrastive: candidates per "
                                      "step (default 4).")
NUM_RETURN_SEQUENCES = Field(1, ge=1, description="beam/sample: outputs per prompt.")
