"""Launches over several processes refused before any process waits: DDP inside a multirun, a loopback
node name, nodes SLURM did not give."""

from __future__ import annotations

import socket

from helpers import QUIET, multirun, one_error_line, run_cli, summary_rows


def test_ddp_that_reruns_the_command_line_is_refused_inside_a_multirun(tmp_path):
    result = multirun(tmp_path / "sweep", "trainer=ddp", "model=softmax")
    assert result.returncode != 0
    assert "trainer.strategy=ddp cannot run inside a multirun" in result.stderr + result.stdout
    assert "ddp_spawn" in summary_rows(tmp_path / "sweep")[0]["stop_reason"]


# What SLURM sets in rank 0 of a job of two nodes, one task each.
SLURM_TWO_NODES = {
    "SLURM_JOB_ID": "7",
    "SLURM_JOB_NAME": "mnist_lab",
    "SLURM_NNODES": "2",
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_NODELIST": "node[1-2]",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
}


# A 20 s rendezvous: were the checks gone, rank 0 would wait that long for rank 1, then fail, not hang.
TWO_NODES = ["trainer=ddp", "trainer.strategy.timeout.seconds=20", "trainer.num_nodes=2", "trainer.devices=1"]


def test_a_node_whose_name_resolves_to_a_loopback_address_is_one_line_before_any_rank_waits(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "localhost")  # like Debian's "127.0.1.1 <hostname>"
    result = run_cli(*TWO_NODES, *QUIET, f"hydra.run.dir={tmp_path / 'run'}", env=SLURM_TWO_NODES)
    line = one_error_line(result)
    assert line.startswith("node localhost (rank 0) resolves its own name to ") and "a loopback address" in line
    assert "/etc/hosts" in line and "GLOO_SOCKET_IFNAME=" in line
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_num_nodes_that_slurm_did_not_allocate_is_one_line_naming_the_fix(tmp_path):
    one_node = {**SLURM_TWO_NODES, "SLURM_NNODES": "1", "SLURM_NTASKS": "1", "SLURM_NODELIST": "node1"}
    line = one_error_line(run_cli(*TWO_NODES, *QUIET, f"hydra.run.dir={tmp_path / 'run'}", env=one_node))
    assert line == (
        "trainer.num_nodes=2, but SLURM gave this job 1 node(s) (node1); let hydra.launcher.nodes follow "
        "trainer.num_nodes (its default), or train with trainer.num_nodes=1"
    )
