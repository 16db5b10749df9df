"""The README's message catalogue and saga diagram are the ones the code generates: a drift fails here, and
`manage.py contracts --write-readme` mends it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from config.contracts import catalogue_markdown, readme_blocks, readme_drift, readme_rewritten
from messaging import contracts
from messaging.catalogue import CATALOGUE
from saga import diagram

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_holds_the_generated_catalogue_and_diagram():
    drifted = readme_drift(README.read_text(encoding="utf-8"))

    assert drifted == [], f"the README's {drifted} drifted from the code: run `manage.py contracts --write-readme`"


def test_the_blocks_hold_every_routing_key_and_the_diagram():
    blocks = readme_blocks()

    for key in CATALOGUE:
        assert f"| `{key}` |" in blocks["message-catalogue"], key
    assert f"```mermaid\n{diagram.mermaid()}```" in blocks["saga-diagram"]


def test_the_saga_diagram_sits_in_the_saga_section_and_the_catalogue_in_messages():
    text = README.read_text(encoding="utf-8")

    saga, messages = text.index("\n## The saga\n"), text.index("\n## Messages\n")
    after = text.index("\n## ", messages + 1)
    assert saga < text.index("<!-- generated: saga-diagram -->") < messages
    assert messages < text.index("<!-- generated: message-catalogue -->") < after


@pytest.mark.parametrize(
    ("block", "edit"),
    [
        ("message-catalogue", lambda text: text.replace("| `payment.refund` |", "| `payment.refund.v2` |")),
        ("saga-diagram", lambda text: text.replace("    COMPLETED --> [*]\n", "")),
        ("saga-diagram", lambda text: text.replace("<!-- generated: saga-diagram -->", "")),
    ],
)
def test_a_drifted_block_is_named_and_rewriting_mends_it(block, edit):
    drifted = edit(readme_rewritten(README.read_text(encoding="utf-8")))

    assert readme_drift(drifted) == [block]
    if f"<!-- generated: {block} -->" in drifted:
        assert readme_drift(readme_rewritten(drifted)) == []
    else:
        with pytest.raises(LookupError, match=block):
            readme_rewritten(drifted)


def test_the_command_checks_and_rewrites_a_readme(tmp_path):
    readme = tmp_path / "README.md"
    text = readme_rewritten(README.read_text(encoding="utf-8"))
    readme.write_text(text.replace("| command | saga → payments |", "| event | saga → payments |"), encoding="utf-8")

    with pytest.raises(CommandError, match="message-catalogue"):
        call_command("contracts", "--check", "--readme", str(readme))
    call_command("contracts", "--write-readme", "--readme", str(readme))

    assert readme.read_text(encoding="utf-8") == text
    call_command("contracts", "--check", "--readme", str(readme))


@pytest.mark.parametrize(
    ("document", "read", "expected"),
    [
        ("asyncapi", yaml.safe_load, contracts.asyncapi),
        ("asyncapi-json", json.loads, contracts.asyncapi),
        ("schema", json.loads, contracts.catalogue_schema),
        ("diagram", str, diagram.mermaid),
        ("catalogue", str, catalogue_markdown),
    ],
)
def test_the_command_prints_each_document(document, read, expected, capsys):
    call_command("contracts", "--print", document)

    assert read(capsys.readouterr().out) == expected()
