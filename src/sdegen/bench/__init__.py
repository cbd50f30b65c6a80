"""Benchmark building blocks shared by ``scripts/bench_*.py`` and the tests: the one-component Gaussian
error models (``gaussian``), the benchmark mixtures and the paired solver error (``mixtures``), samplers
scored by the digit judge on MNIST checkpoints (``mnist``) and the training-throughput loops (``train``).
The scripts hold only their command lines, tables and figures."""
