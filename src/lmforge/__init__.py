"""lmforge: adapt pretrained language models to real tasks and decode from them well — offline."""

__version__ = "0.1.0"
