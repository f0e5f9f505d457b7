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
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
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
    ) -> None:
        self.sampler_cfg = sampler
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction: 'minimize' or 'maximize', got {direction!r}")
        self.direction: Literal["minimize", "maximize"] = (
            "minimize" if direction == "minimize" else "maximize"
        )
        self.study_name = study_name
        self.storage = storage
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

    def _study(self) -> Any:
        import optuna
        from hydra.utils import instantiate

        sampler = self.sampler_cfg  # Hydra instantiates the sweeper's nested _target_ nodes already
        if isinstance(sampler, Mapping | DictConfig):
            sampler = instantiate(sampler)
        return optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=sampler,
            direction=self.direction,
            load_if_exists=True,
        )

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
        done = len(study.get_trials(deepcopy=False, states=finished))
        log.info(
            "Optuna study %r (%s): %d of %d trials done; searching %s",
            study.study_name,
            self.storage or "in memory",
            done,
            self.n_trials,
            ", ".join(space),
        )
        returns: list[Any] = []
        job_idx = 0
        while done < self.n_trials:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - done))]
            batch = []
            for trial in trials:
                overrides = [*fixed, *(f"{k}={as_override_value(v)}" for k, v in trial.params.items())]
                if self.trial_number_key:
                    overrides.append(f"{self.trial_number_key}={trial.number}")
                batch.append(tuple(overrides))
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
            done += len(trials)
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
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": dict(best.params),
        }
        log.info("Optuna best: trial %d, value %s, params %s", best.number, best.value, best.params)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
