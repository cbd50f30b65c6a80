"""Score models: the exact Gaussian-mixture score and trained networks."""
