"""Two "machines" on this one, for the multi-host tests and benchmarks/bench_mpi.py's `link`: two
network namespaces joined by a veth pair (addresses only inside them), each with a working
directory of its own, and an mpiexec (MPICH's hydra) that reaches the second through a launcher
script running `ip netns exec`, each rank pinned to a core of its own with taskset.

Needs root, `ip netns`, taskset and two CPUs; `refused()` says why not where one is missing.
"""
import os
import shutil
import subprocess

SUBNET = "10.213.{}.{}"  # a /30 per pair of namespaces, on the veth pair alone
# MPICH's UCX netmod would use shared memory between processes of one kernel, namespaces or
# not; between machines there is no such memory, so the ranks are made to use TCP, over the
# veth (libfabric's netmod likewise)
NETWORK_ONLY = {"UCX_TLS": "tcp,self", "FI_PROVIDER": "tcp"}

LAUNCHER = """#!/bin/sh
# how mpiexec reaches a host: `LAUNCHER -x HOST COMMAND`, as it would call ssh
[ "$1" = "-x" ] && shift
host=$1; shift
echo "$host" >> {log}
case $host in
{cases}
  *) echo "no such host: $host" >&2; exit 1;;
esac
exec ip netns exec "$ns" taskset -c "$core" sh -c "$*"
"""


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def refused():
    """Why two hosts cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("taskset") is None:
        return "needs ip (iproute2) and taskset"
    if len(os.sched_getaffinity(0)) < 2:
        return "needs two CPUs, one per rank"
    probe = f"charrnn-probe-{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add is refused here: {made.stderr.strip()}"
    try:
        link = f"crprobe{os.getpid() % 100000}"
        veth = _ip("-n", probe, "link", "add", link, "type", "veth", "peer", "name", link + "p",
                   check=False)
        if veth.returncode != 0:
            return f"a veth pair is refused here: {veth.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)  # and its veth pair with it
    return None


class Hosts:
    """Hosts A (rank 0's, where mpiexec runs) and B, made in folder; close() removes them."""

    def __init__(self, folder, tag=0):
        n = os.getpid() % 10000
        self.names = [f"charrnn-{n}-{tag}a", f"charrnn-{n}-{tag}b"]
        self.links = [f"cr{n}x{tag}a", f"cr{n}x{tag}b"]  # interface names: 15 characters at most
        self.addresses = [SUBNET.format(tag, 1), SUBNET.format(tag, 2)]
        self.dirs = [os.path.join(folder, "host-a"), os.path.join(folder, "host-b")]
        self.cores = sorted(os.sched_getaffinity(0))[:2]
        self.launched = os.path.join(folder, "launched.log")  # the hosts the launcher reached
        self.launcher = os.path.join(folder, "launcher.sh")
        try:
            self._make()
        except BaseException:
            self.close()
            raise
        cases = "\n".join(f"  {a}) ns={ns}; core={core};;" for a, ns, core in
                          zip(self.addresses, self.names, self.cores))
        with open(self.launcher, "w") as f:
            f.write(LAUNCHER.format(log=self.launched, cases=cases))
        os.chmod(self.launcher, 0o755)
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)

    def _make(self):
        for name in self.names:
            _ip("netns", "add", name)
        _ip("link", "add", self.links[0], "type", "veth", "peer", "name", self.links[1])
        for name, link, address in zip(self.names, self.links, self.addresses):
            _ip("link", "set", link, "netns", name)
            _ip("-n", name, "addr", "add", address + "/30", "dev", link)
            _ip("-n", name, "link", "set", "lo", "up")
        self.link(up=True)

    def link(self, up):
        """Bring the veth pair up or down (a cable pulled: every packet between A and B lost)."""
        for name, link in zip(self.names, self.links):
            _ip("-n", name, "link", "set", link, "up" if up else "down")

    def pids(self, host):
        """The processes running in host's namespace."""
        found = _ip("netns", "pids", self.names[host], check=False).stdout.split()
        return [int(p) for p in found]

    def close(self):
        """End every process left in the namespaces (a launcher proxy cut off from mpiexec waits
        for it until TCP gives up), then remove them, and with them the veth pair."""
        for name in self.names:
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), 9)
                except OSError:
                    pass
            _ip("netns", "del", name, check=False)

    def mpiexec(self, mpiexec, per_host):
        """argv for mpiexec from host A: one rank on each host, rank r running per_host[r]
        (argv) in host r's folder, the launcher script reaching host B; to be run with
        `env()`."""
        argv = ["ip", "netns", "exec", self.names[0], "taskset", "-c", str(self.cores[0]),
                mpiexec, "-launcher", "ssh", "-launcher-exec", self.launcher,
                "-hosts", ",".join(f"{a}:1" for a in self.addresses)]
        for r, args in enumerate(per_host):
            argv += (([":"] if r else []) + ["-n", "1", "-wdir", self.dirs[r], *args])
        return argv


def env(root, timeout):
    """The ranks' environment: one BLAS thread, the watchdog's limit, the network only."""
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "CHARRNN_MPI_TIMEOUT": str(timeout), "PYTHONPATH": root,
            **NETWORK_ONLY}
