"""A prediction's pictures, always found by the prediction's id (never by a path): its kept
input, decoded and re-encoded as a bounded PNG (so the browser only ever gets an image this
process drew), and its occlusion saliency overlay through the model version that served it.

Saliency runs ONNX Runtime on (grid² + 1) images: it is computed on demand on one background
thread, kept for the most recent predictions, and a request waits at most ``timeout_s`` for
it (a 503 that says to reload; the computation carries on and the reload finds it)."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from PIL import Image

from kennel.db.predictions import LoggedPrediction, PredictionStore
from kennel.errors import NotFoundError, ServiceError, StateError
from kennel.imaging import decode
from kennel.portable import ImageRejected
from kennel.serve.diskroom import NOT_KEPT
from kennel.serve.runtime import Predictor
from kennel.wiring import Workspace

SHOWN = 512  # longest side of an input image as the dashboard serves it


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def prediction(ws: Workspace, prediction_id: str) -> LoggedPrediction:
    found = PredictionStore(ws.db).get(prediction_id)
    if found is None:
        raise NotFoundError(f"prediction {prediction_id!r} not found")
    return found


def kept_input(ws: Workspace, p: LoggedPrediction) -> Image.Image:
    """The input image of ``p`` as kept in the artifact store; NotFoundError when it was not."""
    if p.input_sha256 is None or not ws.content.exists(p.input_sha256):
        raise NotFoundError(f"the input image of prediction {p.id} was not kept ({NOT_KEPT})")
    max_pixels = ws.project.config.serve.max_pixels
    try:
        return decode(ws.content.get(p.input_sha256), max_pixels=max_pixels, min_side=1).image
    except ImageRejected as exc:  # kept by a service with other limits than these
        raise StateError(f"the input image of prediction {p.id} cannot be shown: {exc}") from exc


def input_png(ws: Workspace, p: LoggedPrediction) -> bytes:
    image = kept_input(ws, p)
    image.thumbnail((SHOWN, SHOWN))
    return png(image)


class Saliency:
    """Occlusion saliency overlays (PNG) by prediction id, computed one at a time."""

    def __init__(
        self, ws: Workspace, *, timeout_s: float = 20.0, keep: int = 64, grid: int = 8
    ) -> None:
        self.ws = ws
        self.timeout_s = timeout_s
        self.keep = keep
        self.grid = grid
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kennel-ui-saliency")
        self._lock = threading.Lock()
        self._done: OrderedDict[str, bytes] = OrderedDict()
        self._running: dict[str, Future[bytes]] = {}
        self._predictors: OrderedDict[str, Predictor] = OrderedDict()

    def ready(self, prediction_id: str) -> bool:
        with self._lock:
            return prediction_id in self._done

    def png(self, p: LoggedPrediction) -> bytes:
        """The overlay of ``p``: from the cache, or computed now (waiting ``timeout_s`` at
        most: ServiceError, a 503, while it is still running)."""
        with self._lock:
            if p.id in self._done:
                self._done.move_to_end(p.id)
                return self._done[p.id]
            future = self._running.get(p.id)
            if future is None:
                image = kept_input(self.ws, p)  # NotFoundError at once, not in the thread
                future = self._pool.submit(self._compute, p, image)
                self._running[p.id] = future
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise ServiceError(
                f"the saliency map of prediction {p.id} is still being computed (over "
                f"{self.timeout_s:g} s so far): reload in a moment"
            ) from None

    def _compute(self, p: LoggedPrediction, image: Image.Image) -> bytes:
        from kennel.monitor.analyze import occlusion, overlay_map

        try:
            _label, drop = occlusion(self._predictor(p.ref), image, grid=self.grid, label=p.label)
            data = png(overlay_map(image, drop))
        except BaseException:  # a failure is answered by the future; a reload tries again
            with self._lock:
                self._running.pop(p.id, None)
            raise
        with self._lock:
            self._running.pop(p.id, None)
            self._done[p.id] = data
            while len(self._done) > self.keep:
                self._done.popitem(last=False)
        return data

    def _predictor(self, ref: str) -> Predictor:
        """The served version's Predictor; the two most recently used are kept loaded."""
        with self._lock:
            if ref in self._predictors:
                self._predictors.move_to_end(ref)
                return self._predictors[ref]
        predictor = self.ws.predictor(ref)
        with self._lock:
            self._predictors[ref] = predictor
            while len(self._predictors) > 2:
                self._predictors.popitem(last=False)
        return predictor

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
