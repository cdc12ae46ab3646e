import pytest

from service.summarizers.llm.prompts import PromptError, load_template, parse_template

TEMPLATE = (
    "# comment\n=== system ===\nYou list {{count}} things.\n=== user ===\nItems:\n{{ items }}\n"
)


def test_render_fills_every_variable_and_hash_follows_content():
    template = parse_template("t", TEMPLATE)
    assert template.variables == {"count", "items"}
    first = template.render(count=3, items="a, b")
    assert first.system == "You list 3 things."
    assert first.user == "Items:\na, b"
    assert first.hash == template.render(count=3, items="a, b").hash
    assert first.hash != template.render(count=3, items="a, c").hash


@pytest.mark.parametrize("values", [{"count": 3}, {"count": 3, "items": "x", "extra": 1}])
def test_render_refuses_missing_or_unexpected_variables(values):
    with pytest.raises(PromptError, match="missing|unexpected"):
        parse_template("t", TEMPLATE).render(**values)


def test_values_that_look_like_variables_stay_literal():
    rendered = parse_template("t", TEMPLATE).render(count=1, items="{{count}}")
    assert rendered.user == "Items:\n{{count}}"


def test_template_needs_both_sections():
    with pytest.raises(PromptError, match="section"):
        parse_template("t", "=== user ===\nhi")


def test_shipped_profile_prompt_loads_and_renders():
    template = load_template("profile")
    assert template.variables == {"events", "max_interests"}
    rendered = template.render(events="x | C | T", max_interests=5)
    assert "x | C | T" in rendered.user and "at most 5 interests" in rendered.system
    assert "Never guess age" in rendered.system
