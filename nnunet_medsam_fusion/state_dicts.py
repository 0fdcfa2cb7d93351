"""How a weights file differs from the network it should fill: one wording for every loader's error."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from nnunet_medsam_fusion.text import short_list


def state_dict_problems(found: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]],
                        fits: Callable[[tuple[int, ...], tuple[int, ...]], bool] | None = None,
                        keys: str = "keys") -> list[str]:
    """Missing keys, unexpected keys and shape mismatches of ``found`` against ``expected`` (key -> shape).

    Returns one phrase per kind of problem (empty: the file fits). ``fits(found_shape, expected_shape)`` relaxes
    the shape test (default: equal); ``keys`` names the keys in the phrases (e.g. "image_encoder.* keys").
    """
    def shapes_fit(key: str) -> bool:
        shape, want = tuple(found[key]), tuple(expected[key])
        return fits(shape, want) if fits else shape == want

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = [f"{key}: file {tuple(found[key])} vs expected {tuple(expected[key])}"
                  for key in sorted(set(found) & set(expected)) if not shapes_fit(key)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing {keys} ({short_list(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected {keys} ({short_list(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches ({short_list(mismatched)})")
    return problems
