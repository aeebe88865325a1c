"""What a configuration section is: a dataclass whose values are checked when it is built, and the checks the
sections share (`within`, `positive`). `config` assembles the sections into `Config`; a kind that needs a section
of its own declares it (`kinds`), so adding a kind never edits the schema."""

from __future__ import annotations


def section_name(obj) -> str:
    """The TOML section a dataclass stands for: DiscreteConfig -> discrete."""
    return type(obj).__name__.removesuffix("Config").lower()


def within(obj, name: str, low, high) -> None:
    """Refuse `obj.name` outside [low, high], naming the key and the range."""
    value = getattr(obj, name)
    if not low <= value <= high:
        bound = f">= {low}" if value < low else f"<= {high}"
        raise ValueError(f"{section_name(obj)}.{name} must be {bound} (from {low} to {high}), got {value}")


def positive(obj, *names) -> None:
    """Refuse any of `obj`'s `names` below 1."""
    for n in names:
        if getattr(obj, n) < 1:
            raise ValueError(f"{section_name(obj)}.{n} must be >= 1, got {getattr(obj, n)}")
