"""Fit a classical model (fixed features + linear SVM) on one fold's training samples.

The harness trains every model through the same fold interface; a
:class:`~microexpr.models.classical.ClassicalModel` has no gradient training, so
``experiment.fit`` hands it here instead of to ``trainer.train_fold``: scikit-learn's
StandardScaler and LinearSVC are fitted on the fold's training features only, and their
parameters stored in the model, which then predicts like any network.
"""

from __future__ import annotations

import torch
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from microexpr.config import TrainConfig
from microexpr.models.classical import ClassicalModel


@torch.no_grad()
def fit_classical(
    model: ClassicalModel, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig
) -> ClassicalModel:
    """Fit ``model``'s scaler and one-vs-rest linear SVM on (images, labels); ``cfg.seed``
    seeds the solver's coordinate order. Every class of the model must be in ``labels``."""
    features = model.features(images.float()).cpu().numpy().astype("float64")
    y = labels.cpu().numpy()
    classes = model.weight.shape[0]
    missing = sorted(set(range(classes)) - set(y.tolist()))
    if missing:
        raise ValueError(f"classes {missing} have no training sample in this fold")
    scaler = StandardScaler().fit(features)
    svm = LinearSVC(random_state=cfg.seed, max_iter=20000, **model.estimator_options)
    svm.fit(scaler.transform(features), y)
    weight, bias = svm.coef_, svm.intercept_
    if classes == 2:  # sklearn keeps one hyperplane for two classes: class 1 vs class 0
        weight = torch.cat([-torch.as_tensor(weight), torch.as_tensor(weight)]) / 2
        bias = torch.cat([-torch.as_tensor(bias), torch.as_tensor(bias)]) / 2
    scale = torch.as_tensor(scaler.scale_)
    model.set_linear(scaler.mean_, scale, weight, bias)
    return model
