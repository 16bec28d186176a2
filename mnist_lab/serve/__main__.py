"""`python -m mnist_lab.serve [overrides]`: draw a digit in the browser, watch the model read it."""

from __future__ import annotations

from omegaconf import DictConfig

from mnist_lab.cli.command import run_command


def serve(cfg: DictConfig) -> None:
    """Check the checkpoint's path and take the port, then load the model and serve until interrupted."""
    from mnist_lab.checkpoints.paths import resolve_checkpoint
    from mnist_lab.serve.limits import check_limits
    from mnist_lab.serve.sockets import listen

    check_limits(cfg.request_timeout_s, cfg.max_connections)
    checkpoint = resolve_checkpoint(cfg.ckpt_path, cfg.outputs_dir)  # a wrong path or port answers before torch loads
    with listen(cfg.host, cfg.port) as sock:
        from mnist_lab.serve.app import serve  # the web stack loads only once both are known good

        serve(cfg, checkpoint, sock)


def main() -> None:
    """`python -m mnist_lab.serve [overrides]`."""
    run_command("serve", serve)


if __name__ == "__main__":
    main()
