"""A real `cairn serve` on a free 127.0.0.1 port over a fresh data directory, for the Python
conformance suites (the Node suites use server.mjs): started, waited for, stopped, removed."""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CAIRN_BIN", os.path.join(ROOT, "target", "release", "cairn"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(*args, env=None, log=None, data=None):
    """Yields `(base, data_dir)`, base = `http://127.0.0.1:<port>/api`; `args` go to `serve`,
    `env` replaces the environment, `log` (a path) receives the server's output. `data`: an
    existing data directory, kept afterwards (default: a fresh one, removed)."""
    keep = data is not None
    data = data or tempfile.mkdtemp(prefix="cairn-conf-")
    port = free_port()
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen([BIN, "serve", "--data-dir", data, "--port", str(port), *args],
                            stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(200):
            try:
                if requests.get(base + "/v1/health", timeout=0.2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.05)
        else:
            raise RuntimeError("server did not start")
        yield base, data
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not keep:
            shutil.rmtree(data, ignore_errors=True)
        if log:
            out.close()
