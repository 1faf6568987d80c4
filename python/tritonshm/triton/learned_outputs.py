"""What a pool learns about outputs from responses, so that it can place them
in shared memory without being told their sizes.

Most models declare variable output dims (-1), so their configuration does
not say how big an output will be; a response does. Sizes are kept per
request *signature* (model, version, the inputs' names, types and shapes, the
outputs asked for): from the second request of a signature on, its outputs
have a slot of the largest size seen. An output whose size has varied between
runs of one signature (sampling, detections) gets a quarter more headroom, so
that it settles without reruns.

A new signature of a known *family* (the same model, inputs and ranks, other
dims: a new batch size, sequence length or image size) is predicted: an
output whose bytes have kept one ratio to an input's elements, or to one of
its dims, across two or more values of it is given that ratio times the new
value; one whose bytes were the same for two or more shapes, that size.
A prediction is a guess: the request layer only uses it where a request may
run again (see request_flow).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

__all__ = ["LearnedOutputs", "Signature", "signature_of"]

# (name, Triton datatype, shape) of each input
Described = Tuple[Tuple[str, str, Tuple[int, ...]], ...]
Signature = Tuple[Hashable, ...]
# A quantity an output's size may follow: ("elements", input index), ("dim",
# input index, axis), or ("constant",): the same size whatever the shapes.
Feature = Tuple[Hashable, ...]
_CONSTANT: Feature = ("constant",)


def signature_of(model_name: str, model_version: str, inputs: Described, outputs: Optional[Sequence[str]]) -> Signature:
    """The key under which a request's outputs are learned. Shapes are part of
    it: an output's size usually follows its inputs' shapes."""
    return (model_name, model_version, inputs, tuple(outputs) if outputs is not None else None)


def _family(signature: Signature) -> Signature:
    model_name, model_version, inputs, outputs = signature
    ranks = tuple((name, datatype, len(shape)) for name, datatype, shape in inputs)  # type: ignore[attr-defined]
    return (model_name, model_version, ranks, outputs)


def _features(signature: Signature) -> Dict[Feature, int]:
    inputs: Described = signature[2]  # type: ignore[assignment]
    found: Dict[Feature, int] = {_CONSTANT: 1}
    for index, (_, _, shape) in enumerate(inputs):
        found[("elements", index)] = math.prod(shape)
        for axis, dim in enumerate(shape):
            found[("dim", index, axis)] = dim
    return found


@dataclass
class _Seen:
    """One output of one signature."""

    largest: int
    varies: bool = False

    def slot(self) -> int:
        return self.largest + self.largest // 4 if self.varies else self.largest


@dataclass
class _Relation:
    """bytes = ratio x feature, held while every observation agrees."""

    ratio: Fraction
    first_value: int
    first_signature: Signature
    confirmed: bool = False  # held for a second signature with another value of the feature (any, if constant)


@dataclass
class _Family:
    relations: Dict[str, Dict[Feature, _Relation]] = field(default_factory=dict)
    names: List[str] = field(default_factory=list)  # the outputs responses had, in order


class LearnedOutputs:
    """Thread-safe and bounded: the least recently used signature (and
    family) goes first when there are more than `limit`."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._seen: "OrderedDict[Signature, Dict[str, _Seen]]" = OrderedDict()
        self._families: "OrderedDict[Signature, _Family]" = OrderedDict()
        self._lock = threading.Lock()

    def sizes(self, signature: Signature) -> Optional[Dict[str, int]]:
        """Slot sizes for the outputs of `signature`, by name, in the order
        responses had them; None if nothing was learned for it."""
        with self._lock:
            seen = self._seen.get(signature)
            if seen is None:
                return None
            self._seen.move_to_end(signature)
            return {name: entry.slot() for name, entry in seen.items()}

    def predict(self, signature: Signature) -> Dict[str, int]:
        """Sizes for the outputs of a signature not seen yet, from what its
        family's other shapes showed; only outputs with a confirmed relation."""
        with self._lock:
            family = self._families.get(_family(signature))
            if family is None:
                return {}
            features = _features(signature)
            predicted: Dict[str, int] = {}
            for name in family.names:
                guesses = [
                    relation.ratio * features[feature]
                    for feature, relation in family.relations.get(name, {}).items()
                    if relation.confirmed and feature in features
                ]
                if guesses:
                    predicted[name] = math.ceil(max(guesses))
            return predicted

    def learn(self, signature: Signature, observed: Mapping[str, int]) -> None:
        """Records the outputs a response had and their sizes."""
        if not observed:
            return
        with self._lock:
            new = signature not in self._seen
            seen = self._entry(signature)
            changed = False
            for name, nbytes in observed.items():
                changed |= self._record(seen, name, int(nbytes))
            if new or changed:  # the same sizes again teach the family nothing
                self._relate(signature, observed)

    def learn_needed(self, signature: Signature, name: str, nbytes: int) -> None:
        """Records the size the server said an output needed (a refused slot)."""
        with self._lock:
            self._record(self._entry(signature), name, int(nbytes))

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    # -- under the lock ----------------------------------------------------

    def _entry(self, signature: Signature) -> Dict[str, _Seen]:
        seen = self._seen.get(signature)
        if seen is None:
            seen = self._seen[signature] = {}
            while len(self._seen) > self._limit:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(signature)
        return seen

    @staticmethod
    def _record(seen: Dict[str, _Seen], name: str, nbytes: int) -> bool:
        """Whether this size is news for the output."""
        entry = seen.get(name)
        if entry is None:
            seen[name] = _Seen(nbytes)
            return True
        if nbytes == entry.largest:
            return False
        entry.varies = True
        entry.largest = max(entry.largest, nbytes)
        return True

    def _relate(self, signature: Signature, observed: Mapping[str, int]) -> None:
        key = _family(signature)
        family = self._families.get(key)
        if family is None:
            family = self._families[key] = _Family()
            while len(self._families) > self._limit:
                self._families.popitem(last=False)
        else:
            self._families.move_to_end(key)
        for name in observed:
            if name not in family.names:
                family.names.append(name)
        features = _features(signature)
        for name, nbytes in observed.items():
            relations = family.relations.get(name)
            if relations is None:
                family.relations[name] = {
                    feature: _Relation(Fraction(int(nbytes), value), value, signature)
                    for feature, value in features.items()
                    if value > 0
                }
                continue
            for feature in list(relations):
                relation, value = relations[feature], features.get(feature, 0)
                if value <= 0 or relation.ratio * value != nbytes:
                    del relations[feature]  # broken: never trusted again for this family
                elif signature != relation.first_signature and (feature == _CONSTANT or value != relation.first_value):
                    relation.confirmed = True
