"""Which code a file from elsewhere (a checkpoint, a run's saved config) may make mnist_lab run.

Rebuilding a model instantiates the `_target_`s its hyperparameters name, so a checkpoint could
name any callable. Before anything is built, every `_target_` must name something trusted: by
default mnist_lab's networks and augmentations and torch's optimizers and schedulers; the user
adds more with `trust=[...]` (an exact name, or a prefix ending in a dot, e.g. `my_pkg.`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

from hydra.utils import get_object  # how instantiate itself finds a _target_
from omegaconf import grammar_parser
from omegaconf.errors import GrammarParseError
from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser

from mnist_lab.errors import UserError

# What a checkpoint's hyperparameters may build: entries ending in "." are prefixes.
MODEL_TARGETS = (
    "mnist_lab.models.",
    "mnist_lab.data.augment.",
    "torch.optim.",
)
# What a saved run config may build as well (trainer, callbacks, loggers, data).
RUN_TARGETS = (
    *MODEL_TARGETS,
    "mnist_lab.data.datamodule.",
    "mnist_lab.training.callbacks.",
    "mnist_lab.training.checkpoint_io.AtomicCheckpointIO",
    "lightning.pytorch.Trainer",
    "lightning.pytorch.trainer.",
    "lightning.pytorch.callbacks.",
    "lightning.pytorch.loggers.",
    "mnist_lab.training.wandb_logger.WandbLogger",
    "lightning.pytorch.plugins.",
    "lightning.pytorch.strategies.",
    "lightning.pytorch.accelerators.",
    "lightning.pytorch.profilers.",
    "torchvision.datasets.",
    "datetime.timedelta",  # DDP's timeout (conf/trainer/ddp.yaml)
)
# Resolvers a saved run config may call: they read values, none of them builds config nodes.
RUN_RESOLVERS = frozenset(
    {"oc.env", "oc.select", "oc.dict.keys", "oc.dict.values", "now", "hydra", "mnist_lab.fast_precision"}
)


class TrustError(UserError):
    """A file names code that mnist_lab does not run unless the user trusts it."""


def _matches(name: str, entries: Sequence[str]) -> bool:
    return any(name.startswith(e) if e.endswith(".") else name == e for e in entries)


def _nodes(config: Any, where: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(key path, key, value) of every entry of nested dicts and lists."""
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for key, value in items:
        path = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key)
        yield path, key, value
        yield from _nodes(value, path)


def _resolvers(value: str) -> list[str]:
    """Names of the resolvers an OmegaConf string calls, e.g. ["oc.env"] for "${oc.env:HOME}"."""
    names: list[str] = []

    def walk(tree: Any) -> None:
        if isinstance(tree, OmegaConfGrammarParser.ResolverNameContext):
            names.append(tree.getText())
        for i in range(getattr(tree, "getChildCount", lambda: 0)()):
            walk(tree.getChild(i))

    walk(grammar_parser.parse(value))
    return names


def _canonical(target: str) -> str | None:
    """Where the object `target` names is defined (module.qualname), or None if it is not a
    class or function; `mnist_lab.models.nets.torch.os.makedirs` is `os.makedirs`, for one."""
    try:
        obj = get_object(target)
    except Exception:  # noqa: BLE001 - any failure to find it means it cannot be trusted
        return None
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qualname}" if isinstance(module, str) and isinstance(qualname, str) else None


def normalise(trust: str | Sequence[str] | None) -> list[str]:
    """The user's `trust` value as a list of names and prefixes."""
    if trust is None:
        return []
    entries = [trust] if isinstance(trust, str) else list(trust)
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip(". "):
            raise TrustError(
                f"trust={trust!r} must list dotted names or prefixes; write e.g. trust=[my_pkg.nets.MyNet,other_pkg.]"
            )
    return entries


def check_targets(
    config: Any,
    trusted_extra: str | Sequence[str] | None = (),
    *,
    source: str = "the checkpoint",
    trusted: Sequence[str] = MODEL_TARGETS,
    resolvers: Collection[str] = (),
) -> None:
    """Refuse `config` (nested dicts and lists) if it names a `_target_` that is neither in `trusted`
    nor in `trusted_extra`, or calls an OmegaConf resolver outside `resolvers`; call nothing it names."""
    extra = normalise(trusted_extra)
    for where, key, value in _nodes(config):
        if isinstance(value, str) and "${" in value:
            try:
                called = _resolvers(value)
            except GrammarParseError:
                called = []  # OmegaConf would refuse to resolve it too
            unsafe = [name for name in called if name not in resolvers]
            if unsafe:
                raise TrustError(
                    f"{source}: {where} calls the resolver {unsafe[0]!r}, which mnist_lab does not "
                    "resolve in a file it did not write; remove that value from the file"
                )
        if key != "_target_":
            continue
        if not isinstance(value, str) or "${" in value:
            raise TrustError(
                f"{source}: {where} is {value!r}, not the plain name of a class or function; "
                "remove that value from the file"
            )
        allowed = (*trusted, *extra)
        defined = None
        if _matches(value, allowed):  # only then is it looked up: importing a module can run code
            if _matches(value, [e for e in extra if not e.endswith(".")]):
                continue  # named exactly by the user
            defined = _canonical(value)
            if defined is not None and _matches(defined, allowed):
                continue
        actually = f" (which is {defined})" if defined and defined != value else ""
        raise TrustError(
            f"{source}: {where} names {value}{actually}, which mnist_lab will not run from a file "
            f"unless you trust it; to trust it, add trust=[{value}]"
        )
