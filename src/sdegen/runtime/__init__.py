"""What every command shares, each helper written once: device, run folder, config checks, checkpoints,
setup (score model from a checkpoint or the test bed), batched generation, loggers."""
