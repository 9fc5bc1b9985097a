"""HIT pages in, typed ratings out.

Rendering: items go into a Jinja2 template from ``hit_templates/`` with autoescaping on, so a
generated text holding ``<script>`` shows as text. The page is wrapped as an HTMLQuestion.

Parsing: worker answers are untrusted. They are parsed with defusedxml (no entity expansion, no
external entities), size-capped, and every field is checked against the items of the HIT. A bad
answer raises AnswerParseError with a reason; the caller keeps the raw document regardless.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import defusedxml.ElementTree as SafeET
import jinja2
from defusedxml import DefusedXmlException

from .errors import AnswerParseError, ConfigError

# The MTurk document formats live with the marketplace, which speaks them on the other side.
from .marketplace.documents import HTML_QUESTION_NAMESPACE as HTML_QUESTION_NS
from .marketplace.documents import build_answer_xml as _build_answer_xml

RATING_FIELD_PREFIX = "rating__"
LIKERT_SCALE = (1, 2, 3, 4, 5)
# Far above any honest answer (a few hundred bytes per item); caps memory spent on hostile input.
MAX_ANSWER_BYTES = 256 * 1024
MAX_COMMENT_CHARS = 2000
DEFAULT_INSTRUCTIONS = (
    "Each box holds a short text written by a language model, after the prompt shown above it. "
    "Rate each text from 1 (poor: broken, repetitive or meaningless) to 5 (excellent: fluent, "
    "sensible and pleasant to read). Judge each text on its own."
)


@dataclass(frozen=True)
class HitItem:
    id: str
    text: str
    prompt: str = ""


@dataclass(frozen=True)
class ParsedAnswer:
    ratings: dict[str, int]
    comment: str = ""


@functools.lru_cache(maxsize=16)
def _template_env(extra_dir: Path | None = None) -> jinja2.Environment:
    # Cached: compiling the template per HIT was most of publish's client-side time.
    loaders: list[jinja2.BaseLoader] = []
    if extra_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(extra_dir)))
    loaders.append(jinja2.FileSystemLoader(str(importlib.resources.files("mturk_tune.hit_templates"))))
    # autoescape=True for every template, whatever its file name: a HIT page is always HTML.
    return jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True, undefined=jinja2.StrictUndefined)


def render_hit_page(
    items: Sequence[HitItem],
    template: str = "likert.html",
    title: str = "Rate short texts",
    instructions: str = DEFAULT_INSTRUCTIONS,
    template_dir: Path | None = None,
) -> str:
    """The HTML page a worker sees for one HIT."""
    if not items:
        raise ValueError("a HIT needs at least one item")
    path = Path(template)
    if path.is_absolute() or path.parent != Path("."):
        template_dir, template = path.parent, path.name
    try:
        tmpl = _template_env(template_dir).get_template(template)
    except jinja2.TemplateNotFound:
        raise ConfigError(
            f"HIT template {template!r} not found: use one from hit_templates/ (likert.html) or a path to your own"
        ) from None
    return tmpl.render(
        items=items,
        title=title,
        instructions=instructions,
        scale=LIKERT_SCALE,
        scale_low=LIKERT_SCALE[0],
        scale_high=LIKERT_SCALE[-1],
        low_label="poor",
        high_label="excellent",
    )


# Characters XML 1.0 cannot carry at all, even in CDATA (a sampled byte token can produce them).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def html_question(page: str, frame_height: int = 0) -> str:
    """Wrap a page as MTurk's HTMLQuestion XML.

    Characters XML cannot hold become U+FFFD, and ']]>' in the page is split so CDATA stays closed.
    """
    safe = _XML_INVALID.sub("\ufffd", page).replace("]]>", "]]]]><![CDATA[>")
    return (
        f'<HTMLQuestion xmlns="{HTML_QUESTION_NS}"><HTMLContent><![CDATA[{safe}]]></HTMLContent>'
        f"<FrameHeight>{int(frame_height)}</FrameHeight></HTMLQuestion>"
    )


def answer_fields(answer_xml: str) -> dict[str, str]:
    """QuestionFormAnswers -> {QuestionIdentifier: FreeText}; duplicates and hostile XML are errors."""
    if not isinstance(answer_xml, str) or not answer_xml.strip():
        raise AnswerParseError("empty answer document")
    if len(answer_xml.encode("utf-8", "surrogatepass")) > MAX_ANSWER_BYTES:
        raise AnswerParseError(f"answer document larger than {MAX_ANSWER_BYTES} bytes")
    try:
        root = SafeET.fromstring(answer_xml)
    except DefusedXmlException as exc:
        raise AnswerParseError(f"answer document refused by defusedxml ({type(exc).__name__})") from None
    except SafeET.ParseError as exc:
        raise AnswerParseError(f"answer document is not well-formed XML ({exc})") from None
    except (ValueError, UnicodeError) as exc:
        raise AnswerParseError(f"answer document could not be decoded ({exc})") from None
    if _local(root.tag) != "QuestionFormAnswers":
        raise AnswerParseError(f"answer root element is <{_local(root.tag)}>, expected <QuestionFormAnswers>")
    fields: dict[str, str] = {}
    for answer in root:
        if _local(answer.tag) != "Answer":
            continue
        name, value = None, ""
        for child in answer:
            tag = _local(child.tag)
            if tag == "QuestionIdentifier":
                name = (child.text or "").strip()
            elif tag == "FreeText":
                value = child.text or ""
        if not name:
            raise AnswerParseError("an <Answer> has no QuestionIdentifier")
        if name in fields:
            raise AnswerParseError(f"field {name!r} appears twice")
        fields[name] = value
    return fields


def parse_answer(answer_xml: str, item_ids: Sequence[str], scale: Sequence[int] = LIKERT_SCALE) -> ParsedAnswer:
    """Ratings for exactly the items of the HIT, each an integer on the scale."""
    fields = answer_fields(answer_xml)
    expected = set(item_ids)
    ratings: dict[str, int] = {}
    for name, raw in fields.items():
        if not name.startswith(RATING_FIELD_PREFIX):
            continue
        item_id = name[len(RATING_FIELD_PREFIX):]
        if item_id not in expected:
            raise AnswerParseError(f"rating for unknown item {item_id[:80]!r}")
        ratings[item_id] = _scale_value(raw, scale, item_id)
    missing = [i for i in item_ids if i not in ratings]
    if missing:
        raise AnswerParseError(f"no rating for {len(missing)} of {len(item_ids)} items (first: {missing[0]!r})")
    comment = fields.get("comment", "")[:MAX_COMMENT_CHARS]
    return ParsedAnswer(ratings=ratings, comment=comment)


def build_answer_xml(fields: dict[str, str]) -> str:
    """A QuestionFormAnswers document exactly as the marketplace writes it for a submitted form."""
    return _build_answer_xml(fields.items())


def _scale_value(raw: str, scale: Sequence[int], item_id: str) -> int:
    text = (raw or "").strip()
    try:
        number = float(text)
    except ValueError:
        raise AnswerParseError(f"rating for item {item_id!r} is not a number: {text[:40]!r}") from None
    if not math.isfinite(number) or number != int(number) or int(number) not in scale:
        raise AnswerParseError(f"rating for item {item_id!r} is {text[:40]!r}, outside the scale {list(scale)}")
    return int(number)


def _local(tag: object) -> str:
    tag = str(tag)
    return tag.rsplit("}", 1)[-1]
