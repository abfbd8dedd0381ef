"""The documentation stays true to the code: the estimator table is the registry's, the README stays a short
user's document, and every relative link in the README and the docs leads to a file (and heading) that exists."""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")

#: the documents written by hand for readers (the generated reports under published/ are checked by their tests)
DOCUMENTS = sorted({README, os.path.join(ROOT, "benchmarks", "README.md"),
                    *glob.glob(os.path.join(ROOT, "docs", "*.md")),
                    *glob.glob(os.path.join(ROOT, "published", "*", "README.md"))})

#: the README's two set-up commands, read by CI (.ci/run) and by people: kept byte-identical
COMMANDS = ('pip install torch==2.13.0 -e . && python run_all.py',
            'pip install torch==2.13.0 -e ".[test]" && python -m pytest -q')


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def test_the_estimator_table_is_generated_from_the_registry():
    from estibench.reports import estimator_doc
    path = os.path.join(ROOT, "docs", "estimators.md")
    assert os.path.isfile(path) and _read(path) == estimator_doc.render(), (
        f"docs/estimators.md is not what the estimator registry gives: run `{estimator_doc.COMMAND}`")


def test_the_estimator_table_lists_every_registered_estimator_with_its_declarations():
    from estibench import estimators
    from estibench.reports import estimator_doc
    text = estimator_doc.render()
    rows = {line.split("|")[1].strip().strip("`"): line for line in text.splitlines()
            if line.startswith("| `") and "../estimators/" not in line}
    names = [name for name, _ in estimator_doc.registered()]
    assert set(rows) == set(names) and {"reinforce", "vimco", "relax", "ww"} <= set(rows)
    for name in names:
        factory = estimators.REGISTRY.known(name)
        cells = [c.strip() for c in rows[name].split("|")[1:-1]]
        assert cells[6] == str(factory.min_particles) and cells[7] == f"`{factory.guide_target}`"
        assert cells[9] == ("yes" if factory.unbiased else "no")
        assert all(kind in cells[2] for kind in factory.latent_types)


def test_the_generator_checks_and_writes(tmp_path, capsys):
    from estibench.reports import estimator_doc
    stale = tmp_path / "estimators.md"
    stale.write_text("old\n")
    assert estimator_doc.main(["--check", str(stale)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and estimator_doc.COMMAND in err
    assert estimator_doc.main(["--write", str(stale)]) == 0
    assert estimator_doc.main(["--check", str(stale)]) == 0


def test_the_readme_is_a_short_users_document():
    text = _read(README)
    lines = text.splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; at most 200 (move details to docs/)"
    for command in COMMANDS:
        assert command in lines, f"README.md lost its set-up command {command!r}"
    assert not re.findall(r"20\d\d-\d\d-\d\d", text), "README.md holds a date: results records go next to them"
    assert not re.findall(r"`[0-9a-f]{7,40}`", text), "README.md holds a commit hash"
    hashes = [w for w in re.findall(r"\b[0-9a-f]{7,40}\b", text) if re.search(r"\d", w) and re.search(r"[a-f]", w)]
    assert not hashes, f"README.md holds what looks like a commit hash: {hashes}"
    assert not re.findall(r"(?i)\bissues? #?\d+", text), "README.md names an issue number"


def test_the_readme_example_compiles():
    block = re.search(r"## In Python\n\n```python\n(.*?)```", _read(README), re.S)
    assert block, "README.md has no Python example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 15
    compile(code, "README.md", "exec")


def _slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped (but - and _), spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path):
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", _read(path), re.M)}


def _links(text):
    """Markdown link targets outside code blocks and code spans."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_resolves(path):
    broken = []
    for target in _links(_read(path)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(resolved):
            broken.append(target)
        elif anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
            broken.append(target)
    assert not broken, f"{os.path.relpath(path, ROOT)}: links to nothing: {broken}"
