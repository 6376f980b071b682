"""Serve a greeting on a local port (8090, or $PORT)."""
import http.server
import os
import signal
import sys

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
greeting = os.environ.get("GREETING", "hello").encode() + b"\n"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(greeting)

    def log_message(self, fmt: str, *args: object) -> None:
        print("web: " + fmt % args, flush=True)


port = int(os.environ.get("PORT", "8090"))
print(f"web: listening on 127.0.0.1:{port}", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
