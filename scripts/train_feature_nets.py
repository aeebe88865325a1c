"""Train the feature networks difflab ships for image metrics (fixed seed), into difflab/weights/.

    .venv/bin/python scripts/train_feature_nets.py                 # digits, fashion_mnist and fashion_mnist_b
    .venv/bin/python scripts/train_feature_nets.py fashion_mnist_b

See `difflab.features` for the recipe; each network's test accuracy is recorded in its JSON.
"""

import sys

import torch

from difflab.features import FEATURE_SETS, save_feature_net, train_feature_net

if __name__ == "__main__":
    torch.set_num_threads(2)
    for name in sys.argv[1:] or list(FEATURE_SETS):
        net, info = train_feature_net(name)
        path = save_feature_net(net, info)
        print(f"{name}: test accuracy {info['test_accuracy']:.4f}, {info['train_seconds']} s -> {path}")
