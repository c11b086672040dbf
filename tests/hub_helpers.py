"""A local stand-in for the Hugging Face Hub (no internet here), served over real HTTP on the loopback.

It answers the revision, tree and resolve endpoints that huggingface_hub's hf_hub_download / snapshot_download use,
serving {repo_id: {path: bytes}}, each repo at its own commit (huggingface_hub caches a folder's file tree by
commit, so two repos at one commit would share a tree). With `failures`, the first that many requests are answered with `failure_status`
instead, as a Hub in trouble answers (503 overloaded, 429 rate-limited, ...); `requests` counts every request.
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandInHub:
    def __init__(self, repos: dict[str, dict[str, bytes]], failures: int = 0, failure_status: int = 503):
        self.requests = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, body: bytes, code: int = 200, **headers):
                self.send_response(code)
                for key, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(key.replace("_", "-"), value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                hub.requests += 1
                if hub.requests <= failures:
                    return self.reply(b'{"error": "failing on purpose"}', failure_status)
                path = self.path.split("?")[0]
                for repo, files in repos.items():
                    commit = hashlib.sha1(repo.encode()).hexdigest()
                    if path.startswith(f"/api/models/{repo}/tree/"):
                        tree = [{"type": "file", "path": f, "size": len(d), "oid": hashlib.sha1(d).hexdigest()} for f, d in files.items()]
                        return self.reply(json.dumps(tree).encode())
                    if path.startswith(f"/api/models/{repo}/revision/"):
                        info = {"id": repo, "sha": commit, "siblings": [{"rfilename": f} for f in files]}
                        return self.reply(json.dumps(info).encode())
                    if path.startswith(f"/{repo}/resolve/"):
                        name = path[len(f"/{repo}/resolve/"):].partition("/")[2]
                        if name in files:
                            data = files[name]
                            return self.reply(data, ETag=f'"{hashlib.sha256(data).hexdigest()}"', X_Repo_Commit=commit)
                self.reply(b"", 404, X_Error_Code="EntryNotFound")

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
