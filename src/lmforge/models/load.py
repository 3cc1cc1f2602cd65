"""Load tokenizers (with a pad token) from a resolved reference."""

from __future__ import annotations

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lmforge.errors import ModelError


def load_tokenizer(path: str, local_files_only: bool = True, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The model's tokenizer; decoder-only models without a pad token pad with EOS."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a tokenizer from {path}: {str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"the tokenizer in {path} has neither a pad nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
