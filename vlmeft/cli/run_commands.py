"""Placeholder until this command group lands."""


def register(sub) -> None:  # noqa: ANN001
    return None
