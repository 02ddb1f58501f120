"""citune: continual instruction tuning of large language models."""
import os as _os

# Nothing may be downloaded at run time: weights and data are local.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP threads that spin while waiting starve each other on shared cores (a tiny run: 116 s vs 10 s).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
