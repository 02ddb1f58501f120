"""KPIG (ACL 2025, METHODS.md §4; a reconstruction from the paper's abstract and figures): key parts of
instructions (keyparts.py), the information gain they give on the correct response (infogain.py),
instruction variants (variants.py), the IG-driven replay strategy (strategy.py) and the refined
training objective (objective.py)."""
