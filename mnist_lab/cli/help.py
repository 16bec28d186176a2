"""`--help` for every command, as Hydra renders it from `conf/hydra/help/<command>.yaml`, without
Hydra's listing of its own config groups (a second's work on 2 cores, for text the page never shows)."""

from __future__ import annotations

import string
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mnist_lab.cli.command_line import CommandLine
from mnist_lab.cli.overrides import first_values


def config_groups(config_dir: str) -> str:
    """`group: option, option` lines for every config group of the app (Hydra's $APP_CONFIG_GROUPS)."""
    root = Path(config_dir)
    folders = {p.parent.relative_to(root).as_posix() for p in root.rglob("*.yaml") if p.parent != root}
    groups = sorted(g for g in folders if g.split("/")[0] != "hydra")
    return "".join(f"{g}: {', '.join(sorted(p.stem for p in (root / g).glob('*.yaml')))}\n" for g in groups)


def render_help(config_dir: str, name: str, line: CommandLine) -> str:
    """The command's help page, with the command line's overrides applied to the values it shows."""
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose(name, overrides=first_values(line), return_hydra_config=True)
    template = string.Template(cfg.hydra.help.template)
    config = OmegaConf.to_yaml({k: v for k, v in cfg.items() if k != "hydra"}, resolve=False)
    return template.safe_substitute(APP_CONFIG_GROUPS=config_groups(config_dir), CONFIG=config, FLAGS_HELP="")
