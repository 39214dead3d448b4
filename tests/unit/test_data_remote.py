"""Remote shards: a prepared dir served over a real loopback HTTP server, with faults injected mid-shard.

A dropped connection gets a retry, or (when it keeps failing) a clear error naming the shard: never a shard with
silently fewer samples. The stream and its resume state are the same as reading the local dir.
"""

from __future__ import annotations

import itertools
import json
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.data.prepare.build import prepare
from pipeline.data.stream.loader import ShardError, build_loader
from pipeline.data.stream.verify import verify_prepared
from tests.unit.data_fixtures import write_parallel

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("curl") is None, reason="webdataset opens http:// with curl"),
]
BT = 400


class FaultyHandler(SimpleHTTPRequestHandler):
    """Serves a dir; a path in ``faults`` has its next N responses cut off halfway through the body."""

    faults: Counter[str]
    requests: Counter[str]

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.lstrip("/")
        self.requests[path] += 1
        if self.faults[path] <= 0:
            super().do_GET()
            return
        self.faults[path] -= 1
        data = (Path(self.directory) / path).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True  # the connection drops mid-shard


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("remote")
    src, tgt = write_parallel(root)
    prepare(f"parallel:{src}|{tgt}", root / "d", vocab_size=300, max_len=48, shard_size=8, seed=1)
    return root / "d"


@pytest.fixture()
def server(data_dir: Path) -> Iterator[tuple[str, type[FaultyHandler]]]:
    handler = type("Handler", (FaultyHandler,), {"faults": Counter(), "requests": Counter()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(data_dir)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def keys(loader) -> list[str]:
    return [k for batch in loader for k in batch["keys"]]


def test_remote_stream_equals_local_and_resumes_exactly(data_dir: Path, server) -> None:
    url, _ = server
    assert verify_prepared(url)["dataset_hash"] == verify_prepared(data_dir)["dataset_hash"]
    for split in ("train", "valid"):
        assert keys(build_loader(url, split, batch_tokens=BT, with_text=True)) == keys(
            build_loader(data_dir, split, batch_tokens=BT, with_text=True)
        )
    local = [b["keys"] for b in build_loader(data_dir, "train", batch_tokens=BT, seed=3, with_text=True)]
    first = build_loader(url, "train", batch_tokens=BT, seed=3, with_text=True)
    half = len(local) // 2
    assert [b["keys"] for b in itertools.islice(first, half)] == local[:half]
    resumed = build_loader(url, "train", batch_tokens=BT, seed=3, with_text=True)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert [b["keys"] for b in resumed] == local[half:]


def test_connection_dropped_mid_shard_is_retried(data_dir: Path, server) -> None:
    url, handler = server
    handler.faults["train/shard-000003.tar"] = 2  # two cut-off responses, then a good one
    got = keys(build_loader(url, "train", batch_tokens=BT, with_text=True))
    assert got == keys(
        build_loader(data_dir, "train", batch_tokens=BT, with_text=True)
    )  # not one sample fewer
    assert handler.requests["train/shard-000003.tar"] == 3


def test_connection_that_keeps_dropping_names_the_shard(server) -> None:
    url, handler = server
    handler.faults["train/shard-000005.tar"] = 100
    with pytest.raises(
        ShardError, match=r"corrupt shard http://127\.0\.0\.1:\d+/train/shard-000005\.tar: .*4 tries"
    ):
        keys(build_loader(url, "train", batch_tokens=BT, with_text=True))
    assert handler.requests["train/shard-000005.tar"] == 4


def test_remote_manifest_and_tokenizer_faults_are_one_line(server) -> None:
    url, handler = server
    with pytest.raises(
        FileNotFoundError, match=r"manifest unreadable: http://127\.0\.0\.1:\d+/nope/manifest\.json"
    ):
        build_loader(f"{url}/nope", "train", batch_tokens=BT)
    handler.faults["tokenizer.json"] = 1
    with pytest.raises(
        ShardError, match=r"tokenizer unreadable: http://127\.0\.0\.1:\d+/tokenizer\.json: OSError"
    ):
        verify_prepared(url)
