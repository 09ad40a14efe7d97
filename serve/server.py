"""`tilec serve`: the engine, its thread, the HTTP API, uvicorn.

    srv = Server(EngineConfig(), host="127.0.0.1", port=8000)
    srv.run()                          # blocks; Ctrl-C shuts down gracefully

``start_in_thread`` runs the same server in a background thread (tests, notebooks) and
returns once it accepts connections.
"""
from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from .async_engine import AsyncEngine
from .config import EngineConfig
from .engine import LLMEngine

__all__ = ["Server", "default_served_name"]


def default_served_name(config: EngineConfig) -> str:
    if config.model is None:
        return "SmolLM2-135M-Instruct"
    p = Path(config.model)
    return p.stem if p.suffix == ".gguf" else p.name


class Server:
    def __init__(self, config: EngineConfig | None = None, host: str = "127.0.0.1", port: int = 8000,
                 served_model_name: str | None = None, api_key: str | None = None, max_waiting: int = 256,
                 engine: LLMEngine | None = None, log_level: str = "info", grace: float = 5.0):
        import uvicorn

        from .api_server import build_app
        self.engine = engine or LLMEngine(config or EngineConfig())
        self.name = served_model_name or default_served_name(self.engine.config)
        self.async_engine = AsyncEngine(self.engine, max_waiting=max_waiting)
        ae = self.async_engine

        @contextlib.asynccontextmanager
        async def lifespan(app):
            ae.start()
            yield
            await ae.shutdown(grace)            # finish or abort in-flight requests, free everything
        self.app = build_app(ae, self.name, api_key, lifespan=lifespan)
        self.config = uvicorn.Config(self.app, host=host, port=port, log_level=log_level,
                                     timeout_graceful_shutdown=int(grace) + 5, lifespan="on")
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        self.server.run()

    def start_in_thread(self, timeout: float = 60.0) -> "Server":
        self._thread = threading.Thread(target=self.server.run, name="tilec-http", daemon=True)
        self._thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server stopped while starting (is the port taken?)")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("the server did not start in time")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"
