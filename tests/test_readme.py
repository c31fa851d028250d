"""The README's "From Python" block runs as written (in a fresh folder holding the demo files)."""

from __future__ import annotations

import re
import shutil

import pytest

from conftest import REPO_ROOT


def readme_python_block(section: str = "## From Python") -> str:
    """The first ```python block after the heading ``section`` of README.md."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(section)
    match = re.search(r"```python\n(.*?)```", text[start:], flags=re.S)
    assert match is not None, f"no python block under {section!r}"
    return match.group(1)


def test_readme_from_python_block_runs(tmp_path, monkeypatch, capsys):
    code = readme_python_block()
    (tmp_path / "alignments").mkdir()
    for name in ("demo.a2m", "demo_mutants.csv"):
        shutil.copy(REPO_ROOT / "alignments" / name, tmp_path / "alignments" / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md (From Python)", "exec"), namespace)  # noqa: S102 - the README's own code
    result = namespace["result"]
    # It scored every demo mutant, and the model learnt something: the printed rho is a real fit.
    assert result.summary == {"ok": 1640}
    assert capsys.readouterr().out.split()[0] == f"{result.spearman['rho']}"
    assert result.spearman["rho"] > 0.5
    assert not list(tmp_path.glob("*.pt"))  # the example writes nothing but what it says


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
