"""A simulated crowd: workers with known behaviour who answer HITs on a Marketplace.

Each worker reads a HIT's HTML the way a person would (the rated items and their radio
buttons), picks a rating per item according to its profile, and submits the form through the
worker side of the marketplace, so answers arrive exactly as real ones would: as
QuestionFormAnswers documents on submitted assignments, with accept and submit times.

Kinds of worker (``WorkerProfile.kind``):

- ``careful``: rating = round(lo + (hi - lo) * p + bias + N(0, noise)), clipped to the offered
  values, where p = preference(item text) is the item's hidden true quality in [0, 1]
  (on a 1..5 scale: round(1 + 4p + bias + noise));
- ``noisy``: careful with a large ``noise``; ``biased``: careful with a non-zero ``bias``;
- ``spammer``: uniform at random; ``straightliner``: one fixed value for everything;
- ``fast_clicker``: uniform at random and very fast (at most 1.5 s per item);
- ``adversarial``: the careful rating mirrored (hi + lo - rating);
- ``colluding``: all members of a ``group`` give the same pseudo-random rating per item.

Everything is deterministic for a seed: a worker's rating of an item depends only on the seed,
the worker and the item, not on the order in which HITs are worked.

The HIT form contract (hit_templates/ follows it): each rated item is an element with
``data-item-id="<id>"`` containing an element of class ``item-text`` with the item's text; its
rating is a radio group ``name="rating__<id>"`` whose values are the offered ratings.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser

from .errors import MTurkError
from .service import Marketplace

KINDS = ("careful", "noisy", "biased", "spammer", "straightliner", "fast_clicker", "adversarial", "colluding")
RATING_PREFIX = "rating__"
FAST_CLICKER_MAX_SECONDS_PER_ITEM = 1.5
# Share of the assignment duration a worker may use: simulated workers always submit in time.
DEADLINE_MARGIN = 0.9

# The default hidden preference: the net share of positive over negative words.
POSITIVE_WORDS = frozenset(
    "good great excellent helpful clear kind happy love wonderful nice best thank thanks useful "
    "beautiful friendly bright calm warm delightful accurate correct honest fun enjoy glad "
    "pleasant brilliant lovely safe gentle hope".split()
)
NEGATIVE_WORDS = frozenset(
    "bad terrible awful useless wrong hate sad poor worst boring ugly angry rude confusing broken "
    "stupid nasty horrible dull fail failed failure unclear harmful dangerous annoying".split()
)
_WORD = re.compile(r"[a-z']+")


def default_preference(text: str) -> float:
    """Hidden "true quality" of a text in [0, 1]: 0.5 + 2.5 * (positive - negative words) / words.

    A text with no sentiment words scores 0.5; one in which a fifth of the words are net
    positive scores 1.0 (and a fifth net negative, 0.0). Deliberately simple, so a tuned model
    can be checked for having learned it.
    """
    words = _WORD.findall(text.lower())
    if not words:
        return 0.5
    net = sum(w in POSITIVE_WORDS for w in words) - sum(w in NEGATIVE_WORDS for w in words)
    return min(1.0, max(0.0, 0.5 + 2.5 * net / len(words)))


@dataclass
class WorkerProfile:
    """One simulated worker. ``group`` ties colluding workers together; ``activity`` is the
    relative chance of this worker being the one who takes the next open assignment."""

    worker_id: str
    kind: str
    noise: float = 0.5
    bias: float = 0.0
    seconds_per_item: float = 20.0
    group: str | None = None
    activity: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown worker kind {self.kind!r}; choose one of {', '.join(KINDS)}")


# ---------------------------------------------------------------------------------- reading a HIT


@dataclass
class RatedItem:
    item_id: str
    text: str
    values: list[str]  # the offered radio values, in page order


@dataclass
class HitForm:
    """What a worker sees on a HIT page: rated items, other radio groups, fields a browser posts."""

    items: list[RatedItem] = field(default_factory=list)
    other_radio_groups: dict[str, list[str]] = field(default_factory=dict)
    fixed_fields: list[tuple[str, str]] = field(default_factory=list)  # hidden/text inputs, textareas, selects
    field_order: list[str] = field(default_factory=list)  # every field name, in page order


class _FormReader(HTMLParser):
    _BREAKS = {"br", "p", "div", "li", "tr", "hr"}
    _VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str | None, bool]] = []  # (tag, item id, is item-text)
        self.texts: dict[str, list[str]] = {}
        self.radios: dict[str, list[str]] = {}
        self.fixed: list[tuple[str, str]] = []
        self.order: list[str] = []
        self.textarea: str | None = None
        self.select: tuple[str, list[str]] | None = None

    def _current_item(self) -> str | None:
        for _, item_id, _ in reversed(self.stack):
            if item_id is not None:
                return item_id
        return None

    def _in_item_text(self) -> bool:
        return any(is_text for _, _, is_text in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        name = a.get("name")
        if name and tag in ("input", "textarea", "select") and name not in self.order:
            self.order.append(name)
        if tag == "input":
            kind = a.get("type", "text").lower()
            if name and kind == "radio":
                self.radios.setdefault(name, []).append(a.get("value", "on"))
            elif name and kind in ("hidden", "text") and "disabled" not in a:
                self.fixed.append((name, a.get("value", "")))
        elif tag == "textarea" and name:
            self.textarea = name
        elif tag == "select" and name:
            self.select = (name, [])
        elif tag == "option" and self.select is not None:
            self.select[1].append(a.get("value", ""))
        if tag in self._BREAKS and self._current_item() is not None and self._in_item_text():
            self.texts.setdefault(self._current_item(), []).append(" ")  # a line break reads as a space
        if tag in self._VOID:
            return
        item_id = a.get("data-item-id")
        is_text = "item-text" in a.get("class", "").split()
        if is_text and self._current_item() is not None:
            self.texts.setdefault(self._current_item(), [])
        self.stack.append((tag, item_id, is_text))

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self.textarea is not None:
            self.fixed.append((self.textarea, ""))  # a person in a hurry leaves the comment empty
            self.textarea = None
        if tag == "select" and self.select is not None:
            name, options = self.select
            self.fixed.append((name, options[0] if options else ""))
            self.select = None
        for i in range(len(self.stack) - 1, -1, -1):  # tolerate unclosed tags, as browsers do
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        item_id = self._current_item()
        if item_id is not None and self._in_item_text():
            self.texts.setdefault(item_id, []).append(data)


def read_form(html: str) -> HitForm:
    """Parse a HIT page the way the crowd looks at it."""
    reader = _FormReader()
    reader.feed(html)
    reader.close()
    form = HitForm(fixed_fields=reader.fixed, field_order=reader.order)
    for name, values in reader.radios.items():
        if name.startswith(RATING_PREFIX):
            item_id = name[len(RATING_PREFIX):]
            text = " ".join("".join(reader.texts.get(item_id, [])).split())
            form.items.append(RatedItem(item_id, text, values))
        else:
            form.other_radio_groups[name] = values
    return form


# ---------------------------------------------------------------------------------- answering


def _unit(*parts: object) -> random.Random:
    """A private random stream for one (seed, worker, item) decision, independent of call order."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _numeric(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def _nearest(values: list[str], target: float) -> str:
    numbers = _numeric(values)
    assert numbers is not None
    best = min(range(len(values)), key=lambda i: (abs(numbers[i] - target), numbers[i]))
    return values[best]


class SimulatedCrowd:
    """Workers who take open HITs on ``market`` and submit answers according to their profiles."""

    def __init__(
        self,
        market: Marketplace,
        workers: list[WorkerProfile],
        preference: Callable[[str], float] | None = None,
        seed: int = 0,
    ):
        if not workers:
            raise ValueError("a crowd needs at least one worker")
        self.market = market
        self.workers = list(workers)
        self.preference = preference or default_preference
        self.seed = seed
        self._registered = False

    # -- ratings --------------------------------------------------------------------------

    def rate(self, worker: WorkerProfile, item: RatedItem) -> str:
        """The value this worker picks for this item (deterministic for seed, worker and item)."""
        values = item.values
        rng = _unit(self.seed, worker.worker_id, item.item_id)
        numbers = _numeric(values)
        if worker.kind in ("spammer", "fast_clicker") or numbers is None:
            return rng.choice(values)
        if worker.kind == "straightliner":
            return _unit(self.seed, worker.worker_id, "straightline").choice(values)
        if worker.kind == "colluding":
            return _unit(self.seed, "group", worker.group or worker.worker_id, item.item_id).choice(values)
        lo, hi = min(numbers), max(numbers)
        p = min(1.0, max(0.0, float(self.preference(item.text))))
        target = lo + (hi - lo) * p + worker.bias + rng.gauss(0.0, worker.noise)
        target = min(hi, max(lo, round(target)))
        if worker.kind == "adversarial":
            target = hi + lo - target
        return _nearest(values, target)

    def answer(self, worker: WorkerProfile, form: HitForm, hit_id: str, assignment_id: str = "") -> list[tuple[str, str]]:
        """The form fields this worker posts, in page order, as a browser would: hidden and
        text fields with their values (assignmentId filled in as the page's script does),
        one value per radio group, an empty comment."""
        values = dict(form.fixed_fields)
        if "assignmentId" in values or assignment_id:
            values["assignmentId"] = assignment_id
        for item in form.items:
            values[RATING_PREFIX + item.item_id] = self.rate(worker, item)
        for name, options in form.other_radio_groups.items():
            values[name] = _unit(self.seed, worker.worker_id, hit_id, name).choice(options)
        order = form.field_order + [name for name in values if name not in form.field_order]
        return [(name, values[name]) for name in order if name in values]

    def work_seconds(self, worker: WorkerProfile, n_items: int, hit_id: str, limit_s: float) -> float:
        per_item = worker.seconds_per_item
        if worker.kind == "fast_clicker":
            per_item = min(per_item, FAST_CLICKER_MAX_SECONDS_PER_ITEM)
        jitter = math.exp(_unit(self.seed, worker.worker_id, hit_id, "time").gauss(0.0, 0.3))
        seconds = max(1.0, per_item * max(1, n_items) * jitter)
        return min(seconds, limit_s * DEADLINE_MARGIN)

    # -- the work loop --------------------------------------------------------------------

    def _register(self) -> None:
        if not self._registered:
            for worker in self.workers:
                self.market.register_worker(worker.worker_id, country="US")
            self._registered = True

    def _candidates(self, rng: random.Random) -> list[WorkerProfile]:
        """All workers in a random order weighted by activity (Efraimidis-Spirakis keys)."""
        keyed = [(rng.random() ** (1.0 / max(w.activity, 1e-9)), i) for i, w in enumerate(self.workers)]
        return [self.workers[i] for _, i in sorted(keyed, reverse=True)]

    def work(self, max_assignments: int | None = None, progress: Callable[[int], None] | None = None) -> int:
        """Answer open HITs until every assignable slot is taken or ``max_assignments`` were submitted.

        Workers who are blocked, unqualified or already did a HIT are refused by the
        marketplace and another worker takes the slot. ``progress`` is called with 1 after
        each submitted assignment (tqdm's ``update`` fits). Returns the number submitted.
        """
        self._register()
        rng = random.Random(self.seed)
        submitted = 0
        for hit in self.market.list_available_hits():
            hit_id = hit["HITId"]
            try:
                form = read_form(self.market.get_question_html(hit_id))
            except MTurkError:
                continue  # not an HTMLQuestion: nothing a simulated worker can read
            open_slots = hit["NumberOfAssignmentsAvailable"]
            for worker in self._candidates(rng):
                if open_slots <= 0 or (max_assignments is not None and submitted >= max_assignments):
                    break
                try:
                    assignment_id = self.market.accept_hit(hit_id, worker.worker_id)
                except MTurkError:
                    continue
                accepted = self.market.get_worker_assignment(assignment_id, worker.worker_id)
                limit = (accepted["Deadline"] - accepted["AcceptTime"]).total_seconds()
                seconds = self.work_seconds(worker, len(form.items), hit_id, limit)
                fields = self.answer(worker, form, hit_id, assignment_id)
                self.market.submit_assignment(
                    assignment_id, worker.worker_id, fields, at=accepted["AcceptTime"] + timedelta(seconds=seconds)
                )
                submitted += 1
                open_slots -= 1
                if progress is not None:
                    progress(1)
            if max_assignments is not None and submitted >= max_assignments:
                break
        return submitted


# ---------------------------------------------------------------------------------- making a crowd


def _worker_id(seed: int, index: int) -> str:
    digest = hashlib.sha256(f"mturk-tune-crowd\x1f{seed}\x1f{index}".encode()).hexdigest().upper()
    return "A" + digest[:13]


def _counts(n: int, mix: dict[str, float]) -> dict[str, int]:
    """Split n workers over kinds in proportion to mix (largest remainder, ties in KINDS order)."""
    unknown = set(mix) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown worker kinds in mix: {', '.join(sorted(unknown))}; choose from {', '.join(KINDS)}")
    if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError("mix weights must be non-negative and not all zero")
    total = sum(mix.values())
    exact = {k: n * mix[k] / total for k in KINDS if mix.get(k, 0) > 0}
    counts = {k: int(v) for k, v in exact.items()}
    order = sorted(exact, key=lambda k: (-(exact[k] - counts[k]), KINDS.index(k)))
    for k in order[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def make_crowd(n_workers: int, mix: dict[str, float], seed: int) -> list[WorkerProfile]:
    """``n_workers`` workers whose kinds follow the weights in ``mix`` (e.g. {"careful": 0.7, "spammer": 0.3}).

    Per-kind settings: careful noise 0.5; noisy noise 1.5; biased bias +-1 (random sign);
    fast_clicker 1 s per item; colluders form groups of up to five. Speeds vary per worker
    around 20 s per item; activity varies (some workers take many more HITs than others).
    """
    if n_workers < 1:
        raise ValueError("n_workers must be at least 1")
    rng = random.Random(seed)
    kinds = [k for k, c in _counts(n_workers, mix).items() for _ in range(c)]
    rng.shuffle(kinds)
    workers = []
    colluders = 0
    for index, kind in enumerate(kinds):
        profile = WorkerProfile(
            worker_id=_worker_id(seed, index),
            kind=kind,
            noise=1.5 if kind == "noisy" else 0.5,
            bias=rng.choice((-1.0, 1.0)) if kind == "biased" else 0.0,
            seconds_per_item=1.0 if kind == "fast_clicker" else round(20.0 * math.exp(rng.gauss(0.0, 0.3)), 1),
            activity=round(math.exp(rng.gauss(0.0, 0.7)), 3),
        )
        if kind == "colluding":
            profile.group = f"ring-{colluders // 5 + 1}"
            colluders += 1
        workers.append(profile)
    return workers
