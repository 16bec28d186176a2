"""Command-line plumbing every command shares: one reading of the command line, Hydra's entry point,
typo checks, run folders, and user errors as one line."""
