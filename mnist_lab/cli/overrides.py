"""Check a command line's overrides before Hydra runs it, so that a typo gets one line with a
suggestion instead of Hydra's raw message."""

from __future__ import annotations

import difflib
import re
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from mnist_lab.cli.command_line import CommandLine
from mnist_lab.errors import UserError

# Config options that come from Hydra plugins of the `sweeps` extra.
PLUGIN_OPTIONS = {
    "hydra/launcher": ("joblib", "submitit_local", "submitit_slurm", "slurm"),
    "hydra/sweeper": ("optuna",),
    "hparams_search": ("optuna",),
}


def first_values(line: CommandLine) -> list[str]:
    """A sweep's overrides with each swept value replaced by its first, so that one job composes."""
    single = []
    for text, override in zip(line.texts, line.overrides or []):
        if override.is_sweep_override():
            values = list(override.sweep_string_iterator()) if override.is_choice_sweep() else []
            if not values:
                continue  # ranges and intervals: the key is checked by the search itself
            text = f"{override.get_key_element()}={values[0]}"
        single.append(text)
    return single


def dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every key of a config as a dotted path: trainer, trainer.max_epochs, ..."""
    keys = []
    if isinstance(node, dict):
        for key, value in node.items():
            keys.append(f"{prefix}{key}")
            keys += dotted_keys(value, f"{prefix}{key}.")
    return keys


def suggestion(word: str, candidates: list[str]) -> str:
    """`; did you mean X?` for the closest candidate, or nothing."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def check_overrides(config_dir: str, config_name: str, line: CommandLine, command: str) -> None:
    """Compose `config_name` with the command line's overrides; raise UserError with one line naming an
    unknown key or config option, the closest existing one, and the fix."""
    if line.runs_nothing or line.overrides is None:
        return  # Hydra prints what was asked, or its own precise words on the syntax
    overrides = first_values(line)
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            try:
                compose(config_name, overrides=overrides, return_hydra_config=True)
            except MissingConfigException as err:
                raise UserError(missing_option(err, command)) from err
            except ConfigCompositionException as err:
                match = re.search(r"Could not override '([^']+)'", str(err))
                if match is None:
                    return
                key = match.group(1)
                base = compose(
                    config_name,
                    overrides=[o for o in overrides if not o.lstrip("+").startswith(key)],
                    return_hydra_config=True,
                )
                groups = list(base.hydra.runtime.choices) if "." not in key else []  # modle -> model
                keys = dotted_keys(OmegaConf.to_container(base, resolve=False))
                hint = suggestion(key, groups) or suggestion(key, keys)
                raise UserError(
                    f"{key} is not a setting of {command}{hint} "
                    f"(`{command} --cfg job` lists them; +{key}=... adds a new one)"
                ) from err
    except UserError:
        raise
    except Exception:  # anything else: let Hydra itself compose and report it
        return


def missing_option(err: MissingConfigException, command: str) -> str:
    """One line for `group=option` where the option does not exist (or needs an extra)."""
    missing = getattr(err, "missing_cfg_file", None) or ""
    group, _, option = missing.rpartition("/")
    options = sorted(getattr(err, "options", None) or [])
    if option in PLUGIN_OPTIONS.get(group, ()) or (group == "hydra/sweeper" and option == "optuna"):
        return (
            f"{group}={option} needs the Hydra plugins of the sweeps extra: "
            f'pip install -e ".[sweeps]" (or pip install "mnist_lab[sweeps]")'
        )
    if not group:
        return f"{missing}: no such config; {err}"
    listed = ", ".join(options) if options else "none"
    return f"{group}={option} is not an option of {command}{suggestion(option, options)} (options: {listed})"
