"""The cleaning a model directory carries: its own copy of training/text/cleaning.py and its
settings.

    ticket_cleaning.py   training/text/cleaning.py as it was when the model was trained
    cleaning.json        CleaningSettings.to_dict(): version, clean_mail, mask_personal_data, ...

Serving (the TorchServe handler, `Predictor`) cleans with these two files, never with the
project's current code, so a model reads at serving exactly what it read in training. A model
directory from before cleaning existed has neither and reads texts as they come.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from training.files import module_file
from training.text.cleaning import CleaningSettings

CLEANING_SOURCE = module_file("training.text.cleaning")
CLEANING_MODULE_FILE = "ticket_cleaning.py"
CLEANING_FILE = "cleaning.json"


def write_cleaning(model_dir: Path, settings: CleaningSettings) -> None:
    """Put the cleaning code and `settings` into a model directory being written."""
    shutil.copy2(CLEANING_SOURCE, model_dir / CLEANING_MODULE_FILE)
    (model_dir / CLEANING_FILE).write_text(
        json.dumps(settings.to_dict(), indent=2) + "\n", encoding="utf-8"
    )


class ModelCleaning:
    """Cleans texts as one model directory says; does nothing for a model without cleaning."""

    def __init__(self, module: ModuleType | None, settings: dict[str, Any] | None) -> None:
        self.module = module
        self.settings = settings
        has_both = module is not None and settings is not None
        self._settings = module.CleaningSettings.from_dict(settings) if has_both else None

    @classmethod
    def current(cls, settings: CleaningSettings | None = None) -> ModelCleaning:
        """The project's cleaning with `settings` (the defaults), as a new model would clean."""
        from training.text import cleaning

        return cls(cleaning, (settings or CleaningSettings()).to_dict())

    @classmethod
    def load(cls, model_dir: str | Path) -> ModelCleaning:
        model_dir = Path(model_dir)
        source, settings = model_dir / CLEANING_MODULE_FILE, model_dir / CLEANING_FILE
        if not (source.is_file() and settings.is_file()):
            return cls(None, None)
        # A module name per content: two models with different cleaning code stay apart.
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        spec = importlib.util.spec_from_file_location(f"ticket_cleaning_{digest}", source)
        assert spec is not None
        module = sys.modules.get(spec.name)
        if module is None:
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up there
            # Compiled here: the import system would write __pycache__/ into the model directory.
            exec(compile(source.read_bytes(), str(source), "exec"), module.__dict__)
        return cls(module, json.loads(settings.read_text(encoding="utf-8")))

    def as_settings(self) -> CleaningSettings:
        """The settings to read data as this model does (nothing cleaned for an old model)."""
        if self.settings is None:
            return CleaningSettings(clean_mail=False, mask_personal_data=False)
        return CleaningSettings.from_dict(self.settings)

    def ticket(self, subject: str | None, body: str, content_type: str | None = None) -> str:
        """The text the model reads of one ticket (`content_type`: the body's)."""
        if self.module is None:
            return "\n".join(p.strip() for p in (subject, body) if p and p.strip())
        return self.module.clean_ticket(subject, body, content_type, self._settings)

    def text(self, text: str) -> str:
        """The text the model reads of `text` (a plain ticket text)."""
        if self.module is None:
            return text
        return self.module.clean_text(text, settings=self._settings)

    def texts(self, texts: list[str]) -> list[str]:
        return [self.text(t) for t in texts]
