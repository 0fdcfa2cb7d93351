"""Random 3D vessel trees and their partial-volume rasterisation.

A tree is grown as tortuous random-walk centrelines inside an ellipsoidal head region: radii taper along
the path and split at bifurcations by Murray's law (r0^3 = r1^3 + r2^3). Each step of a centreline is a
tapered capsule (a sphere swept along a line segment with linearly changing radius). Rasterisation gives,
per voxel, the fraction of a supersampled grid that lies inside a vessel, so thin vessels and borders
get the partial-volume values a real scanner would show.

All positions are in millimetres in the array's (x, y, z) frame: voxel ``i`` has its centre at
``i * spacing`` and covers ``[(i - 0.5) * spacing, (i + 0.5) * spacing]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

STEP_MM = 0.6  # centreline step; short enough for smooth curves at the smallest radii
MIN_RADIUS_MM = 0.3
MAX_ROOT_RADIUS_MM = 2.5
MAX_SEGMENTS = 6000  # bounds the work per volume whatever the random draws


@dataclass(frozen=True)
class Ellipsoid:
    """The head region: centre and semi-axes in mm."""

    centre: np.ndarray
    semi_axes: np.ndarray

    def normalised_radius(self, points: np.ndarray) -> np.ndarray:
        """1 on the surface, < 1 inside; ``points`` is (..., 3) in mm."""
        return np.sqrt((((points - self.centre) / self.semi_axes) ** 2).sum(axis=-1))


@dataclass(frozen=True)
class VesselSegments:
    """Tapered capsules: ``starts``/``ends`` (N, 3) in mm, radii (N,) in mm at each end."""

    starts: np.ndarray
    ends: np.ndarray
    start_radii: np.ndarray
    end_radii: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _rotate_away(direction: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at ``angle`` radians from ``direction``, turned about a random perpendicular axis."""
    perpendicular = _unit(np.cross(direction, _unit(rng.standard_normal(3))))
    return np.cos(angle) * direction + np.sin(angle) * perpendicular


def grow_vessel_tree(head: Ellipsoid, root_radius_max: float, rng: np.random.Generator) -> VesselSegments:
    """Grow 2-4 root vessels entering the head from below, with branches, until they get thin or leave.

    Direction follows an Ornstein-Uhlenbeck curvature (smooth tortuosity, correlation length ~4 mm);
    radius decays exponentially along the path; bifurcations occur every ~5-10 mm on average.
    """
    starts, ends, r_starts, r_ends = [], [], [], []
    stack = []
    for _ in range(rng.integers(2, 5)):
        up_ish = _unit(rng.standard_normal(3) * np.array([1.0, 1.0, 0.5]) - np.array([0.0, 0.0, 1.0]))
        entry = head.centre + 0.97 * head.semi_axes * up_ish
        direction = _unit(-up_ish + 0.4 * rng.standard_normal(3))
        radius = rng.uniform(0.6, 1.0) * root_radius_max
        stack.append((entry, direction, radius))

    correlation = np.exp(-STEP_MM / 4.0)
    while stack and len(starts) < MAX_SEGMENTS:
        point, direction, radius = stack.pop()
        tortuosity = rng.uniform(0.1, 0.35)  # rad/mm of direction change, divided by (1 + radius in mm)
        taper_length = rng.uniform(25.0, 60.0)
        branch_spacing = rng.uniform(5.0, 10.0)
        curvature = np.zeros(3)
        for _ in range(int(80.0 / STEP_MM)):  # no single vessel longer than 80 mm
            if radius < MIN_RADIUS_MM or len(starts) >= MAX_SEGMENTS:
                break
            kick = tortuosity / (1.0 + radius) * rng.standard_normal(3)  # thick arteries bend less
            curvature = correlation * curvature + np.sqrt(1 - correlation**2) * kick
            direction = _unit(direction + STEP_MM * curvature)
            depth = head.normalised_radius(point)
            if depth > 0.8:  # steer back towards the centre near the skull, as real arteries follow it
                direction = _unit(direction + 2.0 * (depth - 0.8) * _unit(head.centre - point))
            new_point = point + STEP_MM * direction
            new_radius = radius * np.exp(-STEP_MM / taper_length)
            starts.append(point)
            ends.append(new_point)
            r_starts.append(radius)
            r_ends.append(new_radius)
            point, radius = new_point, new_radius
            if head.normalised_radius(point) > 1.0:
                break
            if rng.random() < STEP_MM / branch_spacing:
                flow_share = rng.uniform(0.55, 0.85)  # Murray: radius^3 is proportional to flow
                child_radius = radius * (1.0 - flow_share) ** (1 / 3)
                radius = radius * flow_share ** (1 / 3)
                if child_radius >= MIN_RADIUS_MM:
                    angle = np.deg2rad(rng.uniform(35.0, 75.0))
                    stack.append((point, _rotate_away(direction, angle, rng), child_radius))

    return VesselSegments(np.array(starts).reshape(-1, 3), np.array(ends).reshape(-1, 3),
                          np.array(r_starts), np.array(r_ends))


def rasterise(segments: VesselSegments, shape: tuple[int, int, int], spacing: tuple[float, float, float],
              radius_brightness: Callable[[float], float],
              supersampling: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel vessel occupancy fraction in [0, 1] and the vessel brightness at each voxel.

    Each segment is evaluated only inside its bounding box on a ``supersampling``^3 grid per voxel;
    segments are merged by taking the larger occupancy (the brightness follows the segment that wins).
    ``radius_brightness`` maps a radius in mm to the signal of blood in a vessel that thick.
    """
    size = np.asarray(shape)
    step = np.asarray(spacing, dtype=float)
    occupancy = np.zeros(shape, dtype=np.float32)
    brightness = np.zeros(shape, dtype=np.float32)
    offsets = (np.arange(supersampling) + 0.5) / supersampling - 0.5  # sub-voxel centres, voxel units
    for a, b, ra, rb in zip(segments.starts, segments.ends, segments.start_radii, segments.end_radii,
                            strict=True):
        reach = max(ra, rb)
        lo = np.maximum(np.floor((np.minimum(a, b) - reach) / step + 0.5).astype(int), 0)
        hi = np.minimum(np.floor((np.maximum(a, b) + reach) / step + 0.5).astype(int) + 1, size)
        if np.any(hi <= lo):
            continue
        x, y, z = (((np.arange(lo[k], hi[k])[:, None] + offsets).ravel() * step[k]) - a[k] for k in range(3))
        x, y, z = x[:, None, None], y[None, :, None], z[None, None, :]
        axis = b - a
        t = np.clip((x * axis[0] + y * axis[1] + z * axis[2]) / (axis @ axis), 0.0, 1.0)
        squared_distance = (x - t * axis[0]) ** 2 + (y - t * axis[1]) ** 2 + (z - t * axis[2]) ** 2
        inside = squared_distance <= (ra + t * (rb - ra)) ** 2
        n = hi - lo
        fraction = inside.reshape(n[0], supersampling, n[1], supersampling, n[2], supersampling).mean(
            axis=(1, 3, 5), dtype=np.float32)
        box = tuple(slice(lo[k], hi[k]) for k in range(3))
        wins = fraction > occupancy[box]
        occupancy[box][wins] = fraction[wins]
        brightness[box][wins] = radius_brightness(0.5 * (ra + rb))
    return occupancy, brightness
