"""One module per CLI command (train, sample, eval, report): thin, built on ``sdegen.runtime``; no command
imports another."""
