"""`resume=<run folder>`: the command line that continues a training run in its own folder."""

from __future__ import annotations

import sys
from pathlib import Path

from mnist_lab.checkpoints.paths import LAST, CheckpointError, newest_run
from mnist_lab.checkpoints.trust import normalise
from mnist_lab.cli.command_line import CommandLine, read_command_line
from mnist_lab.cli.run_lock import check_free
from mnist_lab.errors import UserError


def resume(line: CommandLine) -> CommandLine:
    """Rewrite `resume=<run folder>` into Hydra arguments that rerun that folder's own config, in
    that folder, from its checkpoints/last.ckpt (start.ckpt if it stopped in its first epoch), or
    when that cannot be read, from the newest checkpoint there that can, saying so.
    Other overrides may change values (not config groups), e.g. trainer.max_epochs=40. The folder's
    config and checkpoint come from elsewhere: they may name only trusted code (`trust=[...]` adds)."""
    spec = line.value("resume")
    if spec is None:
        return line
    try:
        run = (newest_run(Path("outputs")) if spec == "latest" else Path(str(spec)).expanduser()).resolve()
    except UserError as err:
        raise UserError(str(err).replace("ckpt_path=latest", "resume=latest")) from err
    if not (run / ".hydra" / "config.yaml").is_file():
        raise UserError(f"resume={run}: not a mnist_lab run folder (no .hydra/config.yaml); give the folder of a run")
    check_free(run)  # before a checkpoint is read or a line logged: another run writes there now
    from mnist_lab.checkpoints.load import resume_from  # reads the checkpoints with torch

    try:
        point = resume_from(run, normalise(line.value("trust")))
    except CheckpointError as err:
        raise CheckpointError(f"resume={run}: {err}") from err
    if point is None:
        raise UserError(f"resume={run}: no checkpoints/{LAST} to resume from; start a new run instead")
    if point.fallback:
        print(f"warning: resume={run}: {point.fallback}", file=sys.stderr, flush=True)
    last = point.path
    return read_command_line(
        [
            line.program,
            *line.flags,
            "--config-path",
            str(run / ".hydra"),
            "--config-name",
            "config",
            f"hydra.run.dir={run}",
            "hydra.output_subdir=null",
            "hydra.job.name=train",
            f"++ckpt_path={last}",
            *line.without("resume"),
        ]
    )
