"""How a fit over several processes ended: a rank that never joined or cannot reach rank 0, as one line."""

from __future__ import annotations

from helpers import QUIET, compose_config, free_port, one_error_line, run_cli

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


def alone(rank: int) -> dict[str, str]:
    """Rank `rank` of a two-node SLURM job whose other rank never comes, with rank 0 on loopback."""
    return {
        **SLURM_TWO_NODES,
        "SLURM_NODELIST": "node1,node2",
        "SLURM_PROCID": str(rank),
        "SLURM_NODEID": str(rank),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "GLOO_SOCKET_IFNAME": "lo",  # loopback on purpose: the name check stands aside
    }


def test_a_node_that_never_joins_ends_at_the_configured_timeout_naming_its_rank_and_node(tmp_path):
    assert compose_config("train", "trainer=ddp").trainer.strategy.timeout.seconds == 180  # bounded by default
    env = alone(0)
    result = run_cli(*TWO_NODES, "trainer.strategy.timeout.seconds=1", *QUIET, f"hydra.run.dir={tmp_path}", env=env)
    assert one_error_line(result) == (
        "1 of 2 processes never joined within trainer.strategy.timeout.seconds=1: rank 1 (node2); check that it "
        f"started (its node's log) and reaches 127.0.0.1:{env['MASTER_PORT']}, or wait longer with "
        "trainer.strategy.timeout.seconds=<s>"
    )
    assert not (tmp_path / "metrics.json").exists()


def test_a_rank_that_cannot_reach_rank_0_ends_at_the_configured_timeout_naming_the_address(tmp_path):
    env = alone(1)  # no rank 0 listens at MASTER_PORT
    result = run_cli(*TWO_NODES, "trainer.strategy.timeout.seconds=1", *QUIET, f"hydra.run.dir={tmp_path}", env=env)
    assert one_error_line(result) == (
        f"rank 1 (node2) could not reach rank 0 at 127.0.0.1:{env['MASTER_PORT']} within "
        "trainer.strategy.timeout.seconds=1; check that rank 0's node runs and that 127.0.0.1 resolves here to "
        "its network address"
    )
