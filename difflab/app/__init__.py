"""The application: configurations and run folders at one edge of the mathematics, which never imports it.

    config    the schema (TOML, --set) and its checks      build     names become objects; data.json's facts
    kinds/    one module per kind of run, one registry      run       `Run`: a run folder, opened once
    trainer   a configuration becomes a run folder          requests  what a user asks of a run, checked whole
    folders   run folders on disk, the one atomic writer    outputs   pictures, arrays, text, PNG folders
    evaluate  the measurements behind `difflab eval`        bench     the sampler harness
    latents   latent diffusion's run-folder side            demo      `difflab demo`, `difflab oracle-demo`
    cli       the `difflab` command (thin)                  schema    what a configuration section is

docs/ARCHITECTURE.md walks one `difflab sample` through them and says how to add a kind.
"""
