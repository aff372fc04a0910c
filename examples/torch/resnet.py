"""A ResNet-style CNN trained through saturn_train (random init, synthetic images).

    python3 examples/torch/resnet.py --size tiny --bs 8 --lr 1e-3

The images are generated locally from the step number (class-dependent patterns plus noise),
so the loss falls and every technique sees the same samples. GroupNorm instead of BatchNorm:
batch statistics would differ between data-parallel ranks and pipeline micro-batches, and the
techniques are meant to be interchangeable.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

import saturn_train as st

# width, blocks per stage (4 stages), image size, classes
SIZES: dict[str, tuple[int, tuple[int, ...], int, int]] = {
    "tiny": (8, (1, 1, 1, 1), 16, 10),
    "small": (32, (2, 2, 2, 2), 32, 100),
    "resnet18": (64, (2, 2, 2, 2), 224, 1000),
    "resnet34": (64, (3, 4, 6, 3), 224, 1000),
    "wide": (160, (3, 4, 6, 3), 224, 1000),
}


class Residual(nn.Module):
    """Basic residual block; the first block of a stage may downsample and widen."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = nn.GroupNorm(min(8, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = nn.GroupNorm(min(8, cout), cout)
        self.skip = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.n1(self.conv1(x)))
        return F.relu(self.n2(self.conv2(y)) + self.skip(x))


class ResNet(nn.Module):
    """Stem, residual blocks (one flat list: the unit of FSDP, pipeline and spilling), head."""

    def __init__(self, width: int, depths: tuple[int, ...], classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False),
                                  nn.GroupNorm(min(8, width), width), nn.ReLU())
        blocks, cin = [], width
        for stage, depth in enumerate(depths):
            cout = width * 2 ** stage
            for i in range(depth):
                blocks.append(Residual(cin, cout, 2 if i == 0 and stage > 0 else 1))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))


def image_batches(batch_size: int, size: int, classes: int, seed: int = 0):
    """`step -> (images, labels)`: the step's global batch."""
    patterns = torch.randn(classes, 3, size, size, generator=torch.Generator().manual_seed(seed))

    def at(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        labels = torch.randint(classes, (batch_size,), generator=g)
        images = patterns[labels] + torch.randn(batch_size, 3, size, size, generator=g)
        return images, labels

    return at


def task(size: str, bs: int, lr: float, seed: int = 0, steps: int | None = None,
         device: str | None = None) -> st.Task:
    """The ResNet task of one size."""
    width, depths, image, classes = SIZES[size]
    return st.Task(
        model=lambda: ResNet(width, depths, classes),
        blocks=lambda m: m.blocks,
        data=image_batches(bs, image, classes, seed),
        loss=F.cross_entropy,
        optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
        lr=lr, seed=seed, steps=steps, device=device,
    )


if __name__ == "__main__":
    import cli  # the sibling examples/torch/cli.py

    cli.main(task, SIZES, doc=__doc__, batch_unit="images", lr=1e-2)
