"""Which tensors of a request travel through shared memory, and how big each
output's slot is: the rules, in one place.

- An input or output of at least `inline_threshold` bytes goes through shared
  memory, a smaller one inline (faster there), an empty one always inline.
- An output's slot size comes from the caller (`output_sizes`), else from
  what the pool knows: the larger of what its configuration's fixed dims give
  and what responses showed (so a size the server named beats the
  configuration's), else a prediction from other shapes of the same request.
  An output of unknown size comes back inline, and is learned from there.
- How much may be guessed depends on the attempt (`Attempt`): a first run
  that may run again may guess; a request that must run once (retry=False, a
  sequence's step) uses only sizes it can trust; a rerun after a slot was too
  small uses only the caller's; a request past the pool's limit goes inline,
  whole.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Dict, List, Optional

from .learned_outputs import LearnedOutputs, Signature
from .model_configs import ModelOutputs
from .request import InferRequest, OutputRequest

__all__ = ["Attempt", "PlannedOutput", "Transport", "choose"]


class Attempt(enum.Enum):
    GUESS = "guess"  # a run that may run again: learned and predicted sizes too
    TRUSTED = "trusted"  # must run once: the caller's sizes, and configured ones responses confirmed
    CALLER = "caller"  # the rerun after a slot was too small: the caller's sizes alone
    INLINE = "inline"  # past the pool's limit: everything inline, as plain tritonclient sends it


# Where an output's slot size came from (stats count predictions).
SOURCES = ("caller", "known", "predicted")


@dataclass
class PlannedOutput:
    request: OutputRequest
    slot: Optional[int]  # bytes in shared memory, or None: returned inline
    source: Optional[str] = None  # one of SOURCES when slot is set


@dataclass
class Transport:
    inputs_in_shm: List[bool]  # per request input
    outputs: Optional[List[PlannedOutput]]  # None: no output named, all come back inline

    @property
    def outputs_in_shm(self) -> int:
        return sum(out.slot is not None for out in self.outputs or ())


def choose(
    request: InferRequest,
    signature: Signature,
    model: Optional[ModelOutputs],
    learned: LearnedOutputs,
    threshold: int,
    attempt: Attempt,
) -> Transport:
    if attempt is Attempt.INLINE:
        return Transport([False] * len(request.inputs), _names_only(request, model, learned))
    inputs = [item.shareable and 0 < item.nbytes and item.nbytes >= threshold for item in request.inputs]
    known = learned.sizes(signature) or {}
    predicted = learned.predict(signature) if attempt is Attempt.GUESS and not known else {}
    wanted = _wanted(request, model, known, predicted)
    if wanted is None:
        return Transport(inputs, None)
    batch = request.batch()
    outputs = []
    for out in wanted:
        slot, source = _slot(out, model, batch, known, predicted, attempt)
        if slot is not None and not (0 < slot and (slot >= threshold or source == "caller")):
            slot, source = None, None
        outputs.append(PlannedOutput(out, slot, source))
    return Transport(inputs, outputs)


def _wanted(
    request: InferRequest, model: Optional[ModelOutputs], known: Dict[str, int], predicted: Dict[str, int]
) -> Optional[List[OutputRequest]]:
    """The outputs to name: the caller's; else the configuration's; else
    those responses of this request (or its family) had; else None."""
    if request.outputs is not None:
        return request.outputs
    names = model.names() if model and model.outputs else tuple(known or predicted)
    return [OutputRequest(name, request.output_sizes.get(name)) for name in names] if names else None


def _names_only(
    request: InferRequest, model: Optional[ModelOutputs], learned: LearnedOutputs
) -> Optional[List[PlannedOutput]]:
    if request.outputs is not None:
        return [PlannedOutput(out, None) for out in request.outputs]
    return None  # the server returns every output inline


def _slot(
    out: OutputRequest,
    model: Optional[ModelOutputs],
    batch: Optional[int],
    known: Dict[str, int],
    predicted: Dict[str, int],
    attempt: Attempt,
) -> "tuple[Optional[int], Optional[str]]":
    if not out.shareable:
        return None, None
    if out.size is not None:
        return out.size, "caller"
    if attempt is Attempt.CALLER:
        return None, None
    configured = model.output_bytes(out.name, batch) if model else None
    seen = known.get(out.name)
    if attempt is Attempt.TRUSTED:
        # Fixed dims a response of this request has kept to: the model may
        # return more than its configuration says, and this run cannot be repeated.
        if configured is not None and seen is not None and seen <= configured:
            return configured, "known"
        return None, None
    if configured is not None or seen is not None:
        return max(configured or 0, seen or 0), "known"
    guess = predicted.get(out.name)
    return (guess, "predicted") if guess is not None else (None, None)
