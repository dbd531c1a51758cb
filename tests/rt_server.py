"""A throw-away Request Tracker 5 for tests: a fresh SQLite database in a temporary folder,
RT's standalone server on 127.0.0.1, mail off, and REST 2.0 auth tokens.

RT must be installed (Debian: `apt-get install --no-install-recommends request-tracker5
rt5-db-sqlite rt5-standalone`; `.ci/run` does this). Without it, starting fails with a message
saying so: the tests that need it fail, they do not skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

RT_HOME = Path("/usr/share/request-tracker5")
RT_SERVER = RT_HOME / "libexec/rt-server"
RT_SETUP = Path("/usr/sbin/rt-setup-database-5")
ROOT_PASSWORD = "password"  # root's password on a fresh database
INSTALL_HINT = (
    "Request Tracker 5 is not installed: apt-get install -y --no-install-recommends "
    "request-tracker5 rt5-db-sqlite rt5-standalone"
)
# Creates a privileged user with all rights and prints a new auth token of it; no REST call
# creates tokens.
MAKE_USER = r"""
RT::LoadConfig(); RT::Init();
my ($name, $password) = @ARGV;
my $user = RT::User->new(RT->SystemUser);
$user->Load($name);
unless ($user->id) {
    my ($ok, $msg) = $user->Create(Name => $name, Password => $password, Privileged => 1,
                                   EmailAddress => "$name\@example.com");
    $ok or die "user: $msg\n";
    ($ok, $msg) = $user->PrincipalObj->GrantRight(Right => 'SuperUser', Object => $RT::System);
    $ok or die "right: $msg\n";
}
my $cu = RT::CurrentUser->new; $cu->Load($name) or die "no $name\n";
my ($id, $msg, $token) = RT::AuthToken->new($cu)->Create(Owner => $cu->id, Description => 'tests');
$id or die "token: $msg\n";
print $token;
"""

# A global single-value free-text ticket custom field named $ARGV[0] (REST 2.0 cannot make one).
MAKE_CUSTOM_FIELD = r"""
RT::LoadConfig(); RT::Init();
my ($name) = @ARGV;
my $cf = RT::CustomField->new(RT->SystemUser);
my ($ok, $msg) = $cf->Create(Name => $name, Type => 'Freeform', MaxValues => 1,
                             LookupType => RT::Ticket->CustomFieldLookupType);
$ok or die "custom field: $msg\n";
($ok, $msg) = $cf->AddToObject(RT::Queue->new(RT->SystemUser));
$ok or die "apply: $msg\n";
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RTServer:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/REST/2.0"
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "RT_SITE_CONFIG": str(work / "etc/RT_SiteConfig.pm"),
            # Both: the system's RT_SiteConfig.d would otherwise point at its own database.
            "RT_SITE_CONFIG_DIR": str(work / "etc/RT_SiteConfig.d"),
        }

    def start(self, timeout: float = 60.0) -> RTServer:
        if not RT_SERVER.exists() or not RT_SETUP.exists():
            raise RuntimeError(INSTALL_HINT)
        for folder in ("etc/RT_SiteConfig.d", "db", "mason", "sessions"):
            (self.work / folder).mkdir(parents=True, exist_ok=True)
        (self.work / "etc/RT_SiteConfig.pm").write_text(self._site_config())
        init = subprocess.run(
            [str(RT_SETUP), "--action", "init"],
            env=self.env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"RT database init failed:\n{init.stdout.decode()[-2000:]}")
        log = open(self.work / "server.log", "wb")  # noqa: SIM115 - the server's whole life
        self.process = subprocess.Popen(
            [str(RT_SERVER), "--host", "127.0.0.1", "--port", str(self.port), "--max-workers", "2"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rt-server exited:\n{self.log()}")
            try:
                if requests.get(f"{self.api}/rt", auth=self.root, timeout=5).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"RT did not answer in {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        # SIGTERM, not SIGINT: on SIGINT a root rt-server chowns RT's system folders.
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def log(self) -> str:
        try:
            return (self.work / "server.log").read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    @property
    def root(self) -> tuple[str, str]:
        return ("root", ROOT_PASSWORD)

    def create_custom_field(self, name: str) -> None:
        """A ticket custom field `name` in every queue."""
        made = subprocess.run(
            ["perl", f"-I{RT_HOME / 'lib'}", "-MRT", "-e", MAKE_CUSTOM_FIELD, name],
            env=self.env, capture_output=True, timeout=60,
        )  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(f"RT custom field {name}: {made.stderr.decode()[-2000:]}")

    def user_token(self, name: str, password: str) -> str:
        """A new privileged user `name` with all rights (if there is none yet) and a new
        auth token of it."""
        made = subprocess.run(
            ["perl", f"-I{RT_HOME / 'lib'}", "-MRT", "-e", MAKE_USER, name, password],
            env=self.env, capture_output=True, timeout=60,
        )  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(f"RT user {name}: {made.stderr.decode()[-2000:]}")
        return made.stdout.decode().strip()

    # -- REST 2.0 as an agent (root, basic auth) ----------------------------------------------

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = requests.request(method, self.api + path, auth=self.root, timeout=30, **kwargs)
        assert answer.ok, f"RT {method} {path}: {answer.status_code} {answer.text[:300]}"
        return answer.json()

    def create_queue(self, name: str) -> None:
        self.call("POST", "/queue", json={"Name": name})

    def create_ticket(
        self,
        queue: str,
        subject: str,
        content: str,
        content_type: str,
        custom_fields: dict[str, str] | None = None,
    ) -> str:
        made = self.call(
            "POST",
            "/ticket",
            json={"Queue": queue, "Subject": subject, "Content": content,
                  "ContentType": content_type, "Requestor": "customer@example.com",
                  **({"CustomFields": custom_fields} if custom_fields else {})},
        )  # fmt: skip
        return str(made["id"])

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        """A ticket's queue name, priority number and comments."""
        ticket = self.call("GET", f"/ticket/{ticket_id}")
        queue = self.call("GET", f"/queue/{ticket['Queue']['id']}")
        history = self.call(
            "GET", f"/ticket/{ticket_id}/history", params={"fields": "Type", "per_page": 100}
        )
        comments = [t["id"] for t in history["items"] if t["Type"] == "Comment"]
        texts = []
        for transaction in comments:
            parts = self.call(
                "GET",
                f"/transaction/{transaction}/attachments",
                params={"fields": "Content,ContentType"},
            )
            texts += [p["Content"] for p in parts["items"] if p.get("Content")]
        return {"queue": queue["Name"], "priority": int(ticket["Priority"]), "comments": texts}

    def _site_config(self) -> str:
        work, port = self.work, self.port
        return f"""
Set($DatabaseType, 'SQLite');
Set($DatabaseName, '{work}/db/rt5');
Set($WebDomain, '127.0.0.1');
Set($WebPort, {port});
Set($WebPath, '');
Set($WebBaseURL, 'http://127.0.0.1:{port}');
Set($rtname, 'tests');
Set($Organization, 'tests.example.com');
Set($Timezone, 'UTC');
Set($LogToSyslog, undef);
Set($LogToSTDERR, 'warning');
Set($MailCommand, sub {{ 1 }});
$RT::MasonDataDir = '{work}/mason';
$RT::MasonSessionDir = '{work}/sessions';
1;
"""
