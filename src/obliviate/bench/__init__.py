"""Benchmark grids from a YAML config: cached originals and oracles, resumable cells, tidy results."""

from .config import BenchConfig, ConfigError, load_config
from .runner import BenchRun, read_table, run, summarize, tidy

__all__ = ["BenchConfig", "BenchRun", "ConfigError", "load_config", "read_table", "run", "summarize", "tidy"]
