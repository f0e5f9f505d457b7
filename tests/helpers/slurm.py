"""A one-node SLURM cluster for tests: Debian's ``slurmctld`` and ``slurmd`` on 127.0.0.1, with their config, state,
spool, logs and pid files in a temporary folder, stopped afterwards.

    with slurm_cluster() as cluster:            # skips where slurmctld, slurmd or sbatch are missing
        env = {**os.environ, **cluster.env}     # SLURM_CONF for sbatch, squeue and submitit
        ...

No authentication (``auth/none``) and no process containment (``proctrack/linuxproc``, ``task/none``): only for a
test machine, as root. The node offers this machine's CPUs and a partition named ``debug``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.server import HOST, free_port

PARTITION = "debug"


@dataclass(frozen=True)
class SlurmCluster:
    conf: Path
    node: str

    @property
    def env(self) -> dict[str, str]:
        """What a client (sbatch, submitit) needs to find this cluster."""
        return {"SLURM_CONF": str(self.conf)}


def _config(folder: Path, node: str, cpus: int) -> str:
    return f"""\
ClusterName=vessel-test
SlurmctldHost={node}({HOST})
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
NodeName={node} NodeAddr={HOST} CPUs={cpus} RealMemory=4096 State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _node_idle(env: dict[str, str]) -> bool:
    done = subprocess.run(
        ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, check=False, timeout=10
    )
    return done.returncode == 0 and done.stdout.strip() == "idle"


@contextmanager
def slurm_cluster(ready_timeout_s: float = 60) -> Iterator[SlurmCluster]:
    """Start ``slurmctld`` and ``slurmd`` for one node (this machine, loopback); yield the cluster once the node
    is idle; stop both daemons and remove the folder afterwards. Skips where SLURM is not installed or the user
    is not root (slurmd must start jobs as their user)."""
    missing = [name for name in ("slurmctld", "slurmd", "sbatch", "sinfo") if shutil.which(name) is None]
    if missing:
        pytest.skip(
            f"SLURM is not installed ({', '.join(missing)}): apt-get install slurmctld slurmd slurm-client"
        )
    if os.geteuid() != 0:
        pytest.skip("a one-node SLURM cluster needs root (slurmd runs jobs as their user)")
    folder = Path(tempfile.mkdtemp(prefix="vessel-slurm-"))
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    node = socket.gethostname().split(".")[0]
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder, node, os.cpu_count() or 1))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons = []
    try:
        for daemon in ("slurmctld", "slurmd"):
            command = [daemon, "-D", "-f", str(conf)] + (["-N", node] if daemon == "slurmd" else ["-i"])
            log = (folder / f"{daemon}.out").open("w")
            daemons.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + ready_timeout_s
        while not _node_idle(env):
            if any(d.poll() is not None for d in daemons) or time.monotonic() > deadline:
                logs = "".join(
                    f"--- {p.name}\n{p.read_text()[-1500:]}"
                    for p in sorted(folder.glob("slurm*.*"))
                    if p.is_file()
                )
                raise RuntimeError(f"the SLURM node did not become idle:\n{logs}")
            time.sleep(0.5)
        yield SlurmCluster(conf, node)
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(20)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        shutil.rmtree(folder, ignore_errors=True)
