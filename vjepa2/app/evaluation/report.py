"""Reporting an evaluation: statistics, `results.json`'s content, plots, videos, console lines."""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from vjepa2.app.evaluation.episodes import Episode
from vjepa2.files import atomic_write

Z95 = 1.959963984540054  # two-sided 95% normal quantile
VIDEO_FPS = 10.0  # slower than the 25 Hz control rate so that a step can be followed by eye
RESULTS_FILE = "results.json"


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is informative at 0 or `n`
    successes, which small evaluations often give.

    Args:
        successes: number of successes `k`, `0 <= k <= n`.
        n: number of trials; `n = 0` gives the uninformative `(0, 1)`.
        z: normal quantile of the interval's confidence.

    Returns:
        `(lo, hi)`.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n; received successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Exact ends at 0 and n (rounding would leave a 1e-17 gap).
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def summarize(records: Sequence[dict], settings: dict, requested: int,
              extra: dict | None = None) -> dict:
    """The `results.json` content from episode records.

    Fields: `task`, `env_id`, `variation`, `policy`, `episodes` (finished), `episodes_requested`,
    `complete`, `successes`, `success_rate` and `ci95` `[lo, hi]` (Wilson, success *at the end of
    the episode*: the headline), `success_any_step` (`successes`, `rate`, `ci95`; success reached
    at some step, possibly lost again: a diagnostic, not the headline), `final_distance`
    (`mean`, `median`, metres), `steps_mean`, `stop_reasons`, `plan_seconds_per_action`
    (`median`, `p95`, `mean`, `count`, warm-up plans excluded; for baselines the policy's time per
    action), `first_plan_seconds`, `seeds`, `max_steps`, `subgoals` (names and budgets),
    `model`, `planner` (preset, CEM config, energy, action units) or `null` for baselines,
    `baseline` (`null` for the planner), and whatever `extra` adds (`wall_seconds`, ...).
    """
    n = len(records)
    k = sum(r["success"] for r in records)
    k_any = sum(r["success_any_step"] for r in records)
    seconds, first = [], []
    for r in records:
        w = r["warmup_plans"]
        seconds.extend(r["plan_seconds"][w:])
        first.extend(r["plan_seconds"][:w])
    seconds = np.asarray(seconds, "float64")
    distances = np.asarray([r["final_distance"] for r in records], "float64")
    stops: dict[str, int] = {}
    for r in records:
        stops[r["stop_reason"]] = stops.get(r["stop_reason"], 0) + 1
    results = {
        "task": settings["task"],
        "env_id": settings["env_id"],
        "variation": settings["variation"],
        "policy": settings["policy"],
        "episodes": n,
        "episodes_requested": int(requested),
        "complete": n >= requested,
        "successes": int(k),
        "success_rate": k / n if n else None,
        "ci95": list(wilson_interval(k, n)),
        "success_definition": "info['is_success'] after the episode's last step",
        "success_any_step": {"successes": int(k_any), "rate": k_any / n if n else None,
                             "ci95": list(wilson_interval(k_any, n)),
                             "note": "success at any step (possibly lost again); diagnostic "
                                     "only, the headline is success at the end"},
        "final_distance": {"mean": float(distances.mean()) if n else None,
                           "median": float(np.median(distances)) if n else None},
        "steps_mean": float(np.mean([r["steps"] for r in records])) if n else None,
        "stop_reasons": stops,
        "plan_seconds_per_action": {
            "median": float(np.median(seconds)) if seconds.size else None,
            "p95": float(np.percentile(seconds, 95)) if seconds.size else None,
            "mean": float(seconds.mean()) if seconds.size else None,
            "count": int(seconds.size),
            "note": "wall seconds to choose one action (planner: encode + CEM), excluding the "
                    "first plan of each process (tracing/compilation: first_plan_seconds)",
        },
        "first_plan_seconds": first,
        "seeds": [settings["seed"], settings["seed"] + requested - 1],
        "max_steps": settings["max_steps"],
        "subgoals": settings["subgoals"],
        "image_size": settings["image_size"],
        "model": settings["model"],
        "planner": settings["planner"],
        "baseline": settings["baseline"],
    }
    results.update(extra or {})
    return results


def _curve_panel(values: Sequence[float], upto: int, width: int, height: int, title: str,
                 breaks: Sequence[int] = ()) -> np.ndarray:
    """A small plot of `values` with the part up to index `upto` highlighted (PIL, fast)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.text((4, 2), title, fill=(0, 0, 0))
    vals = np.asarray([np.nan if v is None else v for v in values], "float64")
    finite = vals[np.isfinite(vals)]
    if finite.size == 0:
        draw.text((4, height // 2), "no values", fill=(120, 120, 120))
        return np.asarray(image)
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    left, right, top, bottom = 46, width - 6, 16, height - 6
    draw.rectangle((left, top, right, bottom), outline=(180, 180, 180))
    draw.text((2, top), f"{hi:.3g}", fill=(90, 90, 90))
    draw.text((2, bottom - 10), f"{lo:.3g}", fill=(90, 90, 90))
    n = len(vals)

    def xy(i):
        x = left + (right - left) * (i / max(n - 1, 1))
        y = bottom - (bottom - top) * ((vals[i] - lo) / (hi - lo))
        return x, y

    for b in breaks:  # sub-goal switches
        x = xy(b)[0]
        draw.line((x, top, x, bottom), fill=(200, 200, 255))
    points = [xy(i) for i in range(n) if np.isfinite(vals[i])]
    if len(points) > 1:
        draw.line(points, fill=(200, 200, 200), width=1)
    done = [xy(i) for i in range(min(upto + 1, n)) if np.isfinite(vals[i])]
    if len(done) > 1:
        draw.line(done, fill=(30, 90, 200), width=2)
    if upto < n and np.isfinite(vals[upto]):
        x, y = xy(upto)
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(220, 40, 40))
    return np.asarray(image)


def write_episode_video(path: Path, ep: Episode, record: dict) -> None:
    """The episode as an mp4: observation beside its goal image, the energy curve under them."""
    from PIL import Image, ImageDraw

    from vjepa2.data.video_io import write_video

    if ep.observed_energy is not None:
        curve = list(ep.observed_energy) + [ep.final_energy]
        title = "latent energy of the observation to its (sub-)goal"
    else:
        curve = record["distance"]
        title = "distance to goal (m, simulator; baseline)"
    breaks = [t for t in range(1, len(ep.goal_index)) if ep.goal_index[t] != ep.goal_index[t - 1]]
    scale = max(1, 256 // ep.frames[0].shape[0])
    frames = []
    for t, (obs, goal) in enumerate(zip(ep.frames, ep.goals)):
        pair = np.concatenate([obs, goal], axis=1).repeat(scale, 0).repeat(scale, 1)
        top = Image.fromarray(np.ascontiguousarray(pair))
        draw = ImageDraw.Draw(top)
        name = ep.goal_names[ep.goal_index[min(t, len(ep.goal_index) - 1)]] if ep.goal_index \
            else ep.goal_names[-1]
        draw.text((4, 2), f"seed {ep.seed}  t={t}", fill=(255, 255, 255))
        draw.text((pair.shape[1] // 2 + 4, 2), f"goal: {name}", fill=(255, 255, 255))
        panel = _curve_panel(curve, t, pair.shape[1], 110, title, breaks)
        frames.append(np.concatenate([np.asarray(top), panel], axis=0))
    write_video(path, np.stack(frames).astype(np.uint8), fps=VIDEO_FPS)


def write_summary_png(path: Path, records: list[dict], results: dict) -> None:
    """Success and final distance per episode, and every energy (or distance) curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        idx = [r["index"] for r in records]
        dist = [r["final_distance"] for r in records]
        colors = ["tab:green" if r["success"] else "tab:red" for r in records]
        ax1.scatter(idx, dist, c=colors, s=18)
        ax1.axhline(0.05, color="grey", lw=0.8, ls="--", label="success radius 0.05 m")
        ax1.set_xlabel("episode")
        ax1.set_ylabel("final distance to goal (m)")
        lo, hi = results["ci95"]
        ax1.set_title(f"{results['task']}/{results['variation']} {results['policy']}: success "
                      f"{results['successes']}/{results['episodes']} "
                      f"(95% CI {lo:.2f}-{hi:.2f})", fontsize=9)
        ax1.legend(fontsize=7)
        planner = any(r["energies"] for r in records)
        for r in records:
            if planner and r["energies"]:
                ys = list(r["energies"]["observed"]) + [r["energies"]["final"]]
            else:
                ys = r["distance"]
            ax2.plot(ys, color="tab:green" if r["success"] else "tab:red", lw=0.7, alpha=0.6)
        ax2.set_xlabel("step")
        ax2.set_ylabel("latent energy to (sub-)goal" if planner else "distance to goal (m)")
        ax2.set_title("energy curves (green: success at end)" if planner
                      else "distance curves (baseline; green: success at end)", fontsize=9)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
        atomic_write(path, buffer.getvalue())
    finally:
        plt.close(fig)


def episode_line(record: dict, done: int, total: int) -> str:
    """One console line per finished episode."""
    seconds = record["plan_seconds"][record["warmup_plans"]:]
    per_action = f", {np.median(seconds):.3f} s/action" if seconds else ""
    return (f"evaluate: episode {done}/{total} seed {record['seed']}: "
            f"{'success' if record['success'] else 'failure'} (final distance "
            f"{record['final_distance']:.3f} m, {record['steps']} steps, "
            f"{record['stop_reason']}{per_action}, {record['wall_seconds']:.1f} s)")


def print_summary(results: dict, out: str | os.PathLike) -> None:
    """Prints the human summary of `results` on stdout."""
    lo, hi = results["ci95"]
    any_step = results["success_any_step"]
    sec = results["plan_seconds_per_action"]
    rate = results["success_rate"]
    lines = [
        f"evaluate {results['task']}/{results['variation']} policy={results['policy']}"
        + (f" preset={results['planner']['preset_name']}" if results["planner"] else ""),
        f"  success at end : {results['successes']}/{results['episodes']} = "
        f"{rate if rate is not None else float('nan'):.2f} (95% CI {lo:.2f}-{hi:.2f})",
        f"  success at any step (diagnostic): {any_step['successes']}/{results['episodes']}",
        f"  final distance : median {results['final_distance']['median'] or float('nan'):.3f} m",
    ]
    if sec["median"] is not None:
        lines.append(f"  seconds/action : median {sec['median']:.4f}, p95 {sec['p95']:.4f}")
    lines.append(f"  wall time      : {results['wall_seconds_total']:.1f} s "
                 f"({results['seconds_per_episode'] or 0:.2f} s/episode)")
    lines.append(f"  written        : {Path(out) / RESULTS_FILE}")
    print("\n".join(lines), flush=True)
