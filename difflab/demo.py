"""The demos (`difflab demo`, `difflab oracle-demo`), under the name earlier versions gave them: `difflab.app.demo`."""

from .app.demo import DEMO_SAMPLERS, digits_demo, oracle_demo

__all__ = ["digits_demo", "oracle_demo", "DEMO_SAMPLERS"]
