"""Random and hostile answer documents: the parser returns valid ratings or a typed error, never crashes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mturk_tune.errors import AnswerParseError
from mturk_tune.hits import LIKERT_SCALE, build_answer_xml, parse_answer

ITEMS = ["i1", "i2", "i3"]

field_names = st.one_of(
    st.sampled_from([f"rating__{i}" for i in ITEMS] + ["comment", "assignmentId", "rating__", "rating__i4"]),
    st.text(max_size=30),
)
field_values = st.one_of(
    st.sampled_from(["1", "2", "3", "4", "5", "0", "6", "-1", "3.0", "3.5", "nan", "inf", "1e0", " 4 ", ""]),
    st.text(max_size=50),
)


def check(document: str) -> None:
    try:
        parsed = parse_answer(document, ITEMS)
    except AnswerParseError:
        return
    assert set(parsed.ratings) == set(ITEMS)
    assert all(isinstance(v, int) and v in LIKERT_SCALE for v in parsed.ratings.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(field_names, field_values, max_size=8))
def test_random_fields(fields):
    check(build_answer_xml(fields))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_random_text(document):
    check(document)


hostile_fragments = st.sampled_from([
    "<?xml version='1.0'?>",
    "<!DOCTYPE q [<!ENTITY a 'x'><!ENTITY b '&a;&a;&a;&a;'>]>",
    "<!DOCTYPE q [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>",
    "<QuestionFormAnswers xmlns='http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd'>",
    "</QuestionFormAnswers>", "<Answer>", "</Answer>", "<QuestionIdentifier>rating__i1</QuestionIdentifier>",
    "<FreeText>5</FreeText>", "<FreeText>&b;</FreeText>", "&e;", "<![CDATA[<script>]]>", "\x00", "\ud800", "&#0;",
    "<QuestionIdentifier>rating__i2</QuestionIdentifier><FreeText>3</FreeText>",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(hostile_fragments, max_size=14))
def test_hostile_fragments(parts):
    check("".join(parts))
