"""Token usage from the results inference code returns.

Understands OpenAI-style objects and dicts (``usage.prompt_tokens``/``completion_tokens`` or
``input_tokens``/``output_tokens``, cached tokens in ``prompt_tokens_details``), Anthropic
messages, llama-cpp-python completion dicts, Ollama responses (``prompt_eval_count``/``eval_count``),
vLLM ``RequestOutput`` objects (and lists of them). Anything else yields ``None``: unknown.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Usage", "extract_usage"]


class Usage(NamedTuple):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    response_model: str | None = None
    finish_reason: str | None = None


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _from_usage_block(u: Any, result: Any) -> Usage:
    inp = _int(_get(u, "prompt_tokens"))
    if inp is None:
        inp = _int(_get(u, "input_tokens"))
    out = _int(_get(u, "completion_tokens"))
    if out is None:
        out = _int(_get(u, "output_tokens"))
    if out is None and inp is not None and _int(_get(u, "total_tokens")) is not None:
        out = _get(u, "total_tokens") - inp  # embeddings report prompt + total only
    cached = None
    details = _get(u, "prompt_tokens_details") or _get(u, "input_tokens_details")
    if details is not None:
        cached = _int(_get(details, "cached_tokens"))
    if cached is None:
        cached = _int(_get(u, "cache_read_input_tokens"))  # Anthropic
    model = _get(result, "model")
    return Usage(inp, out, cached, model if isinstance(model, str) else None, _finish_reason(result))


def _finish_reason(result: Any) -> str | None:
    choices = _get(result, "choices")
    if isinstance(choices, (list, tuple)) and choices:
        fr = _get(choices[0], "finish_reason")
        return fr if isinstance(fr, str) else None
    for key in ("stop_reason", "done_reason", "finish_reason"):  # Anthropic, Ollama, TGI
        fr = _get(result, key)
        if isinstance(fr, str):
            return fr
    return None


def _from_vllm(outputs: list[Any]) -> Usage | None:
    inp = out = cached = 0
    finish = None
    for ro in outputs:
        ids = getattr(ro, "prompt_token_ids", None)
        comps = getattr(ro, "outputs", None)
        if ids is None or comps is None:
            return None
        inp += len(ids)
        for c in comps:
            out += len(getattr(c, "token_ids", ()) or ())
            finish = finish or getattr(c, "finish_reason", None)
        cached += _int(getattr(ro, "num_cached_tokens", None)) or 0
    return Usage(inp, out, cached or None, None, finish)


_tuple_new = tuple.__new__


def extract_usage(result: Any) -> Usage | None:
    """Usage from a result object, or None when the result says nothing about tokens."""
    if result.__class__ is dict:  # the commonest case, an OpenAI-style dict, inline (~2x faster)
        u = result.get("usage")
        if u.__class__ is dict:
            inp = u.get("prompt_tokens")
            out = u.get("completion_tokens")
            if inp.__class__ is int and out.__class__ is int and "prompt_tokens_details" not in u:
                finish = None
                choices = result.get("choices")
                if choices.__class__ is list and choices and choices[0].__class__ is dict:
                    finish = choices[0].get("finish_reason")
                model = result.get("model")
                return _tuple_new(Usage, (inp, out, None, model if model.__class__ is str else None,
                                          finish if finish.__class__ is str else None))  # Usage(...) without its frame
    if result is None or isinstance(result, (str, bytes, int, float)):
        return None
    u = _get(result, "usage")
    if u is not None:
        return _from_usage_block(u, result)
    if isinstance(result, dict):
        if "prompt_eval_count" in result or "eval_count" in result:  # Ollama
            return Usage(_int(result.get("prompt_eval_count")), _int(result.get("eval_count")), None,
                         result.get("model") if isinstance(result.get("model"), str) else None, _finish_reason(result))
        details = result.get("details")
        if isinstance(details, dict) and "generated_tokens" in details:  # TGI
            return Usage(None, _int(details.get("generated_tokens")), None, None, _int(None) or details.get("finish_reason"))
        return None
    if hasattr(result, "prompt_token_ids") and hasattr(result, "outputs"):
        return _from_vllm([result])
    if isinstance(result, (list, tuple)) and result and hasattr(result[0], "prompt_token_ids"):
        return _from_vllm(list(result))
    return None
