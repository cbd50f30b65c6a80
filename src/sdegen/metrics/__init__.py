"""Metrics: sample distances for the exact test bed, likelihoods, FID/IS."""
