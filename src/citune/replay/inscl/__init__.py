"""InsCL (NAACL 2024, METHODS.md §3): replay quotas from the Wasserstein distance between task
instruction embeddings (wasserstein.py), replayed data picked by InsInfo (insinfo.py) over instruction
tags (tagging.py)."""
