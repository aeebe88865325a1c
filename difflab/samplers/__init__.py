"""Samplers: plain functions `sampler(denoiser, path, x, ts, *, generator=None, callback=None, **cond) -> x`.

Each steps the starting sample `x` (at time ts[0]) along the grid `ts` with one pure kernel per
step (`*_step`, testable alone) and counts network evaluations; `return_info=True` also returns a
`SampleInfo` with the NFE. Grids live in `difflab.samplers.grids`.
"""

from . import grids
from ._common import SampleInfo, Step, check_grid, step_of, steps_of
from .ancestral import consistency, ddim, ddim_step, ddpm, ddpm_step
from .dpm_solver import dpmpp_2m, dpmpp_2m_sde, dpmpp_2m_step
from .langevin import annealed_langevin, langevin
from .ode import ode_euler, ode_heun, ode_rk4, ode_rk45, velocity
from .sde import euler_maruyama, euler_maruyama_step, langevin_corrector_step, pc
from .unipc import unipc, unipc_correct, unipc_predict

__all__ = [
    "SampleInfo", "Step", "step_of", "steps_of", "check_grid", "grids", "ddpm", "ddim", "consistency", "euler_maruyama", "pc", "ode_euler", "ode_heun", "ode_rk4",
    "ode_rk45", "langevin", "annealed_langevin", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "unipc_predict", "unipc_correct", "ddim_step", "ddpm_step", "euler_maruyama_step",
    "langevin_corrector_step", "dpmpp_2m_step", "velocity", "SAMPLERS",
]

# The samplers `difflab.sample` knows by name (`langevin` needs a score, not a denoiser and a path).
SAMPLERS = {
    "ddpm": ddpm,
    "ddim": ddim,
    "euler_maruyama": euler_maruyama,
    "pc": pc,
    "ode_euler": ode_euler,
    "ode_heun": ode_heun,
    "ode_rk4": ode_rk4,
    "ode_rk45": ode_rk45,
    "annealed_langevin": annealed_langevin,
    "dpmpp_2m": dpmpp_2m,
    "dpmpp_2m_sde": dpmpp_2m_sde,
    "unipc": unipc,
    "consistency": consistency,
}
