"""irctest controller for tlschat's IRC listener.

tlschat serves IRC over TLS only, and nobody registers without an account. irctest's clients
speak plaintext and register with any nick, so this controller, without changing the tests:

- starts the real binary (TLSCHAT_BIN) with --irc-listen on the port irctest chose, on a fresh
  SQLite database with cheap argon2 settings;
- wraps every test client's socket in TLS and sends `PASS` first (the account password);
- makes an account for each nick a client registers with (`tlschat user add`), before its
  `NICK` is sent; `registerUser` (SASL tests) makes one with the password asked for.

Imported by irctest's conftest as `--controller irctest.controllers.tlschat`.
"""

import os
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Optional, Set, Type

from irctest import client_mock
from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController

TLSCHAT = os.environ.get("TLSCHAT_BIN", "tlschat")
PASSWORD = "irctest password"

CONFIG = """
[argon2]
memory_kib = 8
iterations = 1
threads = 2
# irctest's SASL tests use short passwords ("sesame").
min_password_chars = 1
[limits]
rate_burst = 1000
rate_per_sec = 1000
max_prelogin_per_ip = 1000
login_timeout = 30
"""

# The running controller: the client patch makes accounts through it.
_current: Optional["TlschatController"] = None


class TlschatController(BaseServerController, DirectoryBasedController):
    software_name = "tlschat"
    supported_sasl_mechanisms: Set[str] = {"PLAIN"}
    supports_sts = False
    sync_sleep_time = 0.0

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str],
        websocket_port: Optional[int],
    ) -> None:
        global _current
        if websocket_hostname is not None or websocket_port is not None:
            raise NotImplementedByController("Websocket")
        if ssl:
            # Every connection is TLS already (see the client patch below).
            raise NotImplementedByController("STARTTLS and a separate TLS port")
        if faketime:
            raise NotImplementedByController("faketime")
        assert self.proc is None
        self.port = port
        self.hostname = hostname
        self.create_config()
        assert self.directory
        self.password = password or PASSWORD
        self.accounts: Set[str] = set()
        with self.open_file("tlschat.toml") as fd:
            fd.write(CONFIG)
        self.db = self.directory / "tlschat.db"
        certs = self.directory / "certs"
        subprocess.run(
            [TLSCHAT, "cert", "generate", "--out", str(certs)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.proc = self.execute(
            [
                TLSCHAT,
                "serve",
                "--irc-listen",
                f"{hostname}:{port}",
                "--irc-server-name",
                "My.Little.Server",
                "--listen",
                "127.0.0.1:0",
                "--db",
                str(self.db),
                "--cert",
                str(certs / "server.crt"),
                "--key",
                str(certs / "server.key"),
                "--admin-socket",
                "off",
                "--web",
                "false",
                "--config",
                str(self.directory / "tlschat.toml"),
            ]
        )
        _current = self

    def wait_for_services(self) -> None:
        # Accounts are tlschat's own: no services to wait for.
        self.wait_for_port()

    def registerUser(self, case, username: str, password: Optional[str] = None) -> None:
        self.add_account(username, password or self.password)

    def add_account(self, name: str, password: str) -> None:
        key = name.lower()
        if key in self.accounts:
            return
        result = subprocess.run(
            [
                TLSCHAT,
                "user",
                "add",
                name,
                "--password-stdin",
                "--db",
                str(self.db),
                "--config",
                str(Path(self.directory) / "tlschat.toml"),
            ],
            input=password + "\n",
            text=True,
            capture_output=True,
        )
        if result.returncode != 0 and "already exists" not in result.stderr:
            # Not a valid account name for tlschat: the client's registration fails.
            return
        self.accounts.add(key)


class _Tls:
    """A TLS socket whose clean close reads as the end of the stream, as a plain socket's
    does (irctest's client checks for `b""`)."""

    def __init__(self, sock: ssl.SSLSocket):
        self.sock = sock

    def recv(self, size: int) -> bytes:
        try:
            return self.sock.recv(size)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""

    def sendall(self, data: bytes):
        try:
            return self.sock.sendall(data)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError) as e:
            raise BrokenPipeError() from e

    def __getattr__(self, name):
        return getattr(self.sock, name)


def _connect(self, hostname: str, port: int) -> None:
    sock = socket.create_connection((hostname, port), timeout=5)
    sock.setsockopt(socket.SOL_TCP, socket.TCP_NODELAY, 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    self.conn = _Tls(context.wrap_socket(sock))
    self.conn.settimeout(self.socket_timeout)
    self.ssl = True
    self.registered_nick = False
    if _current is not None:
        _plain_send(self, f"PASS :{_current.password}")


_plain_send = client_mock.ClientMock.sendLine


def _send_line(self, line: str):
    if not getattr(self, "registered_nick", True) and line.upper().startswith("NICK "):
        nick = line.split(" ", 1)[1].strip().lstrip(":")
        if _current is not None and nick:
            _current.add_account(nick, _current.password)
        self.registered_nick = True
    return _plain_send(self, line)


client_mock.ClientMock.connect = _connect
client_mock.ClientMock.sendLine = _send_line


def get_irctest_controller_class() -> Type[TlschatController]:
    return TlschatController
