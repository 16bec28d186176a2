"""Around `trainer.fit`: callbacks, config checks, the machine's fast arithmetic, how a fit ended,
what the loggers get, and the opt-in stacked steps."""
