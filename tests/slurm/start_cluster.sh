#!/usr/bin/env bash
# Start a SLURM cluster on this machine for tests/sweeps/test_slurm.py. Root only. Idempotent: a cluster
# this script started is checked and left running. Needs: apt-get install -y slurm-wlm munge
#
#   tests/slurm/start_cluster.sh            one node: this machine, partition "cpu" (the default)
#   tests/slurm/start_cluster.sh --nodes 2  also partition "two": compute nodes node1 and node2, each a
#                                           slurmd with 1 CPU in a network namespace of its own, with its
#                                           own address on a bridge and its own host name
#   tests/slurm/start_cluster.sh --stop     stop the daemons, remove the namespaces, bridge and
#                                           /etc/hosts lines it made
#
# The nodes share this machine's file system, as a real cluster's nodes share their storage. Their
# traffic stays on the bridge (10.231.0.0/24) and loopback.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# Written by mnist_lab's tests/slurm/start_cluster.sh"
HOSTS_BEGIN="# mnist_lab test cluster: begin"
HOSTS_END="# mnist_lab test cluster: end"
LOGS=/var/log/slurm
BRIDGE=mlab0
NET=10.231.0            # the bridge is .1 (the controller, as the nodes see it), node<i> is .1<i>
PARTITION_NODES=two
nodes=1
stop=0

say() { echo "+ $*"; }
die() {
    echo "start_cluster.sh: ERROR: $*" >&2
    for log in "$LOGS"/slurmctld.log "$LOGS"/slurmd-*.log; do
        [ -f "$log" ] && { echo "--- last lines of $log" >&2; tail -n 15 "$log" >&2; }
    done
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) nodes=${2:-}; shift 2 ;;
        --nodes=*) nodes=${1#--nodes=}; shift ;;
        --stop) stop=1; shift ;;
        *) die "unknown argument '$1'; use --nodes 1, --nodes 2 or --stop" ;;
    esac
done
case "$nodes" in 1|2) ;; *) die "--nodes takes 1 or 2, not '$nodes'" ;; esac

[ "$(id -u)" = 0 ] || die "run as root (it writes $CONF, /etc/hosts and network namespaces, and starts munged, slurmctld and slurmd)"

# Stop every SLURM daemon this script started, and wait (at most 20 s) until they are gone.
stop_daemons() {
    local pids=() file
    for file in /run/slurmctld.pid /run/slurmd-*.pid; do
        [ -f "$file" ] && kill -0 "$(cat "$file")" 2>/dev/null && pids+=("$(cat "$file")")
    done
    [ ${#pids[@]} -gt 0 ] || return 0
    say "stopping slurmctld and slurmd (pids ${pids[*]})"
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 40); do
        kill -0 "${pids[@]}" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
}

hosts_without_ours() { awk -v b="$HOSTS_BEGIN" -v e="$HOSTS_END" '$0==b{skip=1} !skip{print} $0==e{skip=0}' /etc/hosts; }

remove_network() {
    local ns
    for ns in $(ip netns list | awk '/^mlab-node[0-9]+/{print $1}'); do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        say "ip netns delete $ns"
        ip netns delete "$ns"
    done
    ip link show "$BRIDGE" >/dev/null 2>&1 && { say "ip link delete $BRIDGE"; ip link delete "$BRIDGE"; }
    if grep -qxF "$HOSTS_BEGIN" /etc/hosts; then
        say "removing node1, node2 from /etc/hosts"
        hosts_without_ours > /etc/hosts.mnist_lab && cat /etc/hosts.mnist_lab > /etc/hosts && rm /etc/hosts.mnist_lab
    fi
    return 0
}

if [ "$stop" = 1 ]; then
    stop_daemons
    remove_network
    echo "SLURM cluster stopped"
    exit 0
fi

for tool in munged munge unmunge slurmctld slurmd sinfo scontrol srun sbatch; do
    command -v "$tool" >/dev/null || die "$tool not found; install SLURM first: apt-get install -y slurm-wlm munge"
done
[ "$nodes" = 1 ] || for tool in ip nsenter unshare; do
    command -v "$tool" >/dev/null || die "$tool not found; --nodes 2 needs it: apt-get install -y iproute2 util-linux"
done

host=$(hostname -s)
getent hosts "$host" >/dev/null || die "this machine's name $host does not resolve, and SLURM's daemons find each other by it; add '127.0.0.1 $host' to /etc/hosts"

# munge: every SLURM message is signed with this key; all nodes reach munged by its socket file.
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

# The two compute nodes' network: a bridge holding the controller's address, and per node a network
# namespace joined to it by a veth pair. /etc/hosts maps each node's name to its own address, which
# is what Lightning's SLURM environment and gloo resolve.
if [ "$nodes" = 2 ]; then
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        say "ip link add $BRIDGE type bridge ($NET.1/24)"
        ip link add "$BRIDGE" type bridge
    fi
    ip addr replace "$NET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for i in 1 2; do
        ns=mlab-node$i
        if ! ip netns list | grep -qw "$ns"; then
            say "ip netns add $ns (node$i at $NET.1$i)"
            ip netns add "$ns"
        fi
        if ! ip link show "mlab-v$i" >/dev/null 2>&1; then
            ip link add "mlab-v$i" type veth peer name "mlab-p$i"
            ip link set "mlab-p$i" netns "$ns"
            ip link set "mlab-v$i" master "$BRIDGE"
        fi
        ip link set "mlab-v$i" up
        ip -n "$ns" addr replace "$NET.1$i/24" dev "mlab-p$i"
        ip -n "$ns" link set "mlab-p$i" up
        ip -n "$ns" link set lo up
    done
    hosts="$(hosts_without_ours; printf '%s\n%s\n%s\n%s\n' "$HOSTS_BEGIN" "$NET.11 node1" "$NET.12 node2" "$HOSTS_END")"
    if [ "$hosts" != "$(cat /etc/hosts)" ]; then
        say "adding node1 ($NET.11) and node2 ($NET.12) to /etc/hosts"
        printf '%s\n' "$hosts" > /etc/hosts  # in place: /etc/hosts may be a mount point
    fi
    controller="$host($NET.1)"  # the nodes cannot reach this machine's own name, a loopback address
else
    remove_network
    controller=$host
fi

# slurm.conf: this machine as the controller and a compute node with the CPUs and memory slurmd finds,
# plus node1 and node2 with 1 CPU each. CR_CPU hands out single CPUs, so two 1-CPU jobs run side by
# side and a two-node job really spans both nodes.
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; this machine already has a SLURM setup, run the tests there or move $CONF away"
fi
hardware=$(slurmd -C | head -n 1)
case "$hardware" in NodeName=*) ;; *) die "slurmd -C did not describe this machine: $hardware" ;; esac
two_nodes=""
if [ "$nodes" = 2 ]; then
    two_nodes=$(cat <<NODES
NodeName=node1 NodeAddr=$NET.11 CPUs=1 RealMemory=1024 State=UNKNOWN
NodeName=node2 NodeAddr=$NET.12 CPUs=1 RealMemory=1024 State=UNKNOWN
PartitionName=$PARTITION_NODES Nodes=node1,node2 MaxTime=INFINITE State=UP
NODES
)
fi
wanted=$(cat <<CONFIG
$MARK
ClusterName=local
SlurmctldHost=$controller
AuthType=auth/munge
SlurmUser=root
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=15
KillWait=10
EnforcePartLimits=ALL
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd-%n.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$hardware State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
$two_nodes
CONFIG
)
if [ "$(cat "$CONF" 2>/dev/null)" != "$wanted" ]; then
    say "writing $CONF: $host (${hardware#NodeName=$host })$([ "$nodes" = 2 ] && echo ", node1 and node2 (1 CPU each)")"
    stop_daemons  # the controller's address may have changed: start afresh
    mkdir -p /etc/slurm
    printf '%s\n' "$wanted" > "$CONF"
fi
mkdir -p /var/spool/slurmctld "$LOGS"

if ! scontrol ping 2>/dev/null | grep -q "is UP"; then
    say "starting slurmctld"
    slurmctld || die "slurmctld did not start"
    for _ in $(seq 40); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.5; done
    scontrol ping | grep -q "is UP" || die "slurmctld does not answer"
fi

# Start slurmd for `name` (none is running yet) with `prefix` as the way into its namespaces.
start_slurmd() {
    local name=$1
    shift
    local pidfile=/run/slurmd-$name.pid
    { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; } && return 0
    mkdir -p "/var/spool/slurmd/$name"
    say "starting slurmd for $name"
    "$@" || die "slurmd for $name did not start"
}
start_slurmd "$host" slurmd
compute=("$host")
if [ "$nodes" = 2 ]; then
    for i in 1 2; do
        # nsenter, not `ip netns exec`: that remounts /sys, and slurmd then finds no cgroup file system.
        # A UTS namespace gives the node its own host name, so each rank's name resolves to its own address.
        start_slurmd "node$i" nsenter "--net=/run/netns/mlab-node$i" unshare --uts \
            sh -c "hostname node$i && exec slurmd -N node$i"
        compute+=("node$i")
    done
fi

# Each node must come up idle (or busy with earlier jobs); one that is down is resumed once.
for node in "${compute[@]}"; do
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
done

say "srun -N1 -n1 hostname"
out=$(timeout 60 srun --immediate=30 -N1 -n1 hostname 2>&1) || die "a test job did not run: $out"
echo "$out"
if [ "$nodes" = 2 ]; then
    say "srun -p $PARTITION_NODES -N2 -n2 hostname"
    out=$(timeout 60 srun --immediate=30 -p "$PARTITION_NODES" -N2 -n2 -l hostname 2>&1) || die "a two-node test job did not run: $out"
    echo "$out"
    case "$out" in *node1*node2*|*node2*node1*) ;; *) die "a two-node job did not run on node1 and node2: $out" ;; esac
fi
sinfo
echo "SLURM cluster up in ${SECONDS} s: partition cpu on $host$([ "$nodes" = 2 ] && echo ", partition $PARTITION_NODES on node1 and node2")"
