"""The design space of ``mulfree explore``: which accelerator sizes are tried on a board.

A space is a list of values for each dimension; its points are every combination. The
dimensions are the options of ``mulfree build --model`` that change the design: the array
(``rows``, ``cols``), ``lanes`` (MACs per PE per cycle), ``spad`` (scratchpad words per bank,
filter and input alike) and ``tree_stages`` (pipeline registers in the lane tree). The global
buffers' depths and the partial-sum width are not dimensions: with a model they are set by its
layers (``sim.run_layer.accelerator_config``: the least that runs every layer; deeper buffers
or wider sums only cost area), exactly as ``mulfree build --model`` sets them.

Each board family has a default space (``default_space``); a TOML file replaces any of its
dimensions (``load_space``), e.g.::

    rows = [1, 2, 3]
    cols = [1, 2, 4]
    lanes = [1, 2]
    spad = [32]
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["DIMENSIONS", "Space", "default_space", "load_space", "point_name"]

#: The dimensions, in the order a point's parameters are listed, with the
#: ``hw.schedule.AcceleratorConfig`` field that checks each value.
DIMENSIONS = {"rows": "rows", "cols": "cols", "lanes": "lanes", "spad": "filter_spad",
              "tree_stages": "tree_stages"}

#: Set by the model's layers, not explored (see the module's docstring).
_FROM_THE_MODEL = {"depth": "global-buffer depths", "acc_bits": "the partial-sum width",
                   "counter_bits": "the counter width"}

#: Default spaces by device family (``boards.platforms.Board.describe()["family"]``). The
#: iCE40UP5K holds a 2x2 array at most (``docs/boards.md``), the ECP5-85F about 130 PEs.
_DEFAULTS = {
    "iCE40": {"rows": [1, 2, 3], "cols": [1, 2, 3, 4], "lanes": [1, 2, 4], "spad": [16, 32],
              "tree_stages": [0]},
    "ecp5": {"rows": [2, 3, 4, 6, 8, 12], "cols": [2, 4, 6, 8, 11, 14], "lanes": [1, 2, 4, 8],
             "spad": [32, 64], "tree_stages": [0, 1]},
}
_GENERIC = {"rows": [1, 2, 3], "cols": [1, 2, 4], "lanes": [1, 2], "spad": [32],
            "tree_stages": [0]}


@dataclasses.dataclass(frozen=True)
class Space:
    """Values of each dimension (``DIMENSIONS``); the points are their product."""

    values: dict

    def __post_init__(self):
        from hw.schedule import AcceleratorConfig
        for name, field in DIMENSIONS.items():
            values = self.values.get(name)
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"space: {name} must be a non-empty list of integers, not "
                                 f"{values!r}")
            for value in values:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"space: {name} must be a list of integers, not "
                                     f"{value!r} in {list(values)!r}")
                try:
                    AcceleratorConfig(**{field: value})
                except ValueError as exc:
                    raise ValueError(f"space: {name} = {value}: "
                                     f"{str(exc).replace(field, name)}") from None

    def points(self) -> list[dict]:
        """Every combination, as ``{dimension: value}``, in a fixed order (no duplicates)."""
        axes = [sorted(set(self.values[name])) for name in DIMENSIONS]
        return [dict(zip(DIMENSIONS, combo)) for combo in itertools.product(*axes)]

    def to_dict(self) -> dict:
        return {name: sorted(set(self.values[name])) for name in DIMENSIONS}


def default_space(family: str | None) -> Space:
    """The default space of a device family (``iCE40``, ``ecp5``; others get a small one)."""
    return Space(dict(_DEFAULTS.get(family, _GENERIC)))


def load_space(path, family: str | None) -> Space:
    """The default space of ``family`` with the dimensions of the TOML file ``path`` in place
    of its own; ``ValueError`` (one line) for an unreadable file or an unknown key or value."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read space file {str(path)!r}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"space file {str(path)!r} is not valid TOML: {exc}") from None
    for key in table:
        if key in _FROM_THE_MODEL:
            raise ValueError(f"space file {str(path)!r}: {key} is not explored: "
                             f"{_FROM_THE_MODEL[key]} are set by the model's layers; allowed "
                             f"keys: {', '.join(DIMENSIONS)}")
        if key not in DIMENSIONS:
            raise ValueError(f"space file {str(path)!r}: unknown key {key!r}; allowed: "
                             f"{', '.join(DIMENSIONS)}")
    values = dict(default_space(family).values)
    for key, value in table.items():
        values[key] = [value] if isinstance(value, int) and not isinstance(value, bool) \
            else value
    return Space(values)


def point_name(params: dict) -> str:
    """A short name of a point: ``2x1 L2 S32 T0``."""
    return (f"{params['rows']}x{params['cols']} L{params['lanes']} S{params['spad']} "
            f"T{params['tree_stages']}")
