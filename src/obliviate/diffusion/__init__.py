"""Class forgetting for diffusion models: the ``obliviate diffusion-demo`` preset and its sample grids.

The pieces live in their layers (``models.diffusion``, ``train.diffusion``, ``objectives.diffusion``,
``methods.esd`` / ``concept_ablation``, ``metrics.generative``, ``evaluation.generative``); this
package runs them end to end: train the original and two oracles, forget a class with each method,
and judge every model against oracle A with oracle B as the noise floor.
"""

from .demo import DEFAULT_METHODS, DemoConfig, format_table, run_demo, save_grid

__all__ = ["DEFAULT_METHODS", "DemoConfig", "format_table", "run_demo", "save_grid"]
