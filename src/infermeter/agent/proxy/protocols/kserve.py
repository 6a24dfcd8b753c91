"""KServe v2 / Triton inference protocol: ``/v2/models/{name}[/versions/{v}]/infer``.

The model comes from the path; the reply's ``model_name``/``model_version`` name what answered.
Tensors carry no token counts, so tokens stay unknown: these are ``inference`` operations.
"""

from __future__ import annotations

from typing import Any

from ....records import Operation
from .base import Body, Extracted, as_str

__all__ = ["PROTOCOL", "KServeProtocol", "model_from_path"]


def model_from_path(path: str) -> str | None:
    parts = path.strip("/").split("/")
    if len(parts) >= 4 and parts[0] == "v2" and parts[1] == "models" and parts[-1] == "infer":
        name = parts[2]
        if len(parts) == 6 and parts[3] == "versions":
            return f"{name}:{parts[4]}"
        return name
    return None


class KServeProtocol:
    name = "kserve"
    reads_bodies = True
    provider: str | None = "kserve"
    content_re = None

    def operation(self, path: str) -> str:
        return Operation.INFERENCE

    def prepare(self, path: str, body: bytes) -> bytes | None:
        return None

    def extract(self, path: str, request: Any, body: Body) -> Extracted:
        x = Extracted(operation=Operation.INFERENCE, request_model=model_from_path(path))
        if isinstance(request, dict):
            x.prompt = request.get("inputs")
        doc = body.json()
        if isinstance(doc, dict):
            name = as_str(doc.get("model_name"))
            version = as_str(doc.get("model_version"))
            x.response_model = f"{name}:{version}" if name and version else name
        elif body.complete and body.head:
            x.malformed = True
        return x


PROTOCOL = KServeProtocol()
