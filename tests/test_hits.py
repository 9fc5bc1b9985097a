import pytest

from mturk_tune.errors import AnswerParseError
from mturk_tune.hits import (
    HitItem,
    answer_fields,
    build_answer_xml,
    html_question,
    parse_answer,
    render_hit_page,
)

ITEMS = [HitItem(id="i1", text="The room was clean.", prompt="Review a hotel."), HitItem(id="i2", text="Hello")]


def test_page_has_one_radio_group_per_item_and_the_mturk_fields():
    page = render_hit_page(ITEMS)
    for item in ITEMS:
        assert f'data-item-id="{item.id}"' in page
        assert page.count(f'name="rating__{item.id}"') == 5
    assert 'name="assignmentId"' in page
    assert "/mturk/externalSubmit" in page
    assert "<script src" not in page and "http://" not in page.replace("http(s)", "")


def test_hostile_text_is_escaped():
    evil = HitItem(id="x1", text='<script>alert(1)</script><img src=x onerror="alert(2)">', prompt="</div><b>")
    page = render_hit_page([evil])
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;/div&gt;&lt;b&gt;" in page


def test_cdata_terminator_in_text_cannot_break_the_question():
    question = html_question(render_hit_page([HitItem(id="c1", text="a ]]> b")]))
    import xml.etree.ElementTree as ET

    root = ET.fromstring(question)
    content = root.find("{*}HTMLContent").text
    assert "a ]]&gt; b" in content or "a ]]> b" in content


def test_parse_answer_returns_typed_ratings():
    xml = build_answer_xml({"rating__i1": "4", "rating__i2": "1", "comment": "nice"})
    parsed = parse_answer(xml, ["i1", "i2"])
    assert parsed.ratings == {"i1": 4, "i2": 1}
    assert parsed.comment == "nice"


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"rating__i1": "4"}, "no rating for 1 of 2"),
        ({"rating__i1": "4", "rating__i2": "9"}, "outside the scale"),
        ({"rating__i1": "4", "rating__i2": "2.5"}, "outside the scale"),
        ({"rating__i1": "4", "rating__i2": "abc"}, "not a number"),
        ({"rating__i1": "4", "rating__i2": "3", "rating__zzz": "3"}, "unknown item"),
        ({"rating__i1": "nan", "rating__i2": "3"}, "outside the scale"),
    ],
)
def test_bad_answers_are_refused_with_a_reason(fields, reason):
    with pytest.raises(AnswerParseError, match=reason):
        parse_answer(build_answer_xml(fields), ["i1", "i2"])


def test_duplicate_field_is_refused():
    xml = build_answer_xml({"rating__i1": "4"}).replace(
        "</QuestionFormAnswers>",
        "<Answer><QuestionIdentifier>rating__i1</QuestionIdentifier><FreeText>5</FreeText></Answer></QuestionFormAnswers>",
    )
    with pytest.raises(AnswerParseError, match="twice"):
        answer_fields(xml)


@pytest.mark.parametrize(
    "document, reason",
    [
        ("", "empty"),
        ("<QuestionFormAnswers><Answer>", "not well-formed"),
        ("<Other/>", "expected <QuestionFormAnswers>"),
        ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><QuestionFormAnswers>&b;</QuestionFormAnswers>', "defusedxml"),
        ('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><QuestionFormAnswers>&e;</QuestionFormAnswers>', "defusedxml"),
        ("<QuestionFormAnswers>" + "x" * 300_000 + "</QuestionFormAnswers>", "larger than"),
    ],
)
def test_hostile_documents_raise_a_typed_error(document, reason):
    with pytest.raises(AnswerParseError, match=reason):
        answer_fields(document)


def test_characters_xml_cannot_hold_are_replaced():
    import xml.etree.ElementTree as ET

    question = html_question(render_hit_page([HitItem(id="c1", text="bad \x16 byte \x00 and \ud800")]))
    content = ET.fromstring(question).find("{*}HTMLContent").text
    assert "bad \ufffd byte \ufffd and \ufffd" in content
