"""citune: continual instruction tuning of large language models."""
import os as _os

# Nothing may be downloaded at run time: weights and data are local.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
