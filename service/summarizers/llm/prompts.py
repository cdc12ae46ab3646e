"""Prompt templates: plain files under ``prompts/``, rendered strictly, identified by hash.

A template file has a ``=== system ===`` and a ``=== user ===`` section, and between them
optionally a worked example as its own chat turns (``=== example user ===`` then ``=== example
assistant ===``, not rendered: literal text); ``{{name}}`` marks a variable. Rendering refuses
a missing or an unexpected variable, so a half-filled prompt never reaches a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from service.core.hashing import content_hash

_VARIABLE = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_SECTION = re.compile(r"^=== (system|example user|example assistant|user) ===$", re.MULTILINE)


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
    example: tuple[str, str] | None = None  # a worked (user, assistant) turn before the user's

    @property
    def hash(self) -> str:
        return content_hash(_joined(self.system, self.user, self.example))


def _joined(system: str, user: str, example: tuple[str, str] | None) -> str:
    # Without an example, the same text (and hash) as before examples existed.
    return "\x00".join([system, user, *(example or ())])


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    system: str
    user: str
    example: tuple[str, str] | None = None

    @property
    def variables(self) -> set[str]:
        return set(_VARIABLE.findall(self.system)) | set(_VARIABLE.findall(self.user))

    @property
    def hash(self) -> str:
        return content_hash(_joined(self.system, self.user, self.example))

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

        return RenderedPrompt(fill(self.system), fill(self.user), self.example)


def load_template(name: str, directory: Path | None = None) -> PromptTemplate:
    path = (directory or default_prompts_dir()) / f"{name}.txt"
    if not path.is_file():
        raise PromptError(f"prompt template {name!r} not found at {path}")
    return parse_template(name, path.read_text(encoding="utf-8"))


def parse_template(name: str, text: str) -> PromptTemplate:
    parts = _SECTION.split(text)
    # parts: [preamble (comments), "system", body, ("example user", body, "example assistant",
    # body,) "user", body]
    sections = parts[1::2]
    bodies = dict(zip(sections, (body.strip() for body in parts[2::2])))
    if sections not in (
        ["system", "user"],
        ["system", "example user", "example assistant", "user"],
    ):
        raise PromptError(
            f"prompt {name!r} needs a '=== system ===' then a '=== user ===' section "
            "(with an optional '=== example user ===', '=== example assistant ===' pair between)"
        )
    example = None
    if "example user" in bodies:
        example = (bodies["example user"], bodies["example assistant"])
    return PromptTemplate(name, bodies["system"], bodies["user"], example)
