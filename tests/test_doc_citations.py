"""Every test that README.md and docs/ cite exists: a renamed or deleted test must not leave a claim behind."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "examples" / "README.md"]
# ``test_x.py``, ``tests/test_x.py``, ``test_x.py::test_name``, and ``::test_name`` after a file named before it;
# a test file in another folder (``metrics/test_x.py``: an official scorer's own tests) is not one of ours
CITATION = re.compile(r"(?<![\w/.-])(?:tests/)?(?P<file>test_\w+\.py)(?:::(?P<test>\w+))?"
                      r"|(?<![\w.])::(?P<same_file>test_\w+)")


def defined_tests(path: Path) -> set[str]:
    """The test functions a test module defines (at module level or in classes)."""
    return {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}


def citations(text: str) -> list[tuple[str, str | None]]:
    """(file, test or None) of every citation, ``::name`` resolved to the file cited last before it."""
    cited, file = [], None
    for match in CITATION.finditer(text):
        if match["file"]:
            file = match["file"]
            cited.append((file, match["test"]))
        elif file is not None:
            cited.append((file, match["same_file"]))
    return cited


def test_the_citation_pattern_reads_every_form():
    text = ("`test_a.py::test_one`, `::test_two`; see tests/test_b.py and `test_c.py::test_three`, "
            "`::test_four` (a module attribute like x::y is not one, nor another project's metrics/test_d.py)")
    assert citations(text) == [("test_a.py", "test_one"), ("test_a.py", "test_two"), ("test_b.py", None),
                               ("test_c.py", "test_three"), ("test_c.py", "test_four")]


def test_every_cited_test_exists():
    missing = []
    for document in DOCUMENTS:
        for file, test in citations(document.read_text()):
            path = REPO / "tests" / file
            if not path.is_file():
                missing.append(f"{document.relative_to(REPO)}: tests/{file}")
            elif test is not None and test not in defined_tests(path):
                missing.append(f"{document.relative_to(REPO)}: {file}::{test}")
    assert not missing, "cited but not defined:\n" + "\n".join(sorted(set(missing)))
