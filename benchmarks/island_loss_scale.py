"""Why seed 001's recipe predicts one class on the composite: the two terms of its joint loss.

Trains psa_resnet50 (random init, ``return_features``) on the real composite apex faces with
seed 001's joint loss, cross-entropy + island loss at weight 1 (configs/seed001_composite.yaml,
Adam 1e-3, batch 32), and prints every 10 steps the cross-entropy, the island term, the mean
squared feature norm and how many of the batch's predictions fall in each class. On the CPU
at a reduced input size; no fold structure, as this only looks at the optimisation.

    python benchmarks/island_loss_scale.py --steps 40 --input-size 48
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.nn import functional as F

from microexpr.config import load_config
from microexpr.inference import build_model
from microexpr.inputs import encode_labels, model_inputs
from microexpr.losses import create_loss
from microexpr.recipe import resolve
from microexpr.train.experiment import load_samples

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "../shared/data/megc2019_composite"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--input-size", type=int, default=48)
    args = parser.parse_args()
    overrides = [f"data.root={args.data}", f"model.input_size={args.input_size}"]
    plan = resolve(load_config(ROOT / "configs" / "seed001_composite.yaml", overrides))
    samples = load_samples(plan)
    images = model_inputs(samples, plan).images
    classes = plan.classes
    targets = encode_labels(samples, classes)
    torch.manual_seed(0)
    model = build_model(plan)
    joint = create_loss(plan.train.loss, len(classes), **plan.train.loss_kwargs)
    params = list(model.parameters()) + list(joint.parameters())
    optimizer = torch.optim.Adam(params, lr=plan.train.lr)
    generator = torch.Generator().manual_seed(0)
    header = "| step | cross-entropy | island term | mean squared feature norm | predicted"
    print(f"{header} {'/'.join(classes)} |")
    print("| --- | --- | --- | --- | --- |")
    for step in range(args.steps + 1):
        batch = torch.randperm(len(images), generator=generator)[: plan.train.batch_size]
        logits, features = model(images[batch])
        ce = F.cross_entropy(logits, targets[batch])
        island = joint.feature_loss(features, targets[batch])
        if step % 10 == 0:
            counts = logits.argmax(1).bincount(minlength=len(classes)).tolist()
            norm = features.pow(2).sum(1).mean().item()
            print(f"| {step} | {ce.item():.3f} | {island.item():.1f} | {norm:.1f} | {counts} |")
        optimizer.zero_grad()
        (ce + joint.weight * island).backward()
        optimizer.step()


if __name__ == "__main__":
    main()
