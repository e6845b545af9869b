"""What the seeded multi-run studies (defaults_study.py, forward_models.py) share: the data sets
both make, the writing of a data file, one time-budgeted training run with its evaluation, the
process pool that runs them, and the pieces of their tables.

A data set is a dict of generator arguments (``system``, ``kind``, ``n``, ``duration``, ``rate``,
``params`` and the optional ``noise``, ``friction``, ``estimate``) and the held-out trajectory
names (``test``); a study may add fields of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple


# -- data -------------------------------------------------------------------------------------
def fourier(
    system: str,
    n: int = 10,
    duration: float = 5.0,
    rate: float = 100.0,
    test: Sequence[str] = ("fourier_003", "fourier_007"),
    **extra: Any,
) -> Dict[str, Any]:
    """A data set of ``n`` Fourier-excitation trajectories of ``system``, ``test`` held out."""
    return dict(system=system, kind="fourier", n=n, duration=duration, rate=rate, **extra, test=list(test))


# the data sets both studies make: letters of 5 s at 25 Hz (like the published character
# recordings) on a two-link arm with other parameters than the library's, and Fourier excitation
# of the cart-pole and of the 7-DoF Panda (through Pinocchio)
LETTERS: Dict[str, Any] = dict(
    system="two-link",
    kind="characters",
    duration=5.0,
    rate=25.0,
    params=dict(masses=(1.4, 0.9), lengths=(0.45, 0.55)),
    test=["a", "e", "m", "s"],
)
CARTPOLE = fourier("cartpole", params=dict(cart_mass=0.7, pole_mass=0.3, com=0.4))
PANDA = fourier("panda", n=20, duration=10.0, test=["fourier_003", "fourier_008", "fourier_013", "fourier_018"])


def generate(spec: Dict[str, Any], seed: int):
    """Simulate the data set ``spec`` (seeded)."""
    from delan.data.generate import generate_dataset

    return generate_dataset(
        spec["system"],
        kind=spec["kind"],
        n_trajectories=spec.get("n"),
        duration=spec["duration"],
        rate=spec["rate"],
        noise=spec.get("noise", 0.0),
        friction=spec.get("friction", False),
        seed=seed,
        **spec.get("params", {}),
    )


def save_data(ds, path: str, estimate: bool) -> str:
    """Write ``ds`` to ``path`` (through a partial file, so an interrupted write leaves none).
    With ``estimate`` the file holds q and tau only, like a recording: qd and qdd are estimated
    from q when it is loaded."""
    import h5py

    from delan.data import save_dataset

    tmp = path + ".part"
    save_dataset(ds, tmp)
    if estimate:
        with h5py.File(tmp, "a") as f:
            for g in f["trajectories"].values():
                del g["qd"], g["qdd"]
    os.replace(tmp, path)
    return path


# -- one training run -------------------------------------------------------------------------
def train_and_evaluate(
    row: Dict[str, Any],
    job: Dict[str, Any],
    run_dir: str,
    test: List[str],
    options: Dict[str, Any],
    metrics: Sequence[str],
    evaluate_options: Optional[Dict[str, Any]] = None,
    extra: Optional[Callable[[dict], dict]] = None,
) -> Optional[Tuple[Any, float]]:
    """Train on ``job["data"]`` for ``job["budget"]`` seconds into a fresh ``run_dir`` (with the
    training ``options``) and evaluate the run on the held-out ``test`` trajectories. ``row`` gets
    the evaluation's ``metrics``, ``extra(evaluation)``, the epochs, best epoch and stop reason; a
    run that fails gets its error instead and None is returned, else (the run, its start time)."""
    from delan.api import evaluate, train

    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    try:
        run = train(job["data"], run_dir, test=test, time_budget=job["budget"], quiet=True, **options)
        m = evaluate(run, job["data"], test=test, **(evaluate_options or {}))
    except Exception as exc:  # a run that fails is a result of the study, not a crash of it
        row.update(error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return None
    row.update({k: m[k] for k in metrics if k in m})
    row.update(extra(m) if extra else {})
    row.update(
        epochs=run.summary["epochs"],
        best_epoch=run.summary["best_epoch"],
        stop_reason=run.summary["stop_reason"],
    )
    return run, started


def run_jobs(run_one: Callable[[dict], dict], jobs: List[dict], workers: int, shown=lambda row: row) -> List[dict]:
    """``run_one`` of every job, ``workers`` at a time; each row is printed (``shown(row)``) as it comes."""
    rows = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for row in pool.map(run_one, jobs):
            print(json.dumps(shown(row)), flush=True)
            rows.append(row)
    return rows


def add_run_arguments(ap) -> None:
    """The options of every study: the budget of a run and how many run at once."""
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per run")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (one CPU thread each)")


# -- the report -------------------------------------------------------------------------------
def fmt(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def group_runs(rows: List[dict], fields: Sequence[str]) -> Dict[tuple, List[dict]]:
    """The finished runs (those with a torque nMSE), grouped by their values of ``fields``."""
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        if "torque_nmse" in r:
            groups.setdefault(tuple(r[f] for f in fields), []).append(r)
    return groups


def known(rows: List[dict], key: str) -> List[Any]:
    """The values of ``key`` in the rows that have one."""
    return [r[key] for r in rows if r.get(key) is not None]


def runs_table(rows: List[dict], head: Sequence[str], metrics: Sequence[str], header: str) -> List[str]:
    """The table of every run: its ``head`` fields, its ``metrics``, epochs and best epoch (a
    failed run: its error), under the ``header`` row ("| data set | ... | best epoch |")."""
    columns = header.count("|") - 1
    lines = [header, "|---" * columns + "|"]
    for r in rows:
        cells = "| " + " | ".join(str(r.get(k, 0)) for k in head) + " |"
        if "error" in r:
            lines.append(f"{cells} failed: {r['error']} |" + " |" * (columns - len(head) - 1))
            continue
        values = [fmt(r.get(k)) for k in metrics] + [str(r.get("epochs")), str(r.get("best_epoch"))]
        lines.append(f"{cells} " + " | ".join(values) + " |")
    return lines
