"""`python -m mnist_lab.serve [overrides]`: draw a digit in the browser, watch the model read it."""

from __future__ import annotations

from omegaconf import DictConfig

from mnist_lab.cli.command import run_command, run_folder


def serve(cfg: DictConfig) -> None:
    """Load the checkpoint and serve the page and the API until interrupted."""
    from mnist_lab.serve.app import serve  # the web stack loads only once the config is composed

    serve(cfg, run_folder())


def main() -> None:
    """`python -m mnist_lab.serve [overrides]`."""
    run_command("serve", serve)


if __name__ == "__main__":
    main()
