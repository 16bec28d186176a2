"""Micro-batching: the digits of concurrent requests go through the model together, in one forward pass."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from mnist_lab.checkpoints.inference import probabilities
from mnist_lab.checkpoints.load import LoadedModel


class Batcher:
    """Runs the model once for the digits of all waiting requests, on a thread of its own."""

    def __init__(self, loaded: LoadedModel, max_batch: int, wait_s: float) -> None:
        self.loaded, self.max_batch, self.wait_s = loaded, max(1, max_batch), max(0.0, wait_s)
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="forward")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        """Begin taking requests (inside the server's event loop)."""
        self.task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        """Stop taking requests and release the model's thread."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """The ten class probabilities for one (28, 28) digit."""
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((pixels, future))
        return await future

    def forward(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities for a stack of digits (N, 28, 28), as predict computes them."""
        return probabilities(self.loaded.model, torch.from_numpy(pixels).unsqueeze(1)).numpy()

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        batch = [await self.queue.get()]
        if self.wait_s > 0 and self.queue.qsize() < self.max_batch - 1:
            await asyncio.sleep(self.wait_s)  # let requests arriving together share the forward pass
        while len(batch) < self.max_batch and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [(pixels, future) for pixels, future in await self._collect() if not future.done()]
            if not batch:
                continue  # every client went away
            try:
                probs = await loop.run_in_executor(self.pool, self.forward, np.stack([p for p, _ in batch]))
            except Exception as err:  # a bug: fail these requests, keep serving
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, future), p in zip(batch, probs):
                if not future.done():
                    future.set_result(p)
