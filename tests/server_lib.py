"""server_lib.py: what the tests of `trinity serve` share (imported, not run): starting a server on a free port and
reading it from the "listening on" line, requests with a timeout, server-sent events, the one-line-per-case report
and the summary line (exit 1 on a failure, 77 where nothing could run). Standard library only; every server started
is killed at exit."""
import atexit
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

TIMEOUT = float(os.environ.get("TRN_TEST_TIMEOUT", "60"))  # seconds for a start, a request, a command
LISTENING = re.compile(r"listening on http://(\S+):(\d+) \((\d+) slots? of (\d+) positions, (.+)\)")
NO_SERVER = "this build has no HTTP server"
SKIP = 77


class Report:
    """One line per case (ok, FAIL with details, SKIPPED with the reason) and the summary line."""

    def __init__(self, name):
        self.name = name
        self.passed = self.failed = self.skipped = 0

    def check(self, case, condition, detail=""):
        if condition:
            self.passed += 1
            print("ok   " + case, flush=True)
        else:
            self.failed += 1
            print("FAIL %s: %s" % (case, str(detail)[:2000]), flush=True)
        return condition

    def skip(self, case, why):
        self.skipped += 1
        print("SKIPPED %s: %s" % (case, why), flush=True)

    def finish(self):
        print("%s: %d passed, %d failed, %d skipped" % (self.name, self.passed, self.failed, self.skipped))
        sys.exit(1 if self.failed else SKIP if self.passed == 0 else 0)


SANITIZER_REPORT = re.compile(r"runtime error:|AddressSanitizer|LeakSanitizer|ThreadSanitizer")


def check_servers_ended(report):
    """Stops every server still running (SIGTERM) and checks that each ended with exit 0 and no sanitizer report."""
    for server in _running:
        rc = server.stop()
        text = server.stderr()
        found = SANITIZER_REPORT.search(text)
        report.check("server %s: exit 0, no sanitizer report" % " ".join(server.args),
                     rc == 0 and not found, (rc, text[found.start() - 200 if found else -300:][:3000]))


class NoServer(Exception):
    """The build has no HTTP server (libmicrohttpd or cJSON missing)."""


class StartFailed(Exception):
    """The server exited, or did not say where it listens, in time; the message holds its standard error."""


_running = []


@atexit.register
def _kill_all():
    for server in _running:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        if os.path.exists(server.log_path):
            os.unlink(server.log_path)


class Server:
    """`TRINITY serve ARGS` (add --port 0 to ARGS): started, its port read from its standard error."""

    def __init__(self, trinity, args):
        self.args = list(args)
        self.log = tempfile.NamedTemporaryFile(prefix="trinity_serve_", suffix=".log", delete=False)
        self.log_path = self.log.name
        self.proc = subprocess.Popen([trinity, "serve"] + list(args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        _running.append(self)
        deadline = time.time() + TIMEOUT
        while True:
            text = self.stderr()
            found = LISTENING.search(text)
            if found:
                self.host, self.port = found.group(1), int(found.group(2))
                self.slots, self.positions, self.device = int(found.group(3)), int(found.group(4)), found.group(5)
                return
            if self.proc.poll() is not None:
                if NO_SERVER in text:
                    raise NoServer(text.strip())
                raise StartFailed("exit %d: %s" % (self.proc.returncode, text.strip()))
            if time.time() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise StartFailed("no 'listening on' line in %.0f s: %s" % (TIMEOUT, text.strip()))
            time.sleep(0.05)

    def stderr(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def request(self, method, path, body=None, headers=None, raw=None, timeout=TIMEOUT):
        """(status, headers with lower-case names, payload bytes); body is sent as JSON, raw as it is."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
            sent_headers = {"Content-Type": "application/json"} if data is not None else {}
            sent_headers.update(headers or {})
            connection.request(method, path, body=data, headers=sent_headers)
            response = connection.getresponse()
            payload = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, payload
        finally:
            connection.close()

    def post(self, path, body, headers=None, raw=None):
        """(status, the JSON reply or None, payload bytes)"""
        status, _, payload = self.request("POST", path, body, headers, raw)
        try:
            return status, json.loads(payload), payload
        except ValueError:
            return status, None, payload

    def health(self):
        status, _, payload = self.request("GET", "/health")
        return json.loads(payload) if status == 200 else None

    def wait_idle(self, seconds):
        """Whether /health shows no busy slot and no queued request within `seconds`."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            h = self.health()
            if h and h.get("slots_busy") == 0 and h.get("requests_queued", 0) == 0:
                return True
            time.sleep(0.05)
        return False

    def stop(self, sig=signal.SIGTERM):
        """Sends `sig` (unless the server has ended) and returns the exit code (None where it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


def parse_sse(payload):
    """The data of each server-sent event (comment lines skipped); ValueError where the stream is malformed."""
    text = payload.decode("utf-8")
    if not text.endswith("\n\n"):
        raise ValueError("the stream does not end with a blank line: %r" % text[-80:])
    events = []
    for block in text[:-2].split("\n\n"):
        data = []
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            if not line.startswith("data: "):
                raise ValueError("not an SSE data line: %r" % line[:200])
            data.append(line[len("data: "):])
        if data:
            events.append("\n".join(data))
    return events


def stream_text(payload, chat):
    """(the concatenated text, the last chunk) of a streamed reply in OpenAI's format; ValueError where malformed:
    the events must be JSON chunks of one id and object, finish_reason null but in the last, then [DONE]."""
    events = parse_sse(payload)
    if not events or events[-1] != "[DONE]":
        raise ValueError("the stream does not end with data: [DONE]")
    chunks = [json.loads(e) for e in events[:-1]]
    if not chunks:
        raise ValueError("no chunk before [DONE]")
    object_name = "chat.completion.chunk" if chat else "text_completion"
    text = []
    for i, chunk in enumerate(chunks):
        choice = chunk["choices"][0]
        if chunk["object"] != object_name or chunk["id"] != chunks[0]["id"] or choice["index"] != 0:
            raise ValueError("chunk %d: object %r, id %r" % (i, chunk["object"], chunk["id"]))
        last = i == len(chunks) - 1
        if (choice["finish_reason"] is None) == last:
            raise ValueError("chunk %d: finish_reason %r" % (i, choice["finish_reason"]))
        if chat:
            if i == 0 and choice["delta"].get("role") != "assistant":
                raise ValueError("the first chat chunk does not name the assistant's role: %r" % choice["delta"])
            text.append(choice["delta"].get("content") or "")
        else:
            text.append(choice["text"])
    return "".join(text), chunks[-1]
