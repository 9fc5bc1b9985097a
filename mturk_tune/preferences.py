"""Hidden preferences: the "true quality" a simulated crowd rates by, chosen by a short spec string.

A preference maps a text to a number in [0, 1]. Careful simulated workers rate a text near
``1 + 4 * preference(text)`` on a 1-5 scale (see marketplace/crowd.py); the closed loop logs the mean
preference of each round's generations as its *true reward*, which real crowds never reveal.

Specs:

- ``sentiment``: the net share of positive over negative words (``marketplace.crowd.default_preference``);
- ``target_words:W1,W2,...[@SHARE]``: the share of words that are in the list, divided by ``SHARE``
  (default 0.2) and capped at 1, so a text in which a fifth of the words are targets scores 1;
- ``length_band:MIN-MAX``: 1 for texts of MIN to MAX words, falling linearly to 0 over ``MIN`` words
  below the band and over ``MAX - MIN`` words (at least 5) above it;
- ``module:function`` (or ``package.module:function``): your own ``function(text) -> float``,
  importable from the current environment. Values outside [0, 1] are clipped.

``load_preference(spec)`` returns a :class:`Preference` (callable, with its ``spec`` for run records);
a bad spec raises ConfigError with one line naming the spec and the fix.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass
from typing import Callable

from .errors import ConfigError

DEFAULT_PREFERENCE = "sentiment"
DEFAULT_TARGET_SHARE = 0.2
_WORD = re.compile(r"[a-z0-9']+")
_HOW = (
    "use sentiment, target_words:W1,W2[@SHARE], length_band:MIN-MAX, or module:function "
    "naming your own function(text) -> float"
)


@dataclass(frozen=True)
class Preference:
    """A named hidden preference: ``preference(text)`` is the text's true quality in [0, 1]."""

    spec: str
    function: Callable[[str], float]

    def __call__(self, text: str) -> float:
        value = float(self.function(text))
        if math.isnan(value):
            raise ConfigError(f"preference {self.spec!r} returned NaN for a text; it must return a number in [0, 1]")
        return min(1.0, max(0.0, value))

    def mean(self, texts) -> float:
        """The mean preference of `texts` (NaN for none): a round's true reward."""
        values = [self(t) for t in texts]
        return sum(values) / len(values) if values else float("nan")


def words(text: str) -> list[str]:
    """Lower-cased words (letters, digits, apostrophes) of a text."""
    return _WORD.findall(text.lower())


def sentiment() -> Callable[[str], float]:
    from .marketplace.crowd import default_preference

    return default_preference


def target_words(argument: str, spec: str) -> Callable[[str], float]:
    listed, _, share_text = argument.partition("@")
    targets = frozenset(w.strip().lower() for w in listed.split(",") if w.strip())
    if not targets:
        raise ConfigError(f"preference {spec!r} lists no words; write target_words:good,kind,clean")
    share = DEFAULT_TARGET_SHARE
    if share_text:
        try:
            share = float(share_text)
        except ValueError:
            share = -1.0
        if not 0 < share <= 1:
            raise ConfigError(f"preference {spec!r}: the share after @ must be a number in (0, 1], got {share_text!r}")

    def score(text: str) -> float:
        found = words(text)
        if not found:
            return 0.0
        return min(1.0, sum(w in targets for w in found) / len(found) / share)

    return score


def length_band(argument: str, spec: str) -> Callable[[str], float]:
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", argument)
    if not match or int(match.group(1)) > int(match.group(2)):
        raise ConfigError(f"preference {spec!r} needs a word range MIN-MAX with MIN <= MAX, e.g. length_band:20-40")
    low, high = int(match.group(1)), int(match.group(2))
    below, above = max(low, 1), max(high - low, 5)

    def score(text: str) -> float:
        n = len(words(text))
        if n < low:
            return max(0.0, 1.0 - (low - n) / below)
        if n > high:
            return max(0.0, 1.0 - (n - high) / above)
        return 1.0

    return score


# Named preferences: name -> factory(argument after the colon, full spec). `None` argument: no colon.
_REGISTRY: dict[str, tuple[bool, Callable[..., Callable[[str], float]]]] = {
    "sentiment": (False, lambda argument, spec: sentiment()),
    "target_words": (True, target_words),
    "length_band": (True, length_band),
}


def preference_names() -> list[str]:
    return sorted(_REGISTRY)


def load_preference(spec: str | Preference | Callable[[str], float]) -> Preference:
    """The preference a spec names (see the module docstring); a Preference or callable passes through."""
    if isinstance(spec, Preference):
        return spec
    if callable(spec):
        return Preference(spec=getattr(spec, "__qualname__", repr(spec)), function=spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"preference must be a non-empty string, got {spec!r}; {_HOW}")
    spec = spec.strip()
    name, colon, argument = spec.partition(":")
    if name in _REGISTRY:
        takes_argument, factory = _REGISTRY[name]
        if takes_argument and not argument.strip():
            raise ConfigError(f"preference {spec!r} needs an argument after the colon; {_HOW}")
        if not takes_argument and colon:
            raise ConfigError(f"preference {name!r} takes no argument, got {spec!r}; write just {name}")
        return Preference(spec=spec, function=factory(argument, spec))
    if colon and argument:
        return Preference(spec=spec, function=_import_function(name, argument, spec))
    raise ConfigError(f"unknown preference {spec!r}; {_HOW}")


def _import_function(module_name: str, attribute: str, spec: str) -> Callable[[str], float]:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"preference {spec!r}: cannot import module {module_name!r} ({exc}); "
                          "check the name and that it is on PYTHONPATH") from None
    function = module
    for part in attribute.split("."):
        function = getattr(function, part, None)
        if function is None:
            raise ConfigError(f"preference {spec!r}: module {module_name!r} has no {attribute!r}")
    if not callable(function):
        raise ConfigError(f"preference {spec!r}: {attribute!r} is not a function of a text")
    return function  # type: ignore[return-value]
