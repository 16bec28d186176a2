"""Around `trainer.fit`: callbacks, config checks, the machine's fast arithmetic, a fit over several
processes (launch checks, how it ended), and what the loggers get."""
