"""`--help` of every command, also through its console script."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from helpers import run_process


@pytest.mark.parametrize(
    "module", ["mnist_lab", "mnist_lab.predict", "mnist_lab.evaluate", "mnist_lab.export", "mnist_lab.serve"]
)
def test_help_says_what_each_command_does_with_its_own_options_and_two_examples(module):
    result = run_process("--help", module=module)
    assert result.returncode == 0
    assert result.stdout.startswith(f"python -m {module}:")
    assert result.stdout.count(f"python -m {module} ") >= 2  # the examples
    assert "ckpt_path" in result.stdout if module != "mnist_lab" else "resume=" in result.stdout
    if module != "mnist_lab":
        assert "optimizer" not in result.stdout and "trainer" not in result.stdout  # training's groups


def test_console_scripts_match_the_modules():
    bin_dir = Path(sys.executable).parent
    for name in ("predict", "evaluate", "export", "serve", "report"):
        assert (bin_dir / f"mnist-lab-{name}").is_file(), f"mnist-lab-{name}"
    import subprocess

    via_script = subprocess.run([str(bin_dir / "mnist-lab-predict"), "--help"], capture_output=True, text=True)
    assert via_script.stdout == run_process("--help", module="mnist_lab.predict").stdout
