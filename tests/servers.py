"""Real servers for the remote tests, all on loopback: nginx with WebDAV PUT,
Ceph's RADOS Gateway (a real S3 that checks signatures), and a
fault-injecting HTTP server."""
import http.server
import os
import shutil
import socket
import socketserver
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc=None, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class Nginx:
    """nginx serving root with GET/HEAD/Range and WebDAV PUT/DELETE."""

    def __init__(self, workdir, root, netns=None, port=None, access_log=False, autoindex=False):
        self.dir = str(workdir)
        self.root = str(root)
        self.netns = netns
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        # one line a request ending in the bytes sent (benchmarks count them)
        self.access_log = os.path.join(self.dir, "access.log")
        log = (f"log_format sent '$request_method $status $bytes_sent';\n"
               f"  access_log {self.access_log} sent") if access_log else "access_log off"
        open(self.access_log, "a").close()
        user = "user root;" if os.geteuid() == 0 else ""
        # directories listed as JSON: what prune needs of a plain HTTP server
        index = "\n      autoindex on;\n      autoindex_format json;" if autoindex else ""
        with open(conf, "w") as f:
            f.write(f"""{user}
worker_processes 2;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
  {log};
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fastcgi;
  uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  keepalive_requests 10000;
  server {{
    listen 127.0.0.1:{self.port};
    root {self.root};
    location / {{
      dav_methods PUT DELETE MKCOL;
      create_full_put_path on;{index}
      client_max_body_size 0;
      dav_access user:rw group:r all:r;
    }}
  }}
}}
""")
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen([*prefix, "nginx", "-c", conf, "-p", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if netns:
            # its loopback is the namespace's: probe from inside
            for _ in range(200):
                if subprocess.run([*prefix, "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{self.port}"],
                                  capture_output=True).returncode == 0:
                    break
                time.sleep(0.05)
        else:
            wait_port(self.port, self.proc)
        self.url = f"http://127.0.0.1:{self.port}/cache"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class RadosGateway:
    """A throwaway single-node Ceph on loopback serving S3 through radosgw:
    one mon (msgr2 only, no cephx), one memstore OSD, no mgr.  It checks
    SigV4 signatures as AWS does.  Raises FileNotFoundError without Ceph."""

    ACCESS, SECRET = "STASHFSTESTKEY", "stashfs-test-secret"

    def __init__(self, workdir, bucket="stash"):
        for b in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool"):
            if not shutil.which(b):
                raise FileNotFoundError(f"{b} not installed (tools/install-deps installs Ceph)")
        d = os.path.join(str(workdir), "ceph")
        for sub in ("run", "log", "mon", "osd", "rgw"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        self.dir, self.bucket, self.procs = d, bucket, []
        mon_port, self.port = free_port(), free_port()
        fsid = open("/proc/sys/kernel/random/uuid").read().strip()
        self.conf = os.path.join(d, "ceph.conf")
        with open(self.conf, "w") as f:
            f.write(f"""[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_port}
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_bind_msgr1 = false
ms_mon_client_mode = crc
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_objectstore = memstore
memstore_device_bytes = 1073741824
run_dir = {d}/run
admin_socket = {d}/run/$name.asok
log_file = {d}/log/$name.log
pid_file = {d}/run/$name.pid
[mon]
mon_data = {d}/mon
paxos_propose_interval = 0.01
[osd]
osd_data = {d}/osd
[client.rgw.t]
rgw_frontends = beast endpoint=127.0.0.1:{self.port}
# BUCKET.localhost is virtual-hosted style (curl resolves *.localhost itself)
rgw_dns_name = localhost
rgw_data = {d}/rgw
""")
        c = ["-c", self.conf]
        try:
            sh = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=60)  # noqa: E731
            sh("monmaptool", "--create", "--add", "a", f"v2:127.0.0.1:{mon_port}",
               "--fsid", fsid, os.path.join(d, "monmap"))
            sh("ceph-mon", "--mkfs", "-i", "a", "--monmap", os.path.join(d, "monmap"), *c)
            self.start("ceph-mon", "-f", "-i", "a", *c)
            wait_port(mon_port, self.procs[-1])
            sh("ceph-osd", "-i", "0", "--mkfs", *c)
            self.start("ceph-osd", "-f", "-i", "0", *c)
            self.start("radosgw", "-f", "-n", "client.rgw.t", *c)
            # beast listens once its pools exist
            wait_port(self.port, self.procs[-1], timeout=60)
            sh("radosgw-admin", *c, "user", "create", "--uid", "stashfs", "--display-name",
               "stashfs", "--access-key", self.ACCESS, "--secret", self.SECRET)
            self.endpoint = f"http://127.0.0.1:{self.port}"
            sh("curl", "-sf", "-X", "PUT", "--aws-sigv4", "aws:amz:us-east-1:s3",
               "-u", f"{self.ACCESS}:{self.SECRET}", "-H", "x-amz-content-sha256: "
               "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
               f"{self.endpoint}/{bucket}")
        except BaseException:
            self.stop()
            raise

    def start(self, *cmd):
        log = open(os.path.join(self.dir, "log", cmd[0] + ".out"), "wb")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        log.close()

    def env(self, secret=None):
        return {"AWS_ACCESS_KEY_ID": self.ACCESS, "AWS_SECRET_ACCESS_KEY": secret or self.SECRET,
                "AWS_REGION": "us-east-1", "STASHFS_S3_ENDPOINT": self.endpoint}

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


class FaultServer:
    """GET (with Range), HEAD and PUT over a directory, with injectable faults.

    add(match, mode, count=1, method=None): the next `count` requests whose
    path contains `match` get `mode`: "500", "404", "503", "slow" (2 s before
    the body), "stall" (100 bytes of the body, then silence), "reset" (close without
    a response), "truncate" (declared length, half the body, close),
    "wrong" (one byte flipped), "norange" (ignore Range, send all),
    "deny" (403 with an 8 MB S3-style XML body),
    "hold" (half the body, then the rest once `release` is set; `holding`
    is set while it waits), "redirect" (302 to `redirect_to` + the path),
    "huge" (ignore Range: 200, the whole object, then 1 GiB more),
    "chatty" (a PUT answered 200 with a fake JSON object and terminal
    escapes in its body), "drip" (a 200 declaring 1 GiB, then 2 kB a
    second for ever: never slow enough to count as stalled).
    """

    def __init__(self, root):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.rules = []
        self.log = []
        self.lock = threading.Lock()
        self.holding = threading.Event()
        self.release = threading.Event()
        self.redirect_to = None
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def fault(self):
                with srv.lock:
                    srv.log.append((self.command, self.path, self.headers.get("Range"),
                                    self.headers.get("Authorization")))
                    for r in srv.rules:
                        if r["count"] > 0 and r["match"] in self.path and \
                                (r["method"] is None or r["method"] == self.command):
                            r["count"] -= 1
                            return r["mode"]
                return None

            def local(self):
                p = self.path.split("?")[0].lstrip("/")
                return os.path.join(srv.root, p)

            def empty(self, status):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def reset(self):
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def failed(self, mode, statuses):
                """Answer with the fault a rule asked for; True if it did."""
                if mode in statuses:
                    self.empty(int(mode))
                elif mode == "deny":
                    # an S3-style refusal with an 8 MB body, a code with
                    # control bytes in it, and markup around it
                    body = (b"<?xml version='1.0'?><Error><Code>Sig\x1b[31mNope\n</Code>"
                            + b"<Message>" + b"x" * (8 << 20) + b"</Message></Error>")
                    self.send_response(403)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif mode == "reset":
                    self.reset()
                elif mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", srv.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    return False
                return True

            def do_PUT(self):
                mode = self.fault()
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                if self.failed(mode, ("500", "503")):
                    return
                p = self.local()
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p + ".tmp", "wb") as f:
                    f.write(body)
                os.rename(p + ".tmp", p)
                if mode == "chatty":
                    junk = b'{"command":"save","snapshot":"forged"}\n\x1b]0;owned\x07\x1b[2J'
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(junk)))
                    self.end_headers()
                    self.wfile.write(junk)
                    return
                self.empty(201)

            def do_HEAD(self):
                self.do_GET(head=True)

            def do_GET(self, head=False):
                mode = self.fault()
                if self.failed(mode, ("500", "503", "404")):
                    return
                p = self.local()
                if not os.path.isfile(p):
                    self.empty(404)
                    return
                data = open(p, "rb").read()
                status = 200
                rng = self.headers.get("Range")
                if mode == "drip" and not head:
                    self.send_response(200)
                    self.send_header("Content-Length", str(1 << 30))
                    self.end_headers()
                    try:
                        while True:
                            self.wfile.write(b"x" * 2048)
                            self.wfile.flush()
                            time.sleep(1)
                    except OSError:
                        self.close_connection = True
                    return
                if mode == "huge":
                    extra = 1 << 30
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data) + extra))
                    self.end_headers()
                    if head:
                        return
                    try:
                        self.wfile.write(data)
                        zeros = bytes(1 << 20)
                        for _ in range(extra >> 20):
                            self.wfile.write(zeros)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                if rng and mode not in ("norange",):
                    a, b = rng.split("=")[1].split("-")
                    a = int(a)
                    b = int(b) if b else len(data) - 1
                    data = data[a:b + 1]
                    status = 206
                if mode == "wrong" and data:
                    data = bytearray(data)
                    data[len(data) // 2] ^= 0xFF
                    data = bytes(data)
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if head:
                    return
                if mode == "slow":
                    time.sleep(2)
                if mode == "hold":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    srv.holding.set()
                    srv.release.wait(60)
                    self.wfile.write(data[len(data) // 2:])
                    return
                if mode in ("stall", "truncate"):
                    # a stall sends too little for any chunk to arrive whole:
                    # what the reader wanted never comes, whatever the pack order
                    self.wfile.write(data[: 100 if mode == "stall" else len(data) // 2])
                    self.wfile.flush()
                    if mode == "stall":
                        time.sleep(30)
                    self.reset()
                    return
                self.wfile.write(data)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/cache"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, match, mode, count=1, method=None):
        with self.lock:
            self.rules.append({"match": match, "mode": mode, "count": count, "method": method})

    def clear(self):
        with self.lock:
            self.rules = []
            self.log = []

    def requests(self, match=""):
        with self.lock:
            return [r for r in self.log if match in r[1]]

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
