"""{{ item.* }} and {{ sample.* }} templates."""

import pytest

from preftune.errors import GraderError
from preftune.graders import templates

CONTEXT = {
    "item": {"answer": "Paris", "meta": {"city": {"name": "Lyon"}}, "steps": ["a", "b"],
             "n": 3, "tags": {"x": 1}},
    "sample": {"output_text": "It is Paris", "output_json": {"city": "Paris", "score": 0.5}},
}


@pytest.mark.parametrize(("text", "expected"), [
    ("{{item.answer}}", "Paris"),
    ("{{ item.answer }}", "Paris"),
    ("A: {{item.meta.city.name}}!", "A: Lyon!"),
    ("{{ item.steps[1] }}", "b"),
    ("{{sample.output_text}}", "It is Paris"),
    ("{{sample.output_json.city}}", "Paris"),
    ("{{sample.output_json.score}}", "0.5"),      # non-strings as JSON text
    ("{{item.n}} / {{item.tags}}", '3 / {"x": 1}'),
    ("no templates", "no templates"),
])
def test_render(text, expected):
    assert templates.render(text, CONTEXT, "g") == expected


@pytest.mark.parametrize(("text", "message"), [
    ("{{item.question}}", "g: template {{item.question}} refers to item.question, which the "
                          "item lacks"),
    ("{{ item.meta.city.zip }}", "refers to item.meta.city.zip"),
    ("{{item.steps[5]}}", "refers to item.steps[5]"),
    ("{{sample.output_tools}}", "which the sample lacks"),
])
def test_missing_fields_name_template_and_field(text, message):
    with pytest.raises(GraderError) as e:
        templates.render(text, CONTEXT, "g")
    assert message in e.value.message


@pytest.mark.parametrize(("text", "message"), [
    ("{{ answer }}", "has no namespace; write {{ item.answer }} or {{ sample.answer }}"),
    ("{{ item }}", "names no field"),
    ("{{ foo.bar }}", "uses namespace 'foo'; the namespaces are item and sample"),
    ("{{ item. }}", "is not of the form"),
    ("{{ item.a b }}", "is not of the form"),
])
def test_malformed_templates(text, message):
    with pytest.raises(GraderError) as e:
        templates.parse_refs(text, "g")
    assert message in e.value.message


def test_refs_carry_their_path():
    (ref,) = templates.parse_refs("x {{ item.a.b[2].c }} y", "g")
    assert (ref.namespace, ref.path, ref.dotted) == ("item", ("a", "b", 2, "c"), "item.a.b[2].c")
