"""One optimiser step, either as rank `rank` of a torchrun job of `world` processes (the batch split
between ranks) or in one process with the whole batch. Run under torchrun it writes rank 0's weights."""

import sys

import torch
import torch.distributed as dist

import difflab as dl
from difflab.training import train_step


def one_step(rank: int, world: int) -> dict:
    torch.manual_seed(0)
    net = dl.nets.UNet(1, channels=8, channel_mult=(1, 2), num_res_blocks=1)
    g = torch.Generator().manual_seed(1)
    x0, t, noise = torch.randn(8, 1, 8, 8, generator=g), torch.rand(8, generator=g), torch.randn(8, 1, 8, 8, generator=g)
    b = 8 // world
    part = slice(rank * b, (rank + 1) * b)
    model = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    path = dl.paths.DiscreteVP.linear(100)

    def objective(m, batch, generator):  # the time and noise pinned in the batch
        return dl.losses.diffusion_loss(m, path, batch["x"], t=batch["t"], noise=batch["noise"])

    train_step(model, objective, {"x": x0[part], "t": t[part], "noise": noise[part]}, None, optimizer=opt, lr=1e-2,
               grad_clip=1.0)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


if __name__ == "__main__":
    dist.init_process_group("gloo")
    weights = one_step(dist.get_rank(), dist.get_world_size())
    if dist.get_rank() == 0:
        from safetensors.torch import save_file

        save_file(weights, sys.argv[1])
    dist.destroy_process_group()
