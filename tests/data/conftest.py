"""Fixtures of the data layer's tests: no test reads the user's cache or the internet, a local
HTTP server for downloads, and the digits set."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from pyro_vae.data import Dataset, load_dataset
from pyro_vae.data import binarized_mnist as binarized_mnist_module
from pyro_vae.data import mnist as mnist_module


@pytest.fixture(autouse=True)
def isolated_data_root(monkeypatch, tmp_path):
    """No test may read the user's cache or download from the internet by accident."""
    monkeypatch.delenv("PYRO_VAE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", ["http://127.0.0.1:9/unreachable/"])
    monkeypatch.setattr(
        binarized_mnist_module, "BINARIZED_MNIST_MIRRORS", ["http://127.0.0.1:9/unreachable/"]
    )
    # Local test servers must be reached directly, even where a proxy is configured.
    for proxy_variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(proxy_variable, raising=False)


@pytest.fixture
def serve():
    """``serve(directory) -> base URL`` of an HTTP server on 127.0.0.1 for that directory."""
    servers = []

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def start(directory: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="package")
def digits() -> Dataset:
    """The digits set (grey levels), loaded once for the data tests that only read it."""
    return load_dataset("digits")
