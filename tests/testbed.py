"""Real sshd hosts on loopback for the tests and benchmarks (TESTBED.md).

One `/usr/sbin/sshd` per host, each with its own port, host key and pid file, accepting one
generated client key (and, for password tests, a password for a dedicated user).
"""

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never the same one twice in this process."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@dataclass
class Host:
    name: str
    port: int
    dir: Path
    proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0


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
            # The hosts are this machine's own accounts, and bash runs ~/.bashrc for every
            # command sshd starts. This machine's root .bashrc runs `pyenv init` (~120 ms of CPU,
            # and a lock that makes concurrent sessions sleep), which a managed host would not
            # do: every SSH command of every test and benchmark paid it. bash skips that file in
            # a shell it takes to be nested (SHLVL set).
            "SetEnv SHLVL=1\n"
        )
        return Host(name=f"node{i}", port=port, dir=d)

    def start(self):
        # sshd stays in the foreground (-D) so its pid is known at once: a daemonizing sshd
        # accepts connections before it has written its pid file.
        Path("/run/sshd").mkdir(exist_ok=True)
        for h in self.hosts:
            h.proc = subprocess.Popen(
                [SSHD, "-D", "-f", str(h.dir / "sshd_config"), "-E", str(h.dir / "sshd.log")],
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.time() + 20
        for h in self.hosts:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", h.port), timeout=1):
                        break
                except OSError:
                    if h.proc.poll() is not None or time.time() > deadline:
                        log = (h.dir / "sshd.log").read_text()
                        self.stop()
                        raise RuntimeError(f"sshd for {h.name} did not start: {log}")
                    time.sleep(0.05)
        return self

    def stop(self):
        for h in self.hosts:
            if h.proc:
                h.proc.terminate()
                try:
                    h.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    h.proc.kill()
                    h.proc.wait()
                h.proc = None

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
