#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine for tests/test_slurm.py: munge, slurmctld and
# slurmd, one partition "cpu" holding this machine's CPUs. Idempotent: a cluster this script
# started is checked and left running. Root only. Needs: apt-get install -y slurm-wlm munge
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# Written by mnist_lab's tests/slurm/start_cluster.sh"
LOGS=/var/log/slurm

say() { echo "+ $*"; }
die() {
    echo "start_cluster.sh: ERROR: $*" >&2
    for log in "$LOGS/slurmctld.log" "$LOGS/slurmd.log"; do
        [ -f "$log" ] && { echo "--- last lines of $log" >&2; tail -n 15 "$log" >&2; }
    done
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (it writes $CONF and starts munged, slurmctld and slurmd)"
for tool in munged munge unmunge slurmctld slurmd sinfo scontrol srun sbatch; do
    command -v "$tool" >/dev/null || die "$tool not found; install SLURM first: apt-get install -y slurm-wlm munge"
done

node=$(hostname -s)
getent hosts "$node" >/dev/null || die "this machine's name $node does not resolve, and SLURM's daemons find each other by it; add '127.0.0.1 $node' to /etc/hosts"

# munge: every SLURM message is signed with this key.
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key (1024 random bytes)"
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged as the munge user"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- munged --force
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# slurm.conf: this machine as the controller and the one compute node, with the CPUs and memory
# slurmd finds. CR_CPU hands out single CPUs, so two 1-CPU jobs run side by side.
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; this machine already has a SLURM setup, run the tests there or move $CONF away"
fi
hardware=$(slurmd -C | head -n 1)
case "$hardware" in NodeName=*) ;; *) die "slurmd -C did not describe this machine: $hardware" ;; esac
wanted=$(cat <<CONFIG
$MARK
ClusterName=local
SlurmctldHost=$node
AuthType=auth/munge
SlurmUser=root
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=10
EnforcePartLimits=ALL
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$hardware State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONFIG
)
if [ "$(cat "$CONF" 2>/dev/null)" != "$wanted" ]; then
    say "writing $CONF for node $node (${hardware#NodeName=$node })"
    mkdir -p /etc/slurm
    printf '%s\n' "$wanted" > "$CONF"
    if scontrol ping 2>/dev/null | grep -q "is UP"; then
        say "scontrol reconfigure"
        scontrol reconfigure || die "slurmctld refused the new $CONF"
    fi
fi
mkdir -p /var/spool/slurmctld /var/spool/slurmd "$LOGS"

if ! scontrol ping 2>/dev/null | grep -q "is UP"; then
    say "starting slurmctld"
    slurmctld || die "slurmctld did not start"
    for _ in $(seq 40); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.5; done
    scontrol ping | grep -q "is UP" || die "slurmctld does not answer"
fi
if ! { [ -f /run/slurmd.pid ] && kill -0 "$(cat /run/slurmd.pid)" 2>/dev/null; }; then
    say "starting slurmd"
    slurmd || die "slurmd did not start"
fi

# The node must come up idle (or busy with earlier jobs); one that is down is resumed once.
state=""
for i in $(seq 60); do
    state=$(sinfo -h -N -n "$node" -o '%T' 2>/dev/null | head -n 1)
    case "$state" in
        idle*|mixed*|allocated*|completing*) break ;;
        down*|drain*|fail*) [ "$i" = 10 ] && { say "scontrol update nodename=$node state=resume"; scontrol update nodename="$node" state=resume || true; } ;;
    esac
    sleep 0.5
done
case "$state" in idle*|mixed*|allocated*|completing*) ;; *) die "node $node is '${state:-unknown}', not idle: $(scontrol show node "$node" | grep -i reason || true)" ;; esac

say "srun -N1 -n1 hostname"
out=$(timeout 60 srun --immediate=30 -N1 -n1 hostname 2>&1) || die "a test job did not run: $out"
echo "$out"
sinfo
echo "SLURM cluster up: partition cpu on $node"
