"""pyproject.toml lists its packages by hand (``methods/`` and ``taxonomy/`` are mapped
into the vlmeft namespace, which setuptools' discovery cannot see): this keeps the list
complete, so a new category folder is never silently left out of the wheel."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_problems(pyproject: dict, root: Path) -> list[str]:
    """Folders with an ``__init__.py`` under each mapped source folder that the package
    list lacks, and listed packages with no such folder."""
    setup = pyproject["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = set()
    for package, folder in setup["package-dir"].items():
        base = root / folder
        for init in base.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(base).parts
            name = ".".join([package, *rel])
            # A sub-folder mapped on its own (vlmeft.methods lives in methods/, not vlmeft/methods/).
            if not any(name.startswith(other + ".") or name == other for other in setup["package-dir"]
                       if other != package and other.startswith(package + ".")):
                found.add(name)
    problems = [f"package {name} ({name.replace('.', '/')}) is missing from [tool.setuptools] packages"
                for name in sorted(found - listed)]
    problems += [f"listed package {name} has no folder with an __init__.py" for name in sorted(listed - found)]
    return problems


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_package_folder_is_listed():
    assert package_problems(_pyproject(), ROOT) == []


def test_the_check_fails_for_a_missing_or_stale_entry():
    doc = _pyproject()
    packages = doc["tool"]["setuptools"]["packages"]
    doc["tool"]["setuptools"]["packages"] = [p for p in packages if p != "vlmeft.methods.prompt_visual_token"]
    assert package_problems(doc, ROOT) == ["package vlmeft.methods.prompt_visual_token "
                                           "(vlmeft/methods/prompt_visual_token) is missing from [tool.setuptools] packages"]
    doc["tool"]["setuptools"]["packages"] = [*packages, "vlmeft.methods.no_such_folder"]
    assert package_problems(doc, ROOT) == ["listed package vlmeft.methods.no_such_folder has no folder with an __init__.py"]


def test_a_new_category_folder_is_caught(tmp_path):
    for folder in ("vlmeft", "methods/prompt_new_leaf", "taxonomy"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "methods" / "__init__.py").write_text("")
    doc = {"tool": {"setuptools": {"packages": ["vlmeft", "vlmeft.methods", "vlmeft.taxonomy"],
                                   "package-dir": {"vlmeft": "vlmeft", "vlmeft.methods": "methods",
                                                   "vlmeft.taxonomy": "taxonomy"}}}}
    assert package_problems(doc, tmp_path) == ["package vlmeft.methods.prompt_new_leaf "
                                               "(vlmeft/methods/prompt_new_leaf) is missing from [tool.setuptools] packages"]
