"""Several hosts on one machine: a network namespace per simulated host on one private bridge.

Each host gets its own network stack (addresses, ports, routes) on a Linux bridge that stands in
for the VPC's private subnet; the machine itself (the root namespace) is the controller and holds
the stand-in RDS and AWS services on the bridge's address. A NAT rule (nftables) is the NAT
gateway: hosts reach package indexes outward, nothing reaches them from outside.

Ansible reaches a host through a shell of its own (``shell(host)``): the `local` connection with
``ansible_shell_executable`` set to a script that enters the host's namespace, and the host's Python
started through it (Mitogen starts one per host and account, without a shell). Every module, every
`become` and every daemon a role starts (supervisord and its programs) then runs on that host's
network, while files land on the one shared filesystem (each host has its own ``mlops_root``).
``ip netns exec`` also bind-mounts ``/etc/netns/<namespace>/<name>`` over ``/etc/<name>``: each
host gets its own ``/etc/cron.d``, ``/etc/tmpfiles.d`` and ``/etc/hosts`` (every host's name and
address, the VPC's DNS) that way. The shell also gives the host its own name (a UTS namespace per
command, the same name each time). The hosts share the machine's users and disk.

Everything here needs root and Debian's iproute2 and nftables (`make test-aws-sim` installs them).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# Directories under /etc that each simulated host has to itself.
PER_HOST_ETC = ("cron.d", "tmpfiles.d")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@dataclass
class Network:
    """A bridge ``bridge`` with ``subnet``; hosts named by ``hosts`` (name -> last octet)."""

    prefix: str  # namespace and interface names start with it (unique per simulation)
    subnet: ipaddress.IPv4Network
    hosts: dict[str, int]
    root: Path  # where the hosts' shell scripts go
    _nat_table: str = field(init=False, default="")
    _forwarding_was: str = field(init=False, default="")

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"[:15]

    @property
    def gateway(self) -> str:
        """The bridge's address: the controller and the stand-in AWS services."""
        return str(self.subnet.network_address + 1)

    def address(self, host: str) -> str:
        return str(self.subnet.network_address + self.hosts[host])

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def _veth(self, index: int) -> str:
        """The bridge's end of a host's link (the host's end is its eth0)."""
        return f"{self.prefix}v{index}"[:15]

    def shell(self, host: str) -> Path:
        return self.root / f"shell-{host}"

    def up(self) -> None:
        """Create the bridge, a namespace and veth pair per host, and the NAT rule."""
        self.down()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        self.root.mkdir(parents=True, exist_ok=True)
        for index, host in enumerate(self.hosts):
            ns, veth = self.namespace(host), self._veth(index)
            _ip("netns", "add", ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(host)}/{self.subnet.prefixlen}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", self.gateway)
            etc = Path("/etc/netns") / ns
            for name in PER_HOST_ETC:
                (etc / name).mkdir(parents=True, exist_ok=True)
            # Each host's name resolves to its address on every host, as a VPC's DNS resolves
            # instances' names (torchrun's agents find each other by name).
            (etc / "hosts").write_text(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
                + "".join(f"{self.address(h)}\t{h}\n" for h in self.hosts)
            )
            # Become re-enters the shell as another user (sudo -u ... <shell> -c ...), already inside
            # the namespace: only root may enter one, and there is no need to.
            script = self.shell(host)
            script.write_text(
                "#!/bin/sh\n"
                f"# A shell on the simulated host {host}: its network namespace {ns} and its own host name.\n"
                f'if [ "$(stat -L -c %d:%i /proc/self/ns/net)" = "$(stat -L -c %d:%i /run/netns/{ns})" ]; then\n'
                '    exec /bin/sh "$@"\n'
                "fi\n"
                f'exec ip netns exec {ns} unshare --uts /bin/sh -c \'hostname {host} && exec /bin/sh "$@"\' sh "$@"\n'
            )
            script.chmod(0o755)
        self._forwarding_was = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        self._nat_table = f"{self.prefix}nat"
        subprocess.run(
            ["nft", "-f", "-"],
            input=(
                f"table ip {self._nat_table} {{\n"
                "  chain postrouting {\n"
                "    type nat hook postrouting priority srcnat; policy accept;\n"
                f"    ip saddr {self.subnet} ip daddr != {self.subnet} masquerade\n"
                "  }\n"
                "}\n"
            ),
            text=True,
            capture_output=True,
            check=True,
        )

    def command(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` as run on ``host`` (as root, through its shell: its network and host name)."""
        return [str(self.shell(host)), "-c", 'exec "$0" "$@"', *argv]

    def run(self, host: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
        """Run a command on ``host``."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("check", False)
        return subprocess.run(self.command(host, argv), **kwargs)

    def popen(self, host: str, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(host, argv), **kwargs)

    def pids(self, host: str) -> list[int]:
        result = _ip("netns", "pids", self.namespace(host), check=False)
        return [int(pid) for pid in result.stdout.split()]

    def kill(self, host: str) -> int:
        """The host dies: SIGKILL every process on it and take its link down. Returns how many died."""
        killed = 0
        for _ in range(5):
            pids = self.pids(host)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            time.sleep(0.2)
        _ip("-n", self.namespace(host), "link", "set", "eth0", "down", check=False)
        return killed

    def listening(self, host: str) -> list[tuple[str, int, str]]:
        """(address, port, process) of every listening TCP socket and bound UDP socket on ``host``."""
        out = self.run(host, ["ss", "-Hltunp"], check=True).stdout
        sockets = []
        for line in out.splitlines():
            fields = line.split()  # netid, state, recv-q, send-q, local, peer, process
            local = fields[4]
            address, _, port = local.rpartition(":")
            process = fields[6] if len(fields) > 6 else ""
            sockets.append((address.strip("[]").split("%")[0], int(port), process))
        return sockets

    def down(self) -> None:
        """Remove everything up() made (also what an interrupted earlier run left)."""
        for index in range(len(self.hosts)):
            # Explicitly: a namespace's links go with it only once the kernel has cleaned it up.
            _ip("link", "del", self._veth(index), check=False)
        for host in self.hosts:
            ns = self.namespace(host)
            if Path(f"/run/netns/{ns}").exists():
                self.kill(host)
                _ip("netns", "del", ns, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        _ip("link", "del", self.bridge, check=False)
        table = self._nat_table or f"{self.prefix}nat"
        subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True, check=False)
        if self._forwarding_was:
            Path("/proc/sys/net/ipv4/ip_forward").write_text(self._forwarding_was + "\n")
            self._forwarding_was = ""
