"""Generation, scores and continual-learning metrics."""
