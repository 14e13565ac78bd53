"""A realistic link for the benchmarks, on this machine only: two network
namespaces (client and server) joined by a veth pair, rate-limited with tc
tbf on both ends, and a delay added by a small forwarding proxy in the server
namespace (this kernel has no netem).  The proxy ends TCP itself, so it also
charges each new connection the round trip of a handshake (not TLS's).  The
server's nginx listens on the server namespace's loopback; the proxy on the
veth address forwards to it.

    with ShapedLink(rtt_ms=20, rate="1gbit") as link:
        link.run_server(["nginx", ...])          # inside the server namespace
        link.client_cmd(["curl", link.url])      # a command in the client namespace

Needs root (ip netns, tc).  Addresses: 10.77.0.1 (client), 10.77.0.2 (server),
both inside namespaces this script creates and removes.
"""
import os
import subprocess
import sys
import time

CLI, SRV = "stashfs-cli", "stashfs-srv"
CLI_IP, SRV_IP = "10.77.0.1", "10.77.0.2"

PROXY = r'''
import asyncio, sys
delay = float(sys.argv[1]) / 1000.0
listen_port, up_host, up_port = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
handshake = sys.argv[5] == "1"

async def pump(reader, writer, not_before=0.0):
    q = asyncio.Queue()
    async def deliver():
        while True:
            due, data = await q.get()
            if data is None:
                break
            now = asyncio.get_running_loop().time()
            if due > now:
                await asyncio.sleep(due - now)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except Exception:
            pass
    t = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            now = asyncio.get_running_loop().time()
            await q.put((max(now, not_before) + delay, data))
    finally:
        await q.put((0, None))
        await t

async def handle(cr, cw):
    # TCP ends here, at once: a real connection's first request leaves one
    # round trip (SYN, SYN-ACK) after its connect, so hold its data that long
    opened = asyncio.get_running_loop().time()
    try:
        ur, uw = await asyncio.open_connection(up_host, up_port)
    except Exception:
        cw.close()
        return
    await asyncio.gather(pump(cr, uw, opened + 2 * delay if handshake else 0.0), pump(ur, cw),
                         return_exceptions=True)
    cw.close()
    uw.close()

async def main():
    srv = await asyncio.start_server(handle, "0.0.0.0", listen_port, backlog=256)
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
'''


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


class ShapedLink:
    def __init__(self, rtt_ms=20, rate="1gbit", proxy_port=8080, handshake=True):
        self.rtt_ms = rtt_ms
        self.handshake = handshake
        self.rate = rate
        self.proxy_port = proxy_port
        self.procs = []

    def __enter__(self):
        self.teardown()
        sh("ip", "netns", "add", CLI)
        sh("ip", "netns", "add", SRV)
        sh("ip", "link", "add", "sfs-c", "netns", CLI, "type", "veth", "peer", "name", "sfs-s",
           "netns", SRV)
        for ns, dev, ip in ((CLI, "sfs-c", CLI_IP), (SRV, "sfs-s", SRV_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
               "rate", self.rate, "burst", "256kb", "latency", "50ms")
        return self

    def server(self, cmd, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", SRV, *cmd], **kw)
        self.procs.append(p)
        return p

    def start_proxy(self, upstream_port):
        """The delay: half the RTT each way, between the veth and nginx, and
        with handshake one RTT more before a new connection's first bytes
        go on (TCP's handshake, which the proxy itself answers at once)."""
        p = self.server([sys.executable, "-c", PROXY, str(self.rtt_ms / 2), str(self.proxy_port),
                         "127.0.0.1", str(upstream_port), "1" if self.handshake else "0"])
        for _ in range(100):
            r = subprocess.run(["ip", "netns", "exec", CLI, "bash", "-c",
                                f"exec 3<>/dev/tcp/{SRV_IP}/{self.proxy_port}"],
                               capture_output=True)
            if r.returncode == 0:
                return p
            time.sleep(0.05)
        raise RuntimeError("delay proxy did not start")

    @property
    def base(self):
        return f"http://{SRV_IP}:{self.proxy_port}"

    @staticmethod
    def client(cmd):
        """A command in the client's network namespace but the host's
        mount namespace, so a FUSE mount it makes is visible everywhere."""
        return ["nsenter", f"--net=/run/netns/{CLI}", *cmd]

    def teardown(self):
        for p in self.procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []
        sh("ip", "netns", "del", CLI, check=False)
        sh("ip", "netns", "del", SRV, check=False)

    def __exit__(self, *exc):
        self.teardown()


if __name__ == "__main__":
    # measure the link: small request latency and bulk throughput
    with ShapedLink() as link:
        print("ok", link.base)
