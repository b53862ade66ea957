"""Parameters and FLOPs of the 2-D seed models: the table in docs/models.md.

Parameters at 1000 classes and 3 input channels; FLOPs of one 224x224 image counted by
fvcore, which counts a fused multiply-add as one FLOP (the convention of the papers' GFLOPs,
e.g. ResNet-50 4.1 G). Also one training step (batch 64, 96x96, forward + backward + Adam)
timed on this machine's CPU with --step.

    python benchmarks/models_2d_table.py [--step]
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from microexpr import models

try:
    from fvcore.nn import FlopCountAnalysis
except ModuleNotFoundError:  # not a dependency of the package
    raise SystemExit("needs fvcore for the FLOP counts: pip install fvcore") from None

ROWS = [
    ("densenet201_eca", {}),
    ("densenet121_eca", {}),
    ("densenet201", {}),
    ("densenet121", {}),
    ("psa_resnet50", {}),
    ("psa_resnet50", {"conv_groups": (1, 4, 8, 16)}),
    ("se_resnet50", {}),
    ("cbam_resnet50", {}),
    ("eca_resnet50", {}),
    ("aff_resnet50", {}),
    ("resnet50", {}),
    ("vgg16_bn", {}),
    ("mobilenetv2", {}),
    ("se_resnext50_32x4d", {}),
    ("resnext50_32x4d", {}),
]


def step_seconds(name: str, options: dict) -> float:
    """Wall time of one Adam training step on a 64 x 3 x 96 x 96 batch (after one warm-up)."""
    model = models.create(name, num_classes=3, in_chans=3, **options)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(64, 3, 96, 96), torch.randint(0, 3, (64,))
    for _ in range(2):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", action="store_true", help="also time a CPU training step")
    args = parser.parse_args()
    logging.getLogger("fvcore").setLevel(logging.ERROR)  # unsupported-op notes (sigmoid ...)
    header = "| model | options | params (M) | GFLOPs at 224 |"
    print(header + (" CPU step (s) |" if args.step else ""))
    print("|" + " --- |" * (5 if args.step else 4))
    for name, options in ROWS:
        model = models.create(name, num_classes=1000, in_chans=3, **options).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        flops = FlopCountAnalysis(model, torch.randn(1, 3, 224, 224))
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        gflops = flops.total() / 1e9
        text = ", ".join(f"{k}={v}" for k, v in options.items()) or "-"
        line = f"| {name} | {text} | {params:.2f} | {gflops:.2f} |"
        if args.step:
            line += f" {step_seconds(name, options):.2f} |"
        print(line, flush=True)


if __name__ == "__main__":
    main()
