"""Around `trainer.fit`: callbacks, config checks, the machine's fast arithmetic, how a fit ended,
and what the loggers get."""
