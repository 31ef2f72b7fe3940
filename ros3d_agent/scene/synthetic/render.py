"""Ray-cast RGB-D frames of a layout with open3d, shaded and degraded like a consumer depth camera.

Why ray casting rather than rasterising: open3d's ``RaycastingScene`` (Embree) runs on any CPU with
no GPU or display, and returns per pixel the hit distance, the geometry id (= which object, so
visibility statistics and instance masks come for free) and the triangle normal used for shading.

Colour: linear-light Lambert shading under two ceiling point lights plus ambient, a little
Blinn-Phong gloss on ceramic/metal/screens, procedural textures computed from the world hit point
(floor tiles or planks, wood grain, fabric weave, foliage blotches) so they are consistent across
views, a slight optical blur, gamma to sRGB and sensor noise. Depth: z-depth in metres (the ray
directions have camera-z 1, so the hit distance *is* z), with a depth-dependent Gaussian error,
dropout blobs, holes at depth edges and grazing angles, and no return outside the sensor's range.
All randomness comes from the generator passed in, so a seeded frame is reproducible bit for bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import open3d as o3d
from numpy.typing import NDArray

from .catalog import Material
from .layout import SceneLayout
from .meshes import MeshPart, scene_parts
from .trajectory import REFERENCE_WIDTH

__all__ = ["SensorNoise", "RenderConfig", "RenderResult", "SceneRenderer", "srgb_to_linear", "REFERENCE_PIXELS"]

#: ``min_visible_pixels`` is specified at 640×480 and scaled with the image area.
REFERENCE_PIXELS = 640 * 480

_INVALID = o3d.t.geometry.RaycastingScene.INVALID_ID

# Gloss per material (Blinn-Phong weight, exponent); indexed by Material value.
_GLOSS = {Material.CERAMIC: (0.25, 40.0), Material.METAL: (0.35, 30.0), Material.SCREEN: (0.5, 60.0), Material.PLAIN: (0.05, 16.0)}


def srgb_to_linear(c: NDArray[np.floating] | tuple[float, ...]) -> NDArray[np.float32]:
    return np.power(np.asarray(c, dtype=np.float32), np.float32(2.2))


@dataclass(frozen=True)
class SensorNoise:
    """Depth and colour degradations; ``enabled=False`` renders the exact geometry (for tests and debugging).

    The depth error ``base + quad * (z - 0.4)^2`` follows the published fits for structured-light
    sensors (millimetres near, a centimetre or two at 4 m). Blob radii are given at 640 px width.
    """

    enabled: bool = True
    depth_sigma_base: float = 0.0012
    depth_sigma_quad: float = 0.0019
    blob_rate: float = 6.0
    blob_radius: tuple[float, float] = (3.0, 14.0)
    edge_dropout: float = 0.5
    edge_threshold: float = 0.03
    grazing_cos: float = 0.1
    color_sigma: float = 1.5
    exposure_jitter: float = 0.04

    def __post_init__(self) -> None:
        for name in ("depth_sigma_base", "depth_sigma_quad", "blob_rate", "edge_threshold", "color_sigma", "exposure_jitter"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"SensorNoise.{name} must be finite and >= 0, got {v}")
        if not 0.0 <= self.edge_dropout <= 1.0 or not 0.0 <= self.grazing_cos < 1.0:
            raise ValueError("edge_dropout must be in [0, 1] and grazing_cos in [0, 1)")
        if not 0 < self.blob_radius[0] <= self.blob_radius[1]:
            raise ValueError(f"blob_radius: expected (min, max) with 0 < min <= max, got {self.blob_radius}")


@dataclass(frozen=True)
class RenderConfig:
    """Image size, sensor range, lighting and noise of the synthetic camera."""

    width: int = 640
    height: int = 480
    noise: SensorNoise = field(default_factory=SensorNoise)
    max_range: float = 6.0
    min_range: float = 0.2
    ambient: float = 0.32
    light_intensity: float = 0.85
    light_falloff: float = 3.0
    blur_sigma: float = 0.5
    raycast_threads: int = 0
    min_visible_pixels: int = 200

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 8 <= v <= 8192:
                raise ValueError(f"{name} must be an integer in [8, 8192], got {v!r}")
        if not (0 <= self.min_range < self.max_range and math.isfinite(self.max_range)):
            raise ValueError(f"need 0 <= min_range < max_range (finite), got {self.min_range}, {self.max_range}")
        if self.max_range > 65.0:
            raise ValueError(f"max_range {self.max_range} m exceeds what uint16 millimetre depth PNGs can store")
        if self.raycast_threads < 0 or self.min_visible_pixels < 1:
            raise ValueError("raycast_threads must be >= 0 and min_visible_pixels >= 1")
        if not (self.ambient >= 0 and self.light_intensity >= 0 and self.light_falloff > 0 and self.blur_sigma >= 0):
            raise ValueError("ambient, light_intensity, blur_sigma must be >= 0 and light_falloff > 0")

    @property
    def visible_threshold(self) -> int:
        """Pixels an object needs in a frame to count as visible in it, at this resolution."""
        return max(1, int(math.ceil(self.min_visible_pixels * self.width * self.height / REFERENCE_PIXELS)))


@dataclass(eq=False)
class RenderResult:
    """One rendered view.

    ``depth`` is what the sensor reports (noise, holes, range limit); ``depth_clean`` the exact
    z-depth of the first hit (0 where a ray hit nothing). ``object_ids`` holds the scene-graph id
    of the object seen at each pixel and -1 for the room shell (floor, walls, ceiling) or nothing;
    ``surface_ids`` says which kind of surface: 0 object, 1 floor, 2 wall, 3 ceiling, -1 nothing.
    ``timings`` has the seconds spent in ``raycast``, ``shading`` and ``noise``.
    """

    rgb: NDArray[np.uint8]
    depth: NDArray[np.float32]
    depth_clean: NDArray[np.float32]
    object_ids: NDArray[np.int32]
    surface_ids: NDArray[np.int32]
    timings: dict[str, float]


def _hash(*coords: NDArray[np.float32]) -> NDArray[np.float32]:
    """A cheap deterministic pseudo-random value in [0, 1) per integer lattice cell."""
    acc = np.zeros_like(coords[0], dtype=np.float32)
    for c, k in zip(coords, (12.9898, 78.233, 37.719)):
        acc += c * np.float32(k)
    s = np.sin(acc) * np.float32(43758.5453)
    return s - np.floor(s)


class SceneRenderer:
    """Renders views of one layout. Building it (meshes + BVH) is the per-scene cost; :meth:`render` the per-frame one."""

    def __init__(self, layout: SceneLayout, config: RenderConfig | None = None, parts: list[MeshPart] | None = None) -> None:
        self.layout = layout
        self.config = config or RenderConfig()
        self.parts = parts if parts is not None else scene_parts(layout)
        self._scene = o3d.t.geometry.RaycastingScene()
        for i, p in enumerate(self.parts):
            gid = self._scene.add_triangles(
                o3d.core.Tensor(np.ascontiguousarray(p.vertices, dtype=np.float32)),
                o3d.core.Tensor(np.ascontiguousarray(p.triangles, dtype=np.uint32)),
            )
            if gid != i:  # the tables below are indexed by geometry id
                raise RuntimeError(f"open3d returned geometry id {gid} for part {i}; expected sequential ids")
        G = len(self.parts)
        # Per-geometry tables; row G describes "no hit".
        albedo = np.zeros((G + 1, 3), np.float32)
        albedo[:G] = srgb_to_linear([p.albedo for p in self.parts])
        self._albedo = [np.ascontiguousarray(albedo[:, c]) for c in range(3)]  # 1-D gathers are ~5x faster than (N, 3)
        self._material = np.full(G + 1, -1, np.int16)
        self._material[:G] = [int(p.material) for p in self.parts]
        self._object = np.full(G + 1, -1, np.int32)
        self._object[:G] = [p.object_id for p in self.parts]
        kinds = {"object": 0, "floor": 1, "wall": 2, "ceiling": 3}
        self._surface = np.full(G + 1, -1, np.int32)
        self._surface[:G] = [kinds[p.surface] for p in self.parts]
        self._grain = np.zeros((G + 1, 2), np.float32)
        self._grain[:G] = [p.grain for p in self.parts]
        self._phase = ((np.arange(G + 1) * 2.399) % (2 * np.pi)).astype(np.float32)  # golden angle: distinct per part
        self._ks = np.zeros(G + 1, np.float32)
        self._shin = np.ones(G + 1, np.float32)
        for mat, (ks, shin) in _GLOSS.items():
            sel = self._material == int(mat)
            self._ks[sel], self._shin[sel] = ks, shin
        W, D, H = layout.room.size
        a, b = (W / 3, D / 2) if W >= D else (W / 2, D / 3)
        self._lights = np.array([[a, b, H - 0.25], [W - a, D - b, H - 0.25]], np.float32)  # along the long axis
        self._tint = np.array([1.0, 0.97, 0.92], np.float32)  # warm indoor white balance
        self._floor_tile = float(layout.room.floor_tile)
        self._lut = np.round(255.0 * np.power(np.linspace(0.0, 1.0, 4096), 1.0 / 2.2)).astype(np.uint8)
        self._ray_cache: tuple[bytes, NDArray[np.float32], NDArray[np.float32]] | None = None
        self._noise_pool: tuple[NDArray[np.uint8], NDArray[np.uint8]] | None = None

    # -------------------------------------------------------------------------------------------
    def _camera_rays(self, K: NDArray[np.float64]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Camera-frame ray directions (3, N) with z = 1, so a hit distance along them is z-depth,
        and their inverse lengths (N,), which rotation does not change."""
        key = np.asarray(K, np.float64).tobytes()
        if self._ray_cache is None or self._ray_cache[0] != key:
            c = self.config
            fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
            v, u = np.mgrid[0 : c.height, 0 : c.width].astype(np.float64)
            y = (v - cy) / fy
            x = (u - cx - s * y) / fx
            d = np.stack([x.ravel(), y.ravel(), np.ones(x.size)]).astype(np.float32)
            inv_len = (1.0 / np.sqrt(x * x + y * y + 1.0)).ravel().astype(np.float32)
            self._ray_cache = (key, d, inv_len)
        return self._ray_cache[1], self._ray_cache[2]

    def cast(self, T_world_cam: NDArray[np.float64], K: NDArray[np.float64]) -> dict[str, NDArray]:
        """Raw ray-cast results as flat numpy arrays (``t_hit`` is z-depth), plus the world ray
        directions ``dirs`` (3, N) and their inverse lengths ``inv_len`` (N,)."""
        T = np.asarray(T_world_cam, dtype=np.float64)
        K = np.asarray(K, dtype=np.float64)
        if T.shape != (4, 4) or K.shape != (3, 3):
            raise ValueError(f"expected a 4x4 pose and 3x3 K, got {T.shape} and {K.shape}")
        d_cam, inv_len = self._camera_rays(K)
        R = T[:3, :3].astype(np.float32)
        dirs = np.empty_like(d_cam)
        for i in range(3):  # row by row: contiguous, no BLAS threads
            np.multiply(d_cam[0], R[i, 0], out=dirs[i])
            dirs[i] += d_cam[1] * R[i, 1]
            dirs[i] += R[i, 2]  # d_cam z == 1
        rays = np.empty((dirs.shape[1], 6), np.float32)
        rays[:, :3] = T[:3, 3].astype(np.float32)
        rays[:, 3:] = dirs.T
        out = self._scene.cast_rays(o3d.core.Tensor(rays), nthreads=self.config.raycast_threads)
        res = {k: out[k].numpy() for k in ("t_hit", "geometry_ids", "primitive_normals")}
        res["dirs"] = dirs
        res["inv_len"] = inv_len
        return res

    def render(self, T_world_cam: NDArray[np.float64], K: NDArray[np.float64], rng: np.random.Generator | None = None) -> RenderResult:
        """Render one view; ``rng`` drives the sensor noise (required when noise is enabled)."""
        cfg = self.config
        noisy = cfg.noise.enabled
        if noisy and rng is None:
            raise ValueError("render: noise is enabled, so a seeded numpy Generator must be given")
        H, W = cfg.height, cfg.width
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        hit = self.cast(T_world_cam, K)
        t1 = time.perf_counter()
        timings["raycast"] = t1 - t0

        gid = hit["geometry_ids"]
        valid = gid != _INVALID
        g = np.where(valid, gid, len(self.parts)).astype(np.intp)
        z = np.where(valid, hit["t_hit"], np.float32(0.0)).astype(np.float32)
        origin = np.asarray(T_world_cam, np.float32)[:3, 3]
        rgb_lin, cos_inc = self._shade(g, z, hit["dirs"], hit["inv_len"], hit["primitive_normals"], origin)
        exposure = 1.0 + (cfg.noise.exposure_jitter * float(rng.uniform(-1.0, 1.0)) if rng is not None and noisy else 0.0)
        rgb_lin *= np.float32(4095.0 * exposure)
        np.clip(rgb_lin, 0, 4095, out=rgb_lin)
        rgb = self._lut[rgb_lin.astype(np.uint16)].reshape(H, W, 3)
        if cfg.blur_sigma > 0:
            rgb = cv2.GaussianBlur(rgb, (0, 0), cfg.blur_sigma)
        t2 = time.perf_counter()
        timings["shading"] = t2 - t1

        depth_clean = z.reshape(H, W)
        depth = depth_clean.copy()
        if noisy and rng is not None:
            rgb = self._color_noise(rgb, rng)
            depth = self._depth_noise(depth, cos_inc.reshape(H, W), rng)
        # No return outside the working range, judged on the true distance and on the reported one
        # (so noise never yields a reading beyond max_range).
        depth[(depth_clean > cfg.max_range) | (depth_clean < cfg.min_range) | (depth > cfg.max_range) | (depth < cfg.min_range)] = 0.0
        timings["noise"] = time.perf_counter() - t2
        return RenderResult(
            rgb=np.ascontiguousarray(rgb),
            depth=depth,
            depth_clean=depth_clean,
            object_ids=self._object[g].reshape(H, W),
            surface_ids=self._surface[g].reshape(H, W),
            timings=timings,
        )

    # -------------------------------------------------------------------------------------------
    def _shade(
        self,
        g: NDArray[np.intp],
        z: NDArray[np.float32],
        dirs: NDArray[np.float32],
        inv_len: NDArray[np.float32],
        normals: NDArray[np.float32],
        origin: NDArray[np.float32],
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Linear-light colour (N, 3) and |cos| of the incidence angle (N,).

        Works on one coordinate at a time (structure of arrays): numpy's loops over contiguous 1-D
        float32 arrays are several times faster than over (N, 3) rows.
        """
        cfg = self.config
        N = g.shape[0]
        n = np.ascontiguousarray(normals.T)
        facing = n[0] * dirs[0] + n[1] * dirs[1] + n[2] * dirs[2]
        cos_inc = np.abs(facing) * inv_len
        n *= np.where(facing > 0, np.float32(-1.0), np.float32(1.0))  # two-sided: face the camera
        p = dirs * z + origin[:, None]

        diffuse = np.full(N, cfg.ambient, np.float32)
        ks = self._ks[g]
        glossy = np.flatnonzero(ks > 0)
        spec = np.zeros(glossy.size, np.float32)
        inv_f2 = np.float32(1.0 / cfg.light_falloff**2)
        for light in self._lights:
            l = light[:, None] - p
            dist2 = l[0] * l[0]
            dist2 += l[1] * l[1]
            dist2 += l[2] * l[2]
            inv_d = 1.0 / np.sqrt(dist2 + np.float32(1e-6))
            atten = np.float32(cfg.light_intensity) / (1.0 + dist2 * inv_f2)
            ndotl = n[0] * l[0]
            ndotl += n[1] * l[1]
            ndotl += n[2] * l[2]
            ndotl *= inv_d
            np.maximum(ndotl, 0.0, out=ndotl)
            diffuse += ndotl * atten
            if glossy.size:
                lg = l[:, glossy] * inv_d[glossy]
                h = lg - dirs[:, glossy] * inv_len[glossy]
                h /= np.sqrt(h[0] * h[0] + h[1] * h[1] + h[2] * h[2]) + np.float32(1e-9)
                ng = n[:, glossy]
                ndoth = np.maximum(ng[0] * h[0] + ng[1] * h[1] + ng[2] * h[2], 0.0)
                spec += ks[glossy] * np.power(ndoth, self._shin[g[glossy]]) * atten[glossy] * (ndotl[glossy] > 0)
        diffuse *= self._texture(g, p)
        out = np.empty((N, 3), np.float32)
        for c in range(3):
            np.multiply(self._albedo[c][g], diffuse, out=out[:, c])
        if glossy.size:
            out[glossy] += spec[:, None]
        out *= self._tint
        return out, cos_inc

    def _texture(self, g: NDArray[np.intp], p: NDArray[np.float32]) -> NDArray[np.float32]:
        """Multiplicative albedo modulation around 1, a function of the world point (multi-view consistent)."""
        mat = self._material[g]
        f = np.ones(g.shape[0], np.float32)
        tau = np.float32(2 * np.pi)
        present = np.flatnonzero(np.bincount(mat + 1, minlength=len(Material) + 1)) - 1
        for m in present:
            if m < 0 or m in (Material.CERAMIC, Material.METAL, Material.SCREEN):
                continue
            sel = np.flatnonzero(mat == m)
            x, y, zz = p[0, sel], p[1, sel], p[2, sel]
            if m == Material.WOOD:
                gr = self._grain[g[sel]]
                along = gr[:, 0] * x + gr[:, 1] * y
                across = -gr[:, 1] * x + gr[:, 0] * y + np.float32(0.6) * zz
                wobble = np.float32(0.25) * np.sin(tau * np.float32(2.3) * along + self._phase[g[sel]])
                f[sel] = 0.91 + 0.09 * np.sin(tau * (np.float32(38.0) * across + wobble))
            elif m == Material.FABRIC:
                k = tau * np.float32(55.0)
                f[sel] = 0.95 + 0.05 * np.sin(k * (x + y)) * np.sin(k * (zz - np.float32(0.5) * (x - y)))
            elif m == Material.PLAIN:
                f[sel] = 0.97 + 0.03 * np.sin(tau * (np.float32(1.3) * x + np.float32(0.7) * zz) + self._phase[g[sel]])
            elif m == Material.FOLIAGE:
                c = np.float32(1 / 0.035)
                f[sel] = 0.6 + 0.6 * _hash(np.floor(x * c), np.floor(y * c), np.floor(zz * c))
            elif m == Material.FLOOR_TILES:
                inv = np.float32(1.0 / self._floor_tile)
                u, v = x * inv, y * inv
                i, j = np.floor(u), np.floor(v)
                u -= i
                v -= j
                gw = np.float32(0.008) * inv
                grout = (np.minimum(u, 1 - u) < gw) | (np.minimum(v, 1 - v) < gw)
                f[sel] = np.where(grout, np.float32(0.6), 0.9 + 0.16 * _hash(i, j))
            elif m == Material.FLOOR_PLANKS:
                inv = np.float32(1.0 / self._floor_tile)
                v = y * inv
                j = np.floor(v)
                v -= j
                xs = (x + np.float32(1.7) * _hash(j, j + 3)) * np.float32(1 / 1.1)
                i = np.floor(xs)
                seam = (np.minimum(v, 1 - v) < np.float32(0.004) * inv) | ((xs - i) < np.float32(0.004))
                grain = 0.04 * np.sin(tau * (np.float32(60.0) * y + 0.5 * np.sin(tau * xs)))
                f[sel] = np.where(seam, np.float32(0.55), 0.84 + 0.24 * _hash(i, j) + grain)
            elif m == Material.WALL:
                f[sel] = 0.975 + 0.025 * np.sin(tau * (np.float32(0.8) * x + np.float32(0.5) * y + np.float32(0.6) * zz))
        return f

    def _color_noise(self, rgb: NDArray[np.uint8], rng: np.random.Generator) -> NDArray[np.uint8]:
        """Gaussian sensor noise: a random window of a per-renderer pool of noise, added with
        saturating uint8 arithmetic. Drawing 3·H·W normals per frame would cost as much as shading."""
        sigma = self.config.noise.color_sigma
        if sigma <= 0:
            return rgb
        H, W = rgb.shape[:2]
        pad = 64
        if self._noise_pool is None:
            pool_rng = np.random.default_rng([self.layout.seed, 99])
            noise = np.rint(pool_rng.standard_normal((H + pad, W + pad, 3), dtype=np.float32) * np.float32(sigma))
            noise = np.clip(noise, -127, 127)
            self._noise_pool = (np.maximum(noise, 0).astype(np.uint8), np.maximum(-noise, 0).astype(np.uint8))
        dy, dx = int(rng.integers(pad)), int(rng.integers(pad))
        pos, neg = (np.ascontiguousarray(a[dy : dy + H, dx : dx + W]) for a in self._noise_pool)
        return cv2.subtract(cv2.add(rgb, pos), neg)

    def _depth_noise(self, depth: NDArray[np.float32], cos_inc: NDArray[np.float32], rng: np.random.Generator) -> NDArray[np.float32]:
        nz = self.config.noise
        H, W = depth.shape
        valid = depth > 0
        sigma = np.float32(nz.depth_sigma_base) + np.float32(nz.depth_sigma_quad) * np.square(depth - np.float32(0.4))
        out = depth + sigma * rng.standard_normal(depth.shape, dtype=np.float32)
        holes = np.zeros((H, W), np.uint8)
        # Depth edges: the projector/camera baseline occludes one side, and mixed pixels are rejected.
        if nz.edge_dropout > 0:
            rel = np.float32(nz.edge_threshold)
            dx = np.abs(np.diff(depth, axis=1)) > rel * np.maximum(depth[:, 1:], depth[:, :-1])
            dy = np.abs(np.diff(depth, axis=0)) > rel * np.maximum(depth[1:, :], depth[:-1, :])
            edge = np.zeros((H, W), bool)
            edge[:, 1:] |= dx
            edge[:, :-1] |= dx
            edge[1:, :] |= dy
            edge[:-1, :] |= dy
            keep = rng.random((H, W), dtype=np.float32) >= np.float32(nz.edge_dropout)
            holes[edge & ~keep] = 1
        # Grazing incidence returns too little light to decode.
        holes[cos_inc < np.float32(nz.grazing_cos)] = 1
        # Dropout blobs (specular patches, IR interference), scaled with the image width.
        s = W / REFERENCE_WIDTH
        for _ in range(int(rng.poisson(nz.blob_rate))):
            cx, cy = int(rng.integers(W)), int(rng.integers(H))
            ax = max(1, int(round(rng.uniform(*nz.blob_radius) * s)))
            ay = max(1, int(round(ax * rng.uniform(0.5, 1.0))))
            cv2.ellipse(holes, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        out[(holes > 0) | ~valid] = 0.0
        np.maximum(out, 0.0, out=out)
        return out
