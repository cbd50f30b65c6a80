"""Guidance: transforms of a score function (classifier guidance, classifier-free guidance)."""
