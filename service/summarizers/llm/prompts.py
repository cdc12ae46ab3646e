"""Prompt templates: plain files under ``prompts/``, rendered strictly, identified by hash.

A template file has a ``=== system ===`` and a ``=== user ===`` section; ``{{name}}`` marks a
variable. Rendering refuses a missing or an unexpected variable, so a half-filled prompt never
reaches a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from service.core.hashing import content_hash

_VARIABLE = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_SECTION = re.compile(r"^=== (system|user) ===$", re.MULTILINE)


class PromptError(ValueError):
    pass


def default_prompts_dir() -> Path:
    package = Path(__file__).resolve().parents[2]  # service/summarizers/llm/prompts.py
    shipped = package / "_prompts"  # inside an installed wheel
    return shipped if shipped.is_dir() else package.parent / "prompts"


@dataclass(frozen=True)
class RenderedPrompt:
    system: str
    user: str

    @property
    def hash(self) -> str:
        return content_hash(self.system + "\x00" + self.user)


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    system: str
    user: str

    @property
    def variables(self) -> set[str]:
        return set(_VARIABLE.findall(self.system)) | set(_VARIABLE.findall(self.user))

    @property
    def hash(self) -> str:
        return content_hash(self.system + "\x00" + self.user)

    def render(self, **values: object) -> RenderedPrompt:
        missing = self.variables - values.keys()
        unexpected = values.keys() - self.variables
        if missing or unexpected:
            raise PromptError(
                f"prompt {self.name!r}: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )

        def fill(text: str) -> str:
            # One pass over the template: a value that contains "{{x}}" stays literal text.
            return _VARIABLE.sub(lambda m: str(values[m.group(1)]), text)

        return RenderedPrompt(fill(self.system), fill(self.user))


def load_template(name: str, directory: Path | None = None) -> PromptTemplate:
    path = (directory or default_prompts_dir()) / f"{name}.txt"
    if not path.is_file():
        raise PromptError(f"prompt template {name!r} not found at {path}")
    return parse_template(name, path.read_text(encoding="utf-8"))


def parse_template(name: str, text: str) -> PromptTemplate:
    parts = _SECTION.split(text)
    # parts: [preamble (comments), "system", body, "user", body]
    if [p for p in parts[1::2]] != ["system", "user"]:
        raise PromptError(f"prompt {name!r} needs a '=== system ===' then a '=== user ===' section")
    return PromptTemplate(name, parts[2].strip(), parts[4].strip())
