"""Several machines: Lightning's ``num_nodes`` under torchrun, tested as two "nodes" of one process each on
localhost (gloo), each launched by its own ``torchrun --nnodes 2 --node_rank N`` as on two machines."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPACE = "--model.init_args.space.init_args."


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_torchrun_nodes_search_as_one_run(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun is not None, "torchrun (installed with torch) is not on the path"
    env = {k: v for k, v in os.environ.items()
           if k not in {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK"}}
    env["OMP_NUM_THREADS"] = "1"
    port = _free_port()
    nodes = [
        subprocess.Popen(
            [torchrun, "--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(rank), "--master_addr", "127.0.0.1",
             "--master_port", str(port), "-m", "darts_lightning", "fit", "--config", str(REPO / "configs" / "darts_digits.yaml"),
             "--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp",
             "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
             SPACE + "channels", "4", SPACE + "layers", "1", "--trainer.enable_progress_bar", "false",
             "--trainer.default_root_dir", str(tmp_path)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in (0, 1)
    ]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=240)[0])
    finally:
        for node in nodes:
            node.kill()
    for rank, (node, output) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f"node {rank}:\n{output[-4000:]}"
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in output, output[-2000:]
    assert outputs[0].count("derived genotype:") == 1 and "derived genotype:" not in outputs[1]
    assert len(list(tmp_path.rglob("genotype.json"))) == 1
