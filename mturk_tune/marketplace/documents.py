"""The two XML documents a HIT carries: the Question sent by the requester, and the
QuestionFormAnswers built from a worker's submitted form."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from .errors import XML_PARSE_ERROR, MTurkError

ANSWERS_NAMESPACE = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd"
)
HTML_QUESTION_NAMESPACE = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"
)
EXTERNAL_QUESTION_NAMESPACE = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
)
QUESTION_FORM_NAMESPACE = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2017-11-06/QuestionForm.xsd"
)
# MTurk limits the Question parameter to 64 KiB of characters.
MAX_QUESTION_CHARS = 65535
# The form field MTurk consumes itself; it never appears among the answers.
ASSIGNMENT_ID_FIELD = "assignmentId"


@dataclass(frozen=True)
class ParsedQuestion:
    """What a worker's browser needs to show a HIT."""

    kind: str  # "HTMLQuestion", "ExternalQuestion" or "QuestionForm"
    html: str | None = None  # HTMLQuestion's HTMLContent
    external_url: str | None = None  # ExternalQuestion's ExternalURL
    frame_height: int = 0


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(root: Element, name: str) -> str | None:
    for child in root:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def parse_question(question: str) -> ParsedQuestion:
    """Check a Question document the way MTurk does at CreateHIT and return its parts."""
    if len(question) > MAX_QUESTION_CHARS:
        raise MTurkError(
            f"Question is {len(question)} characters; MTurk accepts at most {MAX_QUESTION_CHARS}.",
            XML_PARSE_ERROR,
        )
    try:
        root = SafeET.fromstring(question)
    except (SafeET.ParseError, DefusedXmlException, ValueError) as exc:
        raise MTurkError(f"There was an error parsing the XML question or answer data in your request: {exc}",
                         XML_PARSE_ERROR) from None
    kind = _local(root.tag)
    height_text = _child_text(root, "FrameHeight")
    try:
        frame_height = int(height_text) if height_text not in (None, "") else 0
    except ValueError:
        raise MTurkError(f"FrameHeight must be an integer, got {height_text!r}.", XML_PARSE_ERROR) from None
    if kind == "HTMLQuestion":
        html = _child_text(root, "HTMLContent")
        if html is None or not html.strip():
            raise MTurkError("HTMLQuestion needs a non-empty HTMLContent element.", XML_PARSE_ERROR)
        return ParsedQuestion(kind, html=html, frame_height=frame_height)
    if kind == "ExternalQuestion":
        url = _child_text(root, "ExternalURL")
        if not url or not url.strip().lower().startswith("https://"):
            raise MTurkError("ExternalQuestion needs an ExternalURL that starts with https://.", XML_PARSE_ERROR)
        return ParsedQuestion(kind, external_url=url.strip(), frame_height=frame_height)
    if kind == "QuestionForm":
        return ParsedQuestion(kind)
    raise MTurkError(
        f"Question root element must be HTMLQuestion, ExternalQuestion or QuestionForm, not {kind}.",
        XML_PARSE_ERROR,
    )


def _xml_text(value: str) -> str:
    """Escape as MTurk does: markup characters and everything outside ASCII as character references."""
    out = []
    for ch in value:
        if ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        elif ord(ch) > 126 or (ord(ch) < 32 and ch not in "\t\n\r"):
            # Control characters other than tab/newline cannot appear in XML 1.0 at all; drop them.
            if ord(ch) >= 32:
                out.append(f"&#{ord(ch)};")
        else:
            out.append(ch)
    return "".join(out)


def build_answer_xml(fields: Iterable[tuple[str, str]]) -> str:
    """Form fields -> MTurk's QuestionFormAnswers document (the ``Answer`` of an assignment).

    One ``<Answer>`` per field in the order given, except ``assignmentId``.
    """
    parts = ['<?xml version="1.0" encoding="ASCII"?>', f'<QuestionFormAnswers xmlns="{ANSWERS_NAMESPACE}">']
    for name, value in fields:
        if name == ASSIGNMENT_ID_FIELD:
            continue
        parts.append(
            f"<Answer><QuestionIdentifier>{_xml_text(name)}</QuestionIdentifier>"
            f"<FreeText>{_xml_text(value)}</FreeText></Answer>"
        )
    parts.append("</QuestionFormAnswers>")
    return "".join(parts)


def parse_answer_xml(answer: str) -> list[tuple[str, str]]:
    """QuestionFormAnswers -> [(QuestionIdentifier, FreeText)], for tests and the crowd's self-checks."""
    root = SafeET.fromstring(answer.encode("ascii", "xmlcharrefreplace"))
    pairs = []
    for node in root:
        if _local(node.tag) != "Answer":
            continue
        qid = _child_text(node, "QuestionIdentifier") or ""
        text = _child_text(node, "FreeText")
        pairs.append((qid, text if text is not None else ""))
    return pairs
