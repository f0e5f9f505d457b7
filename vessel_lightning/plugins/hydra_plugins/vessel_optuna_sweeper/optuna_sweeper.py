"""An Optuna sweeper for Hydra on a current Optuna (ask/tell), configured like ``hydra-optuna-sweeper``.

Why not ``hydra-optuna-sweeper`` itself: its newest release (1.3.0) requires ``optuna<3``, and Optuna 2.10's
database storage fails on SQLAlchemy 2 (which MLflow 3 installs here): it stamps its schema version on a
connection it never commits, so a new study database raises ``AssertionError`` in
``_VersionManager.get_current_version``; without a database a search cannot be resumed.

Config (``hydra/sweeper: optuna``): ``sampler`` (instantiated, e.g. a seeded ``TPESampler``), ``direction``,
``study_name``, ``storage`` (an SQLAlchemy URL; null keeps the study in memory), ``n_trials`` (what the study
should reach: a rerun with the same storage and name runs only the missing trials), ``n_jobs`` (trials per
launcher batch, run in parallel by a parallel launcher), ``params`` (``key: "choice(...)" | "interval(a, b)" |
"tag(log, interval(a, b))" | "tag(int, interval(a, b))" | "range(a, b, step=s)"`` or a fixed value) and
``trial_number_key`` (an override that hands each job its trial number, e.g. ``++tags.optuna_trial``).
Sweep overrides on the command line join the search space; plain ones fix a key, also one from ``params``.
A job that fails or returns NaN counts as a failed trial.

Several sweepers may work on one study at once (on one machine or many, sharing a database: SQLite on one machine,
PostgreSQL ``postgresql+psycopg2://user@host/db`` across machines). ``n_trials`` is then the study's total: each
worker asks for trials under a study-wide lock (a PostgreSQL advisory lock, a file lock beside a SQLite file) and
only while the study holds fewer, running ones included, so no trial is asked for twice and the total is exact.
Each worker registers on the study under that lock and seeds its sampler with ``sampler.seed + <its number>``
(the first worker of a fresh study uses the seed itself, so a single worker reproduces as before; a resumed or
second worker does not repeat the first one's proposals). Running trials send heartbeats; a trial whose sweeper
died is marked failed after ``grace_period`` seconds and no longer counts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"  # in the sweep folder, as hydra-optuna-sweeper writes it
WORKERS_ATTR = "vessel_workers"  # study user attribute: how many sweepers have worked on the study
DRIVER = "psycopg2"  # the PostgreSQL driver the project pins (psycopg2-binary)


def check_storage_url(url: str | None) -> str | None:
    """Return ``url`` if its database driver is the one installed; a bare ``postgresql://`` (SQLAlchemy's default,
    psycopg 3) or ``postgres://`` raises ValueError naming the spelling that works."""
    if url is None:
        return None
    scheme, sep, rest = str(url).partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        raise ValueError(
            f"hydra.sweeper.storage={url}: write postgresql+{DRIVER}://{rest} (a bare {scheme}:// asks SQLAlchemy for"
            f" another driver than the one installed, {DRIVER}-binary)"
        )
    return str(url)


@contextlib.contextmanager
def study_lock(url: str | None, study_name: str) -> Iterator[None]:
    """Hold a lock over the study ``study_name`` in the database at ``url`` (no lock in memory): a PostgreSQL
    advisory lock, or a file lock beside a SQLite file. Other databases get no lock (a warning says so)."""
    if url is None:
        yield
        return
    scheme = url.split("://", 1)[0]
    if scheme.startswith("sqlite"):
        from filelock import FileLock

        database = url.split(":///", 1)[1] if ":///" in url else ""
        if not database or database == ":memory:":
            yield
            return
        with FileLock(f"{database}.lock"):
            yield
        return
    if scheme.startswith("postgresql"):
        import sqlalchemy

        key = zlib.crc32(f"vessel-optuna:{study_name}".encode()) - 2**31  # a signed 32-bit advisory lock key
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
                try:
                    yield
                finally:
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        finally:
            engine.dispose()
        return
    log.warning(
        "no study lock for %s databases: workers may together run a few trials more than n_trials", scheme
    )
    yield


class Heartbeats:
    """Records a heartbeat for each trial in flight every ``interval`` seconds, in a background thread."""

    def __init__(self, storage: Any, trials: Sequence[Any], interval: float) -> None:
        self.storage, self.trials, self.interval = storage, list(trials), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optuna-heartbeats", daemon=True)

    def _run(self) -> None:
        while True:
            for trial in self.trials:
                try:
                    self.storage.record_heartbeat(trial._trial_id)
                except Exception:  # a missed beat is not worth a failed sweep; the next one may pass
                    log.debug("heartbeat of trial %d failed", trial.number, exc_info=True)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def distribution(override: Override) -> Any:
    """The Optuna distribution of a sweep override (choice → categorical of the encoded values, interval →
    float or, tagged ``int``, integer, tagged ``log`` on a log scale; range → integer or float with its step)."""
    import optuna.distributions as dist

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return dist.CategoricalDistribution(list(override.sweep_string_iterator()))
    if isinstance(value, IntervalSweep):
        assert value.start is not None and value.end is not None  # the override grammar requires both ends
        log_scale = "log" in value.tags
        if "int" in value.tags:
            return dist.IntDistribution(int(value.start), int(value.end), log=log_scale)
        return dist.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    if isinstance(value, RangeSweep):
        assert value.start is not None and value.stop is not None  # the grammar requires both
        step = value.step
        count = math.ceil((value.stop - value.start) / step)
        if count < 1:
            raise ValueError(f"{override.input_line}: empty range")
        high = value.start + (count - 1) * step
        if all(isinstance(v, int) for v in (value.start, value.stop, step)):
            return dist.IntDistribution(int(value.start), int(high), step=int(step))
        return dist.FloatDistribution(float(value.start), float(high), step=float(step))
    raise ValueError(f"{override.input_line}: not a sweep Optuna can search (choice, interval, range)")


def search_space(
    params: Mapping[str, Any] | None, arguments: Sequence[str]
) -> tuple[dict[str, Any], list[str]]:
    """Split the config's ``params`` and the command line's overrides into ``(distributions, fixed overrides)``.

    A key on the command line replaces the same key of ``params`` (a plain value there fixes it).
    """
    parser = OverridesParser.create()
    by_key: dict[str, Override] = {}
    for key, spec in (params or {}).items():
        by_key[str(key)] = parser.parse_override(f"{key}={spec}")
    for override in parser.parse_overrides(list(arguments)):
        by_key[override.get_key_element()] = override
    space: dict[str, Any] = {}
    fixed: list[str] = []
    for key, override in by_key.items():
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed.append(f"{key}={override.get_value_element_as_str()}")
    return space, fixed


def as_override_value(value: Any) -> str:
    """An Optuna suggestion as override text (categorical values are already encoded strings)."""
    return repr(value) if isinstance(value, float) else str(value)


class OptunaSweeper(Sweeper):
    """Asks Optuna for ``n_jobs`` trials at a time, launches them as Hydra jobs, tells it their results."""

    def __init__(
        self,
        sampler: Any = None,
        direction: str = "maximize",
        study_name: str | None = None,
        storage: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        params: Mapping[str, Any] | None = None,
        trial_number_key: str | None = None,
        heartbeat_interval: int = 30,
        grace_period: int = 120,
    ) -> None:
        self.sampler_cfg = sampler
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction: 'minimize' or 'maximize', got {direction!r}")
        self.direction: Literal["minimize", "maximize"] = (
            "minimize" if direction == "minimize" else "maximize"
        )
        self.study_name = study_name
        self.storage = check_storage_url(storage)
        self.heartbeat_interval = int(heartbeat_interval)
        self.grace_period = int(grace_period)
        self.worker: int | None = None
        self._rdb: Any = None
        self.sampler_seed: int | None = None
        self.n_trials = int(n_trials)
        self.n_jobs = max(1, int(n_jobs))
        self.params = dict(params or {})
        self.trial_number_key = trial_number_key
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _storage(self) -> Any:
        """The Optuna storage: None (in memory), or a database storage whose running trials send heartbeats."""
        if self.storage is None:
            return None
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                self.storage, heartbeat_interval=self.heartbeat_interval, grace_period=self.grace_period
            )

    def _sampler(self, worker: int) -> Any:
        """The configured sampler with its seed moved by the worker's number (seed + worker; unseeded stays so)."""
        from hydra.utils import instantiate

        # Hydra hands the sweeper its sampler built; the config node is rebuilt with the worker's seed.
        node = OmegaConf.select(self.config, "hydra.sweeper.sampler") if self.config is not None else None
        if node is None and isinstance(self.sampler_cfg, Mapping | DictConfig):
            node = OmegaConf.create(dict(self.sampler_cfg))
        if node is None or "_target_" not in node:
            if self.sampler_cfg is not None and worker:
                log.warning("hydra.sweeper.sampler has no config to re-seed for worker %d", worker)
            return self.sampler_cfg
        config = OmegaConf.to_container(node, resolve=True)
        if not isinstance(config, dict):
            raise TypeError(f"hydra.sweeper.sampler: expected a mapping, got {type(config).__name__}")
        if config.get("seed") is not None:
            config["seed"] = int(config["seed"]) + worker
            self.sampler_seed = config["seed"]
        return instantiate(config)

    def _study(self) -> Any:
        """Load or create the study and register this worker on it (under the study lock); the sampler is seeded
        for the worker's number."""
        import optuna

        name = self.study_name
        with study_lock(self.storage, str(name)):
            # Under the lock: two workers on a fresh database would otherwise both create Optuna's tables.
            storage = self._rdb = self._storage()
            study = optuna.create_study(
                study_name=name, storage=storage, direction=self.direction, load_if_exists=True
            )
            self.worker = int(study.user_attrs.get(WORKERS_ATTR, 0))
            study.set_user_attr(WORKERS_ATTR, self.worker + 1)
        return optuna.load_study(
            study_name=study.study_name, storage=storage, sampler=self._sampler(self.worker)
        )

    def _ask(self, study: Any, space: Mapping[str, Any]) -> list[Any]:
        """Ask for up to ``n_jobs`` trials, only as many as the study lacks of ``n_trials`` (running ones count),
        under the study lock; trials of dead workers are failed first."""
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        counted = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.RUNNING)
        with study_lock(self.storage, study.study_name):
            if self.storage is not None:
                fail_stale_trials(study)
            held = len(study.get_trials(deepcopy=False, states=counted))
            return [study.ask(space) for _ in range(max(0, min(self.n_jobs, self.n_trials - held)))]

    def sweep(self, arguments: list[str]) -> list[Any]:
        """Run trials until the study has ``n_trials`` finished (complete, failed or pruned) ones; return the
        job returns of this call."""
        from optuna.trial import TrialState

        assert self.config is not None and self.launcher is not None
        space, fixed = search_space(self.params, arguments)
        if not space:
            raise ValueError("the Optuna sweeper has nothing to search: hydra.sweeper.params is empty")
        study = self._study()
        finished = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        log.info(
            "Optuna study %r (%s): %d of %d trials done; worker %d, sampler seed %s; searching %s",
            study.study_name,
            self.storage or "in memory",
            len(study.get_trials(deepcopy=False, states=finished)),
            self.n_trials,
            self.worker,
            self.sampler_seed,
            ", ".join(space),
        )
        returns: list[Any] = []
        job_idx = 0
        while trials := self._ask(study, space):
            batch = []
            for trial in trials:
                overrides = [*fixed, *(f"{k}={as_override_value(v)}" for k, v in trial.params.items())]
                if self.trial_number_key:
                    overrides.append(f"{self.trial_number_key}={trial.number}")
                batch.append(tuple(overrides))
            beats = Heartbeats(self._rdb, trials, self.heartbeat_interval) if self.storage else None
            with beats or contextlib.nullcontext():
                results = self.launcher.launch(batch, initial_job_idx=job_idx)
            job_idx += len(batch)
            for trial, result in zip(trials, results, strict=True):
                try:
                    value = float(result.return_value)  # re-raises the job's exception
                except Exception as err:
                    log.warning(
                        "trial %d failed: %s", trial.number, str(err).splitlines()[0] if str(err) else err
                    )
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                if math.isnan(value):
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, value)
            returns.extend(results)
        self._report(study)
        return returns

    def _report(self, study: Any) -> None:
        """Log the study's best trial and write it to ``<sweep dir>/optimization_results.yaml``."""
        assert self.config is not None
        try:
            best = study.best_trial
        except ValueError:
            log.warning("Optuna study %r has no completed trial", study.study_name)
            return
        results = {
            "name": "optuna",
            "study_name": study.study_name,
            "storage": self.storage,
            "n_trials": len(study.trials),
            "worker": self.worker,
            "sampler_seed": self.sampler_seed,
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": dict(best.params),
        }
        log.info("Optuna best: trial %d, value %s, params %s", best.number, best.value, best.params)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
