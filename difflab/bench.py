"""The sampler harness and `difflab bench samplers`, under the name earlier versions gave them: `difflab.app.bench`."""

from .app.bench import (DEFAULT_SAMPLERS, DIFFUSERS_SCHEDULERS, Job, Timed, default_job, difflab_job, diffusers_job,
                        measure_samplers, over_seeds, parse_sampler_spec, sweep)

__all__ = ["Job", "Timed", "difflab_job", "default_job", "diffusers_job", "sweep", "over_seeds", "bench_samplers", "measure_samplers", "parse_sampler_spec",
           "DEFAULT_SAMPLERS", "DIFFUSERS_SCHEDULERS"]


def bench_samplers(run_dir, *, samplers=DEFAULT_SAMPLERS, nfes=(5, 10, 20, 50), n: int = 500, seed: int = 0, device: str = "cpu",
                   batch_size: int = 500, diffusers: bool = False, append: bool = False, progress: bool = True, log=print) -> dict:
    """Quality and time of each sampler at each NFE budget on a diffusion run (`Run.bench`); returns and writes them."""
    from .app.requests import BenchRequest
    from .app.run import Run

    return Run.of(run_dir).bench(BenchRequest(samplers=tuple(samplers), nfe=tuple(nfes), diffusers=diffusers, n=n,
                                              batch=batch_size, seed=seed, device=device, append=append, progress=progress,
                                              log=log))
