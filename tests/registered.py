"""Method lists for parametrised tests, derived from the registry and the classes'
declarations: a new method module is tested without editing any test."""

from __future__ import annotations

from vlmeft import registry


def shipped() -> list[str]:
    """Ids of the methods under ``methods/`` (not installed third-party ones)."""
    return [n for n in registry.names() if registry.entry(n).origin == registry.BUILTIN]


def classes(where=lambda cls: True) -> list[str]:  # noqa: ANN001
    """Shipped ids whose class satisfies ``where``."""
    return [n for n in shipped() if where(registry.get(n))]


def classifies(cls) -> bool:  # noqa: ANN001
    return "classification" in cls.tasks


def prompt_learners() -> list[str]:
    """Prompt methods that train a classifier (CoOp, VPT, MaPLe, VP, ...)."""
    return classes(lambda c: c.category.startswith("prompt.") and not c.training_free and classifies(c))


def adapters() -> list[str]:
    """Adapter methods of CLIP classification (the generative adapters have their own tests)."""
    return classes(lambda c: c.category.startswith("adapter.") and classifies(c))


def generative() -> list[str]:
    """Methods that write text (VQA, captioning) on a captioner."""
    from vlmeft import kinds

    return classes(kinds.generates)


def trained_configs(names: list[str]) -> list[tuple[str, dict[str, str]]]:
    """``(id, settings)`` that train: each id's default config unless it is training-free,
    plus each conformance variant that sets ``epochs`` (a declared training run)."""
    out = []
    for name in names:
        cls = registry.get(name)
        if not cls.training_free:
            out.append((name, {}))
        out += [(name, dict(settings)) for settings in cls.__dict__.get("conformance_variants", {}).values()
                if int(settings.get("epochs", "0")) > 0]
    return out
