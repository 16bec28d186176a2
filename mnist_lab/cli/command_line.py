"""The one reading of a command line: Hydra's flags apart, the overrides parsed by Hydra's own parser."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import OverrideParseException

# Hydra's flags that take the next argument as their value (unless written --flag=value).
VALUED_FLAGS = frozenset(
    {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c", "--package", "-p"}
    | {"--experimental-rerun", "--shell-completion", "-sc"}
)
# With these, Hydra prints something and runs nothing.
INFO_FLAGS = frozenset({"--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc", "--version"})


@dataclass
class CommandLine:
    """A command line split into Hydra's flags and the overrides (key=value)."""

    program: str
    flags: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # the overrides as typed
    overrides: list[Override] | None = None  # parsed; None when Hydra's parser refuses them (Hydra then says why)

    @property
    def multirun(self) -> bool:
        """Whether this is a sweep (`-m` / `--multirun`)."""
        return bool({"-m", "--multirun"} & set(self.flags))

    @property
    def runs_nothing(self) -> bool:
        """Whether Hydra only prints something (--help, --info, ...) or composes another config (--config-*)."""
        names = {flag.split("=", 1)[0] for flag in self.flags}
        return bool(names & (INFO_FLAGS | {"--config-path", "-cp", "--config-dir", "-cd", "--config-name", "-cn"}))

    def value(self, key: str) -> Any:
        """The value the last override of `key` gives it (`+key=`, `++key=` too), or None."""
        found = None
        for override in self.overrides or []:
            if override.key_or_group == key and not override.is_delete():
                found = override.value()
        return found

    def has(self, key: str) -> bool:
        """Whether an override sets `key`."""
        return any(o.key_or_group == key for o in self.overrides or [])

    def without(self, *keys: str) -> list[str]:
        """The overrides as typed, less those of `keys`."""
        parsed = self.overrides or []
        return [text for text, o in zip(self.texts, parsed) if o.key_or_group not in keys]

    def argv(self) -> list[str]:
        """The command line again, as sys.argv."""
        return [self.program, *self.flags, *self.texts]


def read_command_line(argv: list[str]) -> CommandLine:
    """Split `argv` into Hydra's flags and its overrides, and parse the overrides as Hydra will."""
    line = CommandLine(argv[0])
    args = iter(argv[1:])
    for arg in args:
        if arg.startswith("-"):
            line.flags.append(arg)
            if arg in VALUED_FLAGS:
                line.flags.append(next(args, ""))
        else:
            line.texts.append(arg)
    try:
        line.overrides = OverridesParser.create().parse_overrides(line.texts)
    except OverrideParseException:
        line.overrides = None
    return line
