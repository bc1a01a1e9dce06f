"""Cluster settings for the SLURM runner, read from ``conf/<env>/slurm.yml``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from kedro.config import AbstractConfigLoader, MissingConfigException

CONFIG_KEY = "slurm"
CONFIG_PATTERNS = ["slurm*", "slurm*/**"]


@dataclass(frozen=True)
class ClusterConfig:
    """How pipeline nodes become SLURM jobs: grouping, logs, polling, and sbatch options."""

    group_by: str = "namespace"
    merge_light_groups: bool = True
    log_dir: str = "logs/slurm"
    poll_interval: float = 10.0
    max_requeues: int = 3
    requeue_signal_seconds: int = 300
    setup: list[str] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)

    def sbatch_options(self, profile: str | None) -> dict[str, Any]:
        """The sbatch options of a job: the defaults, overridden by its profile's."""
        if profile is None:
            return dict(self.defaults)
        if profile not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ValueError(
                f"Node tag '{CONFIG_KEY}.{profile}' names no profile in the SLURM config (profiles: {known})."
            )
        return {**self.defaults, **self.profiles[profile]}

    def requeue_options(self) -> dict[str, Any]:
        """sbatch options that let a job be requeued, and warn it ``requeue_signal_seconds`` before its limit."""
        if self.max_requeues == 0:
            return {"no_requeue": True}
        # B: the signal goes to the batch shell only, whose trap requeues the job (sbatch.render_script).
        return {"requeue": True, "signal": f"B:USR1@{self.requeue_signal_seconds}"}


def load_cluster_config(loader: AbstractConfigLoader, env: str) -> ClusterConfig:
    """Read the ``slurm*`` config of the run through the run's own config loader (``env`` names it in errors)."""
    loader.config_patterns.setdefault(CONFIG_KEY, CONFIG_PATTERNS)
    try:
        raw = dict(loader[CONFIG_KEY])
    except MissingConfigException:
        raw = {}
    unknown = sorted(set(raw) - {f.name for f in fields(ClusterConfig)})
    if unknown:
        raise ValueError(f"Unknown keys in the SLURM config of env '{env}': {', '.join(unknown)}")
    config = ClusterConfig(**raw)
    for key in ("max_requeues", "requeue_signal_seconds"):
        value = getattr(config, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(
                f"{key}: {value!r} in the SLURM config of env '{env}' is not allowed; a whole number >= 0 is needed."
            )
    return config
