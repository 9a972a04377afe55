"""Real sshd hosts on loopback for the tests and benchmarks (TESTBED.md).

One `/usr/sbin/sshd` per host, each with its own port, host key and pid file, accepting one
generated client key (and, for password tests, a password for a dedicated user).
"""

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Host:
    name: str
    port: int
    dir: Path
    pid: int = 0


class Testbed:
    """N sshd instances sharing one client key pair."""

    __test__ = False  # a helper, not a test class

    def __init__(self, root: Path, count: int, password_auth: bool = False, log_level: str = "ERROR"):
        assert Path(SSHD).is_file(), "openssh-server is not installed (.ci/run installs it)"
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.key = root / "client_key"
        if not self.key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        self.pubkey = (root / "client_key.pub").read_text()
        self.password_auth = password_auth
        self.log_level = log_level
        self.hosts = [self._make(i) for i in range(count)]

    def _make(self, i: int) -> Host:
        d = self.root / f"h{i}"
        d.mkdir(exist_ok=True)
        hk = d / "host_key"
        if not hk.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hk)], check=True)
        (d / "authorized_keys").write_text(self.pubkey)
        port = free_port()
        (d / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {d / 'sshd.pid'}\n"
            "PermitRootLogin yes\nPubkeyAuthentication yes\n"
            f"PasswordAuthentication {'yes' if self.password_auth else 'no'}\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\n"
            "Subsystem sftp /usr/lib/openssh/sftp-server\nMaxStartups 200:30:400\nMaxSessions 200\n"
            f"LogLevel {self.log_level}\n"
        )
        return Host(name=f"node{i}", port=port, dir=d)

    def start(self):
        Path("/run/sshd").mkdir(exist_ok=True)
        for h in self.hosts:
            subprocess.run([SSHD, "-f", str(h.dir / "sshd_config"), "-E", str(h.dir / "sshd.log")], check=True)
        deadline = time.time() + 20
        for h in self.hosts:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", h.port), timeout=1):
                        break
                except OSError:
                    if time.time() > deadline:
                        raise RuntimeError(f"sshd for {h.name} did not start: {(h.dir / 'sshd.log').read_text()}")
                    time.sleep(0.05)
            h.pid = int((h.dir / "sshd.pid").read_text())
        return self

    def stop(self):
        for h in self.hosts:
            if h.pid:
                try:
                    os.kill(h.pid, 15)
                except ProcessLookupError:
                    pass
                h.pid = 0

    def ini_inventory(self, extra: str = "", user: str = "root", key: bool = True) -> str:
        lines = ["[nodes]"]
        for h in self.hosts:
            line = f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port} ansible_user={user}"
            if key:
                line += f" ansible_ssh_private_key_file={self.key}"
            lines.append(line)
        lines.append("[nodes:vars]")
        lines.append("ansible_python_interpreter=/usr/bin/python3")
        if extra:
            lines.append(extra)
        return "\n".join(lines) + "\n"
