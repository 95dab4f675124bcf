"""What open connections cost wxlogin in memory, worst case: N connections that each send
a request header up to the 16 KiB limit and never finish it, and N idle keep-alive ones.
Prints wxlogin's RSS with each. Run against a release build in development mode:

    python3 bench/connection_memory.py target/release/wxlogin 1400
"""
import os
import socket
import subprocess
import sys
import time

binary, count = sys.argv[1], int(sys.argv[2])
port = socket.socket()
port.bind(("127.0.0.1", 0))
addr = ("127.0.0.1", port.getsockname()[1])
port.close()
env = {
    "WXLOGIN_LISTEN": f"{addr[0]}:{addr[1]}",
    "WXLOGIN_MAX_CONNECTIONS": str(count * 2),
    "WXLOGIN_HEADER_READ_TIMEOUT_SECS": "600",
    "WXLOGIN_IDLE_TIMEOUT_SECS": "600",
    "RUST_LOG": "warn",
}
server = subprocess.Popen([binary, "--dev"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rss_kib():
    with open(f"/proc/{server.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


try:
    for _ in range(100):
        try:
            socket.create_connection(addr).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.5)
    idle = rss_kib()
    held = []
    header = b"GET /healthz HTTP/1.1\r\nHost: wxlogin\r\nX-Pad: " + b"a" * (15 * 1024)
    for _ in range(count):
        stream = socket.create_connection(addr)
        stream.sendall(header)
        held.append(stream)
    time.sleep(2)
    unfinished = rss_kib()
    for stream in held:
        stream.close()
    held = []
    time.sleep(1)
    for _ in range(count):
        stream = socket.create_connection(addr)
        stream.sendall(b"GET /healthz HTTP/1.1\r\nHost: wxlogin\r\n\r\n")
        stream.recv(4096)
        held.append(stream)
    time.sleep(1)
    keep_alive = rss_kib()
    print(f"RSS idle: {idle} KiB")
    print(f"{count} unfinished 15 KiB headers: {unfinished} KiB ({(unfinished - idle) / count:.1f} KiB each)")
    print(f"{count} idle keep-alive connections: {keep_alive} KiB ({(keep_alive - idle) / count:.1f} KiB each, after the above)")
finally:
    server.kill()
