"""The pet park's example application: an upload form classified by the embedded model.

The model is not a service here: it is a Python package installed beside the app
(``kennel export package pets@3`` then ``pip install dist/kennel_model_pets-3-py3-none-any.whl``)
and called in-process. Run it with ``KENNEL_MODEL_PACKAGE=kennel_model_pets python app.py``.
"""

from __future__ import annotations

import html
import importlib
import os
from typing import Any

import uvicorn
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response

model = importlib.import_module(os.environ.get("KENNEL_MODEL_PACKAGE", "kennel_model_pets"))
MAX_BYTES = 10 * 1024 * 1024
app = FastAPI(title="Pet park classifier (embedded model)")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Pet park classifier</title></head>
<body>
<h1>Cat or dog?</h1>
<p>Model {model} (embedded, no model server).</p>
<form action="/classify" method="post" enctype="multipart/form-data">
  <input type="file" name="file" accept="image/*" required>
  <button type="submit">Classify</button>
</form>
{result}
</body></html>
"""


def _page(result: str = "") -> str:
    meta = model.info()
    return PAGE.format(model=html.escape(f"{meta['name']}@{meta['version']}"), result=result)


@app.get("/", response_class=HTMLResponse)
def index() -> str:
    return _page()


@app.post("/classify")
async def classify(request: Request, file: UploadFile = File(...)) -> Response:  # noqa: B008
    data = await file.read(MAX_BYTES + 1)
    await file.close()
    wants_json = "application/json" in request.headers.get("accept", "")
    problem = "file too large" if len(data) > MAX_BYTES else None
    result: dict[str, Any] = {}
    if problem is None:
        try:
            result = model.predict(data)
        except (OSError, ValueError) as exc:  # not an image, truncated, too many pixels
            problem = f"not a readable image: {exc}"
    if problem is not None:
        if wants_json:
            return JSONResponse({"error": problem}, status_code=400)
        return HTMLResponse(_page(f"<p>{html.escape(problem)}</p>"), status_code=400)
    if wants_json:
        return JSONResponse(result)
    verdict = f"<p>It is a <b>{html.escape(result['label'])}</b> ({result['confidence']:.1%}).</p>"
    return HTMLResponse(_page(verdict))


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
