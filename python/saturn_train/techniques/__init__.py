"""The techniques, one module each, and the registry `SATURN_TECHNIQUE` names resolve in."""

from __future__ import annotations

from .base import FullState, Knobs, Technique, split
from .ddp import DDP
from .fsdp import FSDP
from .pipeline import Pipeline
from .single import Single
from .spilling import Spilling
from ..errors import TaskError

_REGISTRY: dict[str, type[Technique]] = {}


def register_technique(name: str, cls: type[Technique]) -> None:
    """Makes `cls` runnable as `SATURN_TECHNIQUE=name` (list `name` in the job's techniques)."""
    if not (isinstance(cls, type) and issubclass(cls, Technique)):
        raise TaskError(f"register_technique({name!r}, ...): the class must subclass "
                        f"saturn_train.Technique")
    _REGISTRY[name] = cls


def technique_class(name: str) -> type[Technique]:
    """The class registered under `name`."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TaskError(f"unknown technique {name!r}: known are {sorted(_REGISTRY)}; register "
                        f"your own with saturn_train.register_technique({name!r}, MyTechnique)"
                        ) from None


for _cls in (Single, DDP, FSDP, Pipeline, Spilling):
    register_technique(_cls.name, _cls)

__all__ = ["FullState", "Knobs", "Technique", "register_technique", "split", "technique_class"]
