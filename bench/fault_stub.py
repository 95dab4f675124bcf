"""A WeChat code2Session stand-in whose behaviour the fault run switches: `normal`
answers a session, `busy` errcode -1, `slow` a session after 2 s, `html` a proxy's HTML
error page. `POST /_mode` with the mode as the body switches it.

    python3 bench/fault_stub.py PORT
"""
import hashlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

MODE = "normal"


class Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, body, content_type="text/plain"):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        global MODE
        length = int(self.headers.get("Content-Length", 0))
        MODE = self.rfile.read(length).decode().strip()
        self.answer("ok")

    def do_GET(self):
        code = parse_qs(urlparse(self.path).query).get("js_code", [""])[0]
        if MODE == "busy":
            return self.answer(json.dumps({"errcode": -1, "errmsg": "system error, rid: fault"}))
        if MODE == "html":
            return self.answer("<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
        if MODE == "slow":
            time.sleep(2)
        digest = hashlib.sha256(code.encode()).hexdigest()
        self.answer(json.dumps({"openid": "o" + digest[:27], "session_key": "AAECAwQFBgcICQoLDA0ODw=="}))


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Stub).serve_forever()
